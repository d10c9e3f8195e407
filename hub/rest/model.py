"""The declaration: a REST connector described as data.

The same structure loads from a TOML file or a Python dict (``hub.rest.load``). Every part
is a strict pydantic model, so an unknown key or a wrong value is an error naming the file,
the line and the valid choices; ``hub/rest/declaration.schema.json`` (generated from these
models) gives editors completion and checks.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from hub.http import RateLimit, RetryPolicy
from hub.kinds import EntityType
from hub.rest.auth import AuthSpec, NoAuth, OAuth2Auth
from hub.rest.base import KindSpec, Spec, kind_shorthand
from hub.rest.errors import ErrorRule, RetryAfterSpec
from hub.rest.paginators import BuiltinPaginatorSpec, NoPaginator, PaginatorSpec
from hub.rest.webhooks import WebhookSpec
from hub.rest.writes import BatchSpec, UpsertSpec, WriteSpec

__all__ = [
    "ClientSpec",
    "Declaration",
    "EndpointDeletes",
    "FetchSpec",
    "FullScanDeletes",
    "IncrementalSpec",
    "ModifiedSpec",
    "SandboxSpec",
    "SettingSpec",
    "StatusDeletes",
    "StreamSpec",
    "TombstoneDeletes",
    "VersionSpec",
]

NAME = r"^[a-z][a-z0-9_]{0,62}$"
TimeFormat = str
"""``iso`` (ISO 8601), ``epoch`` (Unix seconds), ``epoch_ms``, or a strptime pattern."""


class SettingSpec(Spec):
    """One setting of the connection (``[connections.NAME]`` in ``crmhub.toml``)."""

    type: Literal["str", "int", "float", "bool", "secret"] = "str"
    default: str | int | float | bool | None = None
    required: bool = False
    description: str = ""


class ClientSpec(Spec):
    base_url: str
    """The API's root URL; ``{settings.x}`` placeholders are filled from the connection."""
    auth: AuthSpec = NoAuth()
    oauth: OAuth2Auth | None = None
    """OAuth2 beside another ``auth`` (API tokens or OAuth, Zendesk): a connection whose
    ``oauth.kind`` is ``oauth2`` connects through the browser flow, and a stored credential
    holding an ``access_token`` is sent this way."""
    headers: dict[str, str] = {}
    rate_limit: RateLimit | None = None
    """``hub.http.RateLimit``: ``rate`` per ``per_seconds``, ``concurrency``, ``daily``."""
    limit_key: str | None = None
    """What the provider limits (default: the connection), e.g. ``"acme:{settings.account}"``."""
    timeout: float = Field(30.0, gt=0)
    connect_timeout: float = Field(10.0, gt=0)
    retry: RetryPolicy | None = None
    retry_after: RetryAfterSpec = RetryAfterSpec()
    error_message: str | None = None
    """JSON path of the provider's error text, put into error messages."""

    @field_validator("auth", mode="before")
    @classmethod
    def _auth(cls, value: Any) -> Any:
        return kind_shorthand(value)


class VersionSpec(Spec):
    """Where a record's version is: a field of the record, or a header (``ETag``) of the
    answers that return one record (fetches and writes)."""

    field: str | None = None
    header: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"field": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one(self) -> VersionSpec:
        if (self.field is None) == (self.header is None):
            raise ValueError("set exactly one of 'field' or 'header'")
        return self


class ModifiedSpec(Spec):
    field: str
    format: TimeFormat = "iso"
    timezone: str = "UTC"
    """For times written without an offset."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"field": value} if isinstance(value, str) else value


class IncrementalSpec(Spec):
    """Pulls after the first ask for what changed since the newest change seen."""

    param: str | None = None
    """Query parameter (or body key) carrying the time; not needed for ``if_modified_since``."""
    send: Literal["query", "body", "if_modified_since"] = "query"
    cursor_field: str | None = None
    """Field compared with the time (default: ``modified_at.field``)."""
    format: TimeFormat | None = None
    """How the time is written in the request (default: ``modified_at.format``)."""
    overlap: float = Field(0.0, ge=0)
    """Seconds to look back again each pull, for changes that become visible late."""
    window_max: int = Field(10_000, ge=1)
    """Most records remembered at the boundary to skip what was already pulled."""
    resume: Literal["time", "next_page"] = "time"
    """``next_page``: a change feed (Zendesk's incremental exports) names where to go on even
    on its last page; the next pull starts with that request instead of asking by time."""

    @model_validator(mode="after")
    def _param(self) -> IncrementalSpec:
        if self.send != "if_modified_since" and not self.param:
            raise ValueError(f"send = {self.send!r} needs 'param'")
        return self


class TombstoneDeletes(KindSpec):
    """Deleted records stay in listings with ``field`` set (to any of ``values``, or to
    anything but null/false when ``values`` is empty)."""

    kind: Literal["tombstone"]
    field: str
    values: list[Any] = []


class StatusDeletes(KindSpec):
    """A status field says a record is gone (``archived``, ``deleted``)."""

    kind: Literal["status"]
    field: str
    values: list[Any] = Field(min_length=1)


class EndpointDeletes(KindSpec):
    """A listing of deleted records, asked with the same time as the stream."""

    kind: Literal["endpoint"]
    path: str
    records: str = "$"
    id: str = "id"
    """Field of each entry holding the deleted record's id (``$`` when entries are ids)."""
    time: str | None = None
    """Field of each entry holding when it was deleted (lets pulls settle)."""
    format: TimeFormat = "iso"
    param: str | None = None
    """The time parameter (default: the stream's incremental ``param``)."""
    paginator: BuiltinPaginatorSpec = NoPaginator()

    @field_validator("paginator", mode="before")
    @classmethod
    def _paginator(cls, value: Any) -> Any:
        return kind_shorthand(value)


class FullScanDeletes(KindSpec):
    """The API tells nothing: a complete listing every ``every_hours`` finds deletions by
    absence (the hub's delete guard applies)."""

    kind: Literal["full_scan"]
    every_hours: float = Field(24.0, gt=0)


DeletesSpec = Annotated[
    TombstoneDeletes | StatusDeletes | EndpointDeletes | FullScanDeletes,
    Field(discriminator="kind"),
]


class FetchSpec(Spec):
    """Reading one record by id (after a stale-version answer)."""

    path: str | None = None
    """Default: the stream's path + ``/{id}``."""
    record: str = "$"


class StreamSpec(Spec):
    entity: EntityType
    path: str
    method: Literal["GET", "POST"] = "GET"
    params: dict[str, str | int | float | bool] = {}
    body: dict[str, Any] | None = None
    """A JSON body for listings that are POSTed (search endpoints)."""
    records: str = "$"
    """JSON path of the records in a listing's body."""
    primary_key: str = "id"
    version: VersionSpec | None = None
    modified_at: ModifiedSpec | None = None
    paginator: PaginatorSpec = NoPaginator()
    incremental: IncrementalSpec | None = None
    deletes: DeletesSpec | None = None
    fetch: FetchSpec | None = None
    create: WriteSpec | None = None
    update: WriteSpec | None = None
    delete: WriteSpec | None = None
    upsert: UpsertSpec | None = None
    batch: BatchSpec | None = None
    idempotency_header: str | None = None
    """Header carrying each create's idempotency key (``Idempotency-Key``)."""
    rate_limit: RateLimit | None = None
    """A limit of this stream's listings of their own, on top of the client's (Zendesk's
    incremental exports: 10 a minute), shared by the streams naming the same ``limit_key``."""
    limit_key: str | None = None
    errors: list[ErrorRule] = []
    mapping: str | None = None
    """The default mapping file, relative to the declaration (default:
    ``mappings/<stream>.toml`` beside it)."""
    transform: str | None = None
    """Hook ``package.module:function(record) -> record | None`` run on every pulled record."""

    @field_validator("paginator", "deletes", mode="before")
    @classmethod
    def _kinds(cls, value: Any) -> Any:
        return kind_shorthand(value)

    @model_validator(mode="after")
    def _consistent(self) -> StreamSpec:
        inc = self.incremental
        if inc is not None and self.modified_at is None and inc.cursor_field is None:
            raise ValueError("incremental reads need 'modified_at' (or a 'cursor_field')")
        if isinstance(self.deletes, EndpointDeletes) and self.incremental is None:
            raise ValueError("deletes of kind 'endpoint' need 'incremental'")
        return self


class FakeSpec(Spec):
    """Records a sandbox makes up: ``fields`` maps record paths to templates of a fake
    person's attributes (``{email}``, ``{first_name}``, ``{company}``, ``{index}``...)."""

    fields: dict[str, str] = {}
    size: int = Field(25, ge=0)
    cursor_param: str = "page_token"
    """Change feeds (``incremental.resume = "next_page"``): the query parameter of the next
    URLs the sandbox hands out, holding its position."""
    size_param: str | None = None
    """Query parameter asking for a page size, where the paginator does not name one."""
    defaults: dict[str, Any] = {}
    """Values the sandbox gives records that come without them (``role = "end-user"``)."""
    moved: dict[str, str] = {}
    """Write-only fields and where the API keeps what they carry: a new ticket's
    ``comment.body`` becomes its ``description``; in later writes they are dropped."""


class WebhookShape(Spec):
    """What the sandbox's webhooks look like (default: ``event`` and ``ids`` set, nothing
    else): ``body`` is a payload whose texts are templates of ``{event}``, ``{id}``,
    ``{uuid}``, ``{time}`` and ``{stream}``; ``events`` names each stream's event."""

    body: dict[str, Any]
    events: dict[str, str] = {}


class SandboxSpec(Spec):
    """The generated sandbox: made-up records, a seed file, limits and keys."""

    description: str | None = None
    """Hook naming the provider's published API description (``hub.sandbox.ApiDescription``)
    that every request, answer and webhook of the sandbox is held to."""
    streams: dict[str, FakeSpec] = {}
    seed: str | None = None
    """A JSON file (relative to the declaration): ``{"<stream>": [records...]}``."""
    required: dict[str, list[str]] = {}
    """Fields each stream's creates must carry (else the sandbox refuses them)."""
    retry_after: float = Field(1.0, ge=0)
    """Seconds in the throttle answer's ``Retry-After``."""
    webhook: WebhookShape | None = None
    limit_headers: dict[str, str] = {}
    """Headers of every answer telling the client's limit: ``limit`` and ``remaining`` name
    them (``X-Rate-Limit``, ``X-Rate-Limit-Remaining``); counted per minute against the
    client's ``rate_limit``, and each stream's own ``rate_limit`` answered with 429s."""


class Declaration(Spec):
    name: str = Field(pattern=NAME)
    """The connector's name: its entry-point name and ``connector = "..."`` in crmhub.toml."""
    version: str = "0.1.0"
    description: str = ""
    settings: dict[str, SettingSpec] = {}
    client: ClientSpec
    streams: dict[str, StreamSpec] = Field(min_length=1)
    errors: list[ErrorRule] = []
    webhooks: WebhookSpec | None = None
    sandbox: SandboxSpec = SandboxSpec()
    push_batch_size: int = Field(100, ge=1)
