"""Declarations, their sandboxes and connectors for the ``hub.rest`` tests."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hub.connector import Connector, ConnectorContext, Cursor, Page, RemoteRecord
from hub.rest import RestConnector, declared
from hub.rest.sandbox import (
    SANDBOX_KEY,
    SANDBOX_PASSWORD,
    SANDBOX_USER,
    RestSandboxApp,
    create_sandbox,
    sandbox_settings,
)
from hub.sandbox import serve_sandbox
from hub.testing.contract import pull_pages
from hub.testing.credentials import StaticCredentials

CONTACTS: dict[str, Any] = {
    "entity": "contact",
    "path": "/contacts",
    "records": "$.data",
    "version": "version",
    "modified_at": "updated_at",
    "paginator": {"kind": "page_number", "size": 5},
    "incremental": {"param": "updated_since"},
    "deletes": {"kind": "tombstone", "field": "deleted_at"},
    "create": {},
    "update": {"version": "if_match"},
    "delete": {"version": "if_match"},
    "idempotency_header": "Idempotency-Key",
}


def declaration(stream: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    """The people API with the contacts stream's keys replaced by ``stream`` (``None``
    values remove a key) and top-level keys by ``top``."""
    contacts = copy.deepcopy(CONTACTS)
    for key, value in (stream or {}).items():
        if value is None:
            contacts.pop(key, None)
        else:
            contacts[key] = value
    spec: dict[str, Any] = {
        "name": "people",
        "client": {"base_url": "https://people.example/api", "auth": "bearer"},
        "streams": {"contacts": contacts},
    }
    spec.update(top)
    return spec


def connector_class(spec: dict[str, Any]) -> type[RestConnector]:
    return declared(spec, label="test declaration", mapping_dir=Path("."))


@contextmanager
def served(
    spec: dict[str, Any] | type[RestConnector], size: int = 0
) -> Iterator[tuple[type[RestConnector], RestSandboxApp, str]]:
    cls = spec if isinstance(spec, type) else connector_class(spec)
    app = create_sandbox(cls.loaded, size=size)
    url, server = serve_sandbox(app)
    try:
        yield cls, app, url
    finally:
        server.stop()


def credentials(app: RestSandboxApp) -> StaticCredentials:
    if app.oauth is not None:
        return StaticCredentials(app.oauth.issue_grant())
    return StaticCredentials(api_key=SANDBOX_KEY, username=SANDBOX_USER, password=SANDBOX_PASSWORD)


def connect(cls: type[RestConnector], app: RestSandboxApp, url: str, **settings: Any) -> Connector:
    values = {**sandbox_settings(cls.declaration), "base_url": url, **settings}
    context = ConnectorContext("people", credentials=credentials(app))
    return cls(cls.Settings.model_validate(values), context)


async def pull(connector: Connector, cursor: Cursor | None = None) -> list[Page]:
    return await pull_pages(connector, connector.streams()[0], cursor)


def records(pages: list[Page]) -> list[RemoteRecord]:
    return [r for p in pages for r in p.records]


def cursor_of(pages: list[Page]) -> Cursor | None:
    return pages[-1].cursor if pages else None
