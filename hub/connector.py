"""The one interface every connector implements.

A connector subclass declares its ``Settings`` model and its streams, and implements
``pull`` and ``push``. Everything else has a safe default. The hub drives it: the sync
engine maps, matches, merges and stores; a connector only talks to its remote system.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import httpx
from pydantic import BaseModel, ConfigDict

import mappings
from hub.errors import ErrorKind
from hub.http.counters import HttpCounters

if TYPE_CHECKING:
    from fastapi import APIRouter

    from hub.authspec import OAuthSettings
    from hub.runtime import Hub
    from hub.services import ConnectionServices
    from hub.store import Store
    from hub.webhooks import WebhookReceiver

Cursor = dict[str, Any]
"""A stream's incremental position: any JSON object the connector understands."""

Op = Literal["create", "update", "delete"]


class NoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Stream:
    """One kind of remote record and the entity it maps to.

    ``name`` is the remote type (``members``, ``rows``) and names the default mapping file
    ``mappings/<connector>/<name>.toml``.
    """

    name: str
    entity: str
    incremental: bool = False
    can_create: bool = False
    can_update: bool = False
    can_delete: bool = False
    webhooks: bool = False
    match_by_name: bool = False
    """Records of this stream that have no stronger match key (a contact without an e-mail
    address or phone number) are matched to the one golden record of the same name
    (:data:`hub.records.FULL_NAME`); never when two have it. Off by default: a connector
    sets it where its system's names are trustworthy, usually from a setting."""

    @property
    def can_push(self) -> bool:
        return self.can_create or self.can_update or self.can_delete


@dataclass
class RemoteRecord:
    """A record as the remote system holds it.

    ``data`` is the remote shape (nested dicts allowed); the mapping turns it into canonical
    fields. ``modified_at`` (aware datetime) feeds the ``newest`` conflict policy;
    ``field_modified_at`` refines it per remote path where the provider tells.
    """

    id: str
    data: dict[str, Any]
    version: str | None = None
    modified_at: datetime | None = None
    field_modified_at: dict[str, datetime] | None = None
    where: str | None = None
    """Where a person finds the record (``people.csv:12``), for messages about it."""


@dataclass
class Page:
    """One page of a pull.

    ``cursor`` is the position after this page; the engine saves it in the same transaction
    as the page's changes, so a crash re-pulls at most this page. ``full_scan`` is true on
    pages of a complete listing: when every page of a pull says so, linked records that were
    not seen are treated as deleted remotely.
    """

    records: list[RemoteRecord] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    cursor: Cursor | None = None
    full_scan: bool = False
    problems: list[str] = field(default_factory=list)
    """Records of the answer the connector could not read (not an object, no id), each said
    with where it was. The run lists them among its errors; a page with problems is no
    complete listing, so nothing is taken as deleted for being absent from it."""


@dataclass
class Change:
    """One write the hub asks a connector to make.

    ``data`` is in the remote shape (already reverse-mapped) and holds only what changed for
    an update, everything mapped for a create. ``key`` correlates the result; the
    ``idempotency_key`` is stable across retries of the same owed write, so a create retried
    after a crash can be recognised (provider idempotency, or a lookup by natural key).

    ``record`` (updates; for a create it equals ``data``) is the whole record as the remote
    holds it once the change is applied, as far as the hub knows: the link's base (the values
    both sides last agreed on) with ``data`` over it, reverse-mapped like ``data``. It lets a
    connector send what the API needs beyond the change (a key such as an e-mail address,
    the rest of a compound field) or batch updates, without reading the record first. It
    can be out of date where the remote changed since the last pull: check it against
    ``remote_id`` where that matters.
    """

    key: str
    op: Op
    data: dict[str, Any]
    idempotency_key: str
    remote_id: str | None = None
    version: str | None = None
    record: dict[str, Any] | None = None
    entity_id: str | None = None
    """The hub's id of the record written (an ``external_id`` some APIs keep for us)."""


@dataclass
class PushResult:
    """The outcome of one ``Change``: the remote id and version on success, else the error."""

    key: str
    remote_id: str | None = None
    version: str | None = None
    error: ErrorKind | None = None
    message: str | None = None
    retry_after: float | None = None
    data: dict[str, Any] | None = None
    """Optional: the record as the remote system now holds it (remote shape)."""
    stale: bool = False
    """The write was refused because the remote record changed since ``version``: the engine
    re-reads it (``fetch``), merges, and tries again."""

    @property
    def ok(self) -> bool:
        return self.error is None


class Credentials(Protocol):
    """A connection's stored credentials (``crmhub connect`` puts them in the vault)."""

    async def secret(self) -> dict[str, Any]:
        """The stored data: ``api_key``, ``username``/``password``, or OAuth token data.
        Raises ``NeedsReauth`` when the connection is not (or no longer) connected."""
        ...

    def auth(self) -> httpx.Auth:
        """For OAuth2 connections: an httpx auth flow that keeps the access token valid."""
        ...


@dataclass
class ConnectorContext:
    """What the hub hands a connector: its connection's name, where relative paths start,
    its credentials, the HTTP counters that end up in the run record, and the hub's
    services for the connection (``services``)."""

    connection: str
    base_dir: Path = field(default_factory=Path.cwd)
    credentials: Credentials | None = None
    counters: HttpCounters = field(default_factory=HttpCounters)
    store: Store | None = None
    """The hub's store, what ``services`` are made from; connectors use ``services``."""
    check_lease: Callable[[], Awaitable[None]] | None = None
    """Raises ``hub.errors.LeaseLost`` once the run has lost its lease to another run: await
    it right before a write that cannot be undone, and let the error propagate."""
    _services: ConnectionServices | None = field(default=None, repr=False, compare=False)
    """Set by the hub (``Hub.services``): services that can also start runs."""

    @property
    def services(self) -> ConnectionServices | None:
        """What the connector may ask of the hub about its own connection
        (``hub.services.ConnectionServices``), or ``None`` for a connector built without a
        store. Made from ``store`` alone, runs cannot be started from it."""
        if self._services is not None:
            return self._services
        if self.store is None:
            return None
        from hub.services import ConnectionServices

        return ConnectionServices(self.connection, self.store)


class Connector(ABC):
    """Base class of every connector plugin.

    Subclasses set ``name`` (= entry-point name = folder name = URL slug), ``Settings`` (a
    pydantic model validated when the configuration loads) and implement ``streams``,
    ``pull`` and ``push``.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "0.1.0"
    description: ClassVar[str] = ""
    Settings: ClassVar[type[BaseModel]] = NoSettings
    push_batch_size: ClassVar[int] = 100
    """Most changes the engine hands ``push`` at once."""
    mapping_dir: ClassVar[Path | None] = None
    """Where the default mappings live; built-ins use ``mappings/<name>/``."""
    auth_kind: ClassVar[str | None] = None
    """none | api_key | basic | oauth2 | generic_oauth2 | msal | google; ``None``: oauth2
    when ``oauth`` is set, else none. A connection may override it (``[connections.X.oauth]``)."""
    oauth: ClassVar[OAuthSettings | None] = None
    """The provider's OAuth endpoints, scopes and habits (``auth.providers.OAuthSettings``)."""
    webhook: ClassVar[type[WebhookReceiver] | None] = None
    """The receiver of the provider's webhooks (``hub.webhooks.WebhookReceiver``)."""
    routes: ClassVar[Callable[[Hub], APIRouter] | None] = None
    """Builds extra web routes (``routes(hub) -> APIRouter``), included by the web app once
    when at least one configured connection uses this connector (web forms' own paths)."""
    renew_every: ClassVar[timedelta | None] = None
    """How often the daemon calls ``renew`` (push subscriptions that expire: Gmail's watch,
    Graph's subscriptions); ``None``: never."""

    def __init__(self, settings: BaseModel, context: ConnectorContext) -> None:
        self.settings = settings
        self.context = context

    @property
    def connection(self) -> str:
        return self.context.connection

    @abstractmethod
    def streams(self) -> list[Stream]:
        """The streams this connection offers (may depend on settings)."""

    @abstractmethod
    def pull(self, stream: Stream, cursor: Cursor | None) -> AsyncIterator[Page]:
        """Yield pages of records changed since ``cursor`` (everything when it is ``None``).

        Never yields the same cursor twice in a row for different content; a pull that finds
        nothing new may yield no page at all.
        """

    async def push(self, stream: Stream, changes: list[Change]) -> list[PushResult]:
        """Apply changes remotely; one result per change, same keys, any order.

        A failure of one item is a result with ``error`` set, not an exception; exceptions
        are for failures of the whole call (and are crmhub ``ConnectorError``s).
        """
        return [
            PushResult(key=c.key, error=ErrorKind.CONFIG, message=f"{self.name} is read-only")
            for c in changes
        ]

    async def fetch(self, stream: Stream, remote_ids: list[str]) -> list[RemoteRecord]:
        """Read specific records (after a stale-version answer). Default: not supported."""
        return []

    async def renew(self, state: dict[str, Any]) -> dict[str, Any]:
        """Create or renew the connection's push subscriptions; return the state to keep.

        Called by the daemon every ``renew_every`` (and when a provider says a subscription
        needs it) with what the last call returned (``{}`` the first time); the hub stores
        it. Raise a crmhub error to be tried again at the next turn. Default: nothing to do.
        """
        return state

    async def aclose(self) -> None:  # noqa: B027  (optional hook, nothing to release here)
        """Release clients and files. Called once when the hub is done with the connector."""

    def watched_files(self) -> list[Path]:
        """Local files this connection reads: ``crmhub up`` syncs it soon after one changes.
        Default: none."""
        return []

    def default_mapping(self, stream: Stream) -> Path:
        """The mapping file used when the connection names none: ``<stream>.toml``."""
        folder = self.mapping_dir or Path(mappings.__file__).parent / self.name
        return folder / f"{stream.name}.toml"

    def stream(self, name: str) -> Stream:
        for s in self.streams():
            if s.name == name:
                return s
        raise KeyError(name)
