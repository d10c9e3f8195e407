"""``RestConnector``: the one connector class every declaration runs on.

``declared(source)`` loads a declaration (a TOML file or a dict) and returns a
``RestConnector`` subclass for it: its name, settings model, streams, auth kind, OAuth
endpoints, webhook receiver and sandbox all come from the declaration. The registry makes
these classes for entry points that point at a declaration file
(``acme = "crmhub_connector_acme:acme.toml"``) and for ``connector = "path/to/file.toml"``
in ``crmhub.toml``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, create_model, model_validator

from hub.connector import (
    Change,
    Connector,
    ConnectorContext,
    Cursor,
    Page,
    PushResult,
    RemoteRecord,
    Stream,
)
from hub.http import RetryingClient, make_client
from hub.rest.auth import CONNECT_KIND, OAuth2Auth, build_auth
from hub.rest.load import Loaded, Loc, load_declaration
from hub.rest.model import Declaration, SettingSpec
from hub.rest.reader import Reader
from hub.rest.stream import CompiledStream, compile_stream, hub_stream
from hub.rest.template import Template

if TYPE_CHECKING:
    from hub.authspec import OAuthSettings
    from hub.webhooks import WebhookReceiver

__all__ = ["RestConnector", "declared", "settings_model"]

_TYPES: dict[str, type] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "secret": SecretStr,
}


class DeclaredSettings(BaseModel):
    """The base of every declaration's settings model: a setting with neither a default nor
    ``required`` may be left out, unless a run fills it into a template (``unfilled``):
    then leaving it out is refused here, naming where the declaration uses it, not met
    as a bare ``KeyError`` when the first request is made."""

    model_config = ConfigDict(extra="forbid")
    unfilled: ClassVar[dict[str, list[tuple[tuple[str | int, ...], str]]]] = {}

    @model_validator(mode="after")
    def _filled(self) -> DeclaredSettings:
        for name, uses in self.unfilled.items():
            if getattr(self, name, None) is not None:
                continue
            # a connection's own base_url replaces [client] base_url, settings and all
            where = [w for loc, w in uses if loc != ("client", "base_url") or not self._moved()]
            if where:
                raise ValueError(
                    f"setting {name!r} is not set, and the declaration fills it into "
                    f"{', '.join(where)}: set {name} in this connection, or give "
                    f"[settings.{name}] a default"
                )
        return self

    def _moved(self) -> bool:
        return getattr(self, "base_url", None) is not None


def settings_model(
    spec: Declaration, unfilled: dict[str, list[tuple[Loc, str]]] | None = None
) -> type[BaseModel]:
    """The pydantic model of the connection settings a declaration asks for; ``base_url``
    is always accepted (it replaces ``[client] base_url``, e.g. to reach a sandbox).
    ``unfilled`` (``Loaded.unfilled``) names the optional settings a connection must set."""
    fields: dict[str, Any] = {}
    for name, setting in spec.settings.items():
        fields[name] = _field(setting)
    fields.setdefault("base_url", (str | None, None))
    name = _camel(spec.name) + "Settings"
    model = create_model(name, __base__=DeclaredSettings, **fields)
    model.unfilled = unfilled or {}
    return model


def _field(setting: SettingSpec) -> tuple[Any, Any]:
    kind = _TYPES[setting.type]
    if setting.required:
        return kind, Field(..., description=setting.description)
    return kind | None, Field(setting.default, description=setting.description)


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[_\W]+", name) if part)


class RestConnector(Connector):
    """Runs one declaration. Subclasses are made by :func:`declared`, one per declaration."""

    loaded: ClassVar[Loaded]
    declaration: ClassVar[Declaration]
    concurrency: ClassVar[int] = 4

    def __init__(self, settings: BaseModel, context: ConnectorContext) -> None:
        super().__init__(settings, context)
        self._compiled: dict[str, CompiledStream] | None = None
        self._http: RetryingClient | None = None

    def streams(self) -> list[Stream]:
        hooks = self.declaration.webhooks is not None
        return [hub_stream(n, s, hooks) for n, s in self.declaration.streams.items()]

    @property
    def values(self) -> dict[str, Any]:
        """The connection's settings as templates see them."""
        return {
            name: getattr(self.settings, name, None) for name in type(self.settings).model_fields
        }

    def compiled(self, stream: Stream) -> CompiledStream:
        if self._compiled is None:
            webhooks = self.declaration.webhooks is not None
            self._compiled = {
                name: compile_stream(self.loaded, name, self.values, webhooks)
                for name in self.declaration.streams
            }
        return self._compiled[stream.name]

    async def http(self) -> RetryingClient:
        if self._http is None:
            self._http = await self._open()
        return self._http

    async def _open(self) -> RetryingClient:
        client = self.declaration.client
        values = {"settings": self.values}
        override = None if "base_url" in self.declaration.settings else self.values["base_url"]
        base_url = override or Template(client.base_url).render(values)
        auth = await build_auth(
            client.auth, self.context.credentials, self.connection, self.values, client.oauth
        )
        key = Template(client.limit_key).render(values) if client.limit_key else self.connection
        made = make_client(
            base_url=base_url.rstrip("/") + "/",
            counters=self.context.counters,
            auth=auth,
            headers={k: Template(v).render(values) for k, v in client.headers.items()},
            timeout=httpx.Timeout(client.timeout, connect=client.connect_timeout),
            rate_limit=client.rate_limit,
            limit_key=f"{self.name}:{key}",
        )
        return RetryingClient(made, connection=self.connection, policy=client.retry)

    async def pull(self, stream: Stream, cursor: Cursor | None) -> AsyncIterator[Page]:
        reader = Reader(await self.http(), self.compiled(stream))
        async for page in reader.pages(cursor):
            yield page

    async def push(self, stream: Stream, changes: list[Change]) -> list[PushResult]:
        if not changes:
            return []
        from hub.rest.writer import Writer  # a pull alone does not load the write path

        writer = Writer(await self.http(), self.compiled(stream), self._slots())
        return await writer.push(changes)

    async def fetch(self, stream: Stream, remote_ids: list[str]) -> list[RemoteRecord]:
        if not remote_ids:
            return []
        from hub.rest.fetch import fetch_records

        return await fetch_records(
            await self.http(), self.compiled(stream), remote_ids, self._slots()
        )

    def _slots(self) -> int:
        limit = self.declaration.client.rate_limit
        return limit.concurrency if limit and limit.concurrency else self.concurrency

    async def aclose(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    def default_mapping(self, stream: Stream) -> Path:
        """``mapping`` of the stream (relative to the declaration), else
        ``mappings/<stream>.toml`` beside the declaration."""
        spec = self.declaration.streams.get(stream.name)
        base = self.loaded.base_dir
        if spec is not None and spec.mapping and base is not None:
            return base / spec.mapping
        return super().default_mapping(stream)

    @classmethod
    def sandbox(cls, seed: int = 0, size: int | None = None, **options: Any) -> Any:
        """The generated sandbox of this declaration (``crmhub sandbox NAME``)."""
        from hub.rest.sandbox import create_sandbox

        return create_sandbox(cls.loaded, seed=seed, size=size, **options)


def declared(
    source: str | Path | dict[str, Any] | Loaded,
    *,
    label: str | None = None,
    mapping_dir: Path | None = None,
) -> type[RestConnector]:
    """A connector class for a declaration (a TOML file, a dict, or one already loaded).

    Raises ``hub.rest.DeclarationError`` naming every problem of the declaration.
    """
    loaded = source if isinstance(source, Loaded) else load_declaration(source, label=label)
    spec = loaded.spec
    auth = spec.client.auth
    oauth: OAuthSettings | None = auth.settings() if isinstance(auth, OAuth2Auth) else None
    if oauth is None and spec.client.oauth is not None:
        oauth = spec.client.oauth.settings()  # chosen per connection with oauth.kind
    if mapping_dir is None and loaded.base_dir is not None:
        mapping_dir = loaded.base_dir / "mappings"
    receiver: type[WebhookReceiver] | None = None
    if spec.webhooks is not None:
        from hub.rest.receiver import DeclaredReceiver  # the webhook stack, when declared

        # the inbox keeps the declared signature, timestamp and delivery-id headers
        sig = spec.webhooks.signature
        named = (getattr(sig, "header", None), getattr(sig, "timestamp_header", None))
        kept = tuple(h.lower() for h in (*named, spec.webhooks.id_header) if h)
        receiver = type(_camel(spec.name) + "Receiver", (DeclaredReceiver,), {"headers": kept})
    attrs: dict[str, Any] = {
        "name": spec.name,
        "version": spec.version,
        "description": spec.description,
        "Settings": settings_model(spec, loaded.unfilled),
        "loaded": loaded,
        "declaration": spec,
        "push_batch_size": spec.push_batch_size,
        "mapping_dir": mapping_dir,
        "auth_kind": "oauth2" if isinstance(auth, OAuth2Auth) else CONNECT_KIND[auth.kind],
        "oauth": oauth,
        "webhook": receiver,
        "__module__": __name__,
    }
    return type(_camel(spec.name) + "Connector", (RestConnector,), attrs)
