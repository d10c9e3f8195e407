"""The contract suite of a declared connector, from one call, against its generated sandbox.

::

    from hub.testing import declarative_contract

    TestAcme = declarative_contract("crmhub_connector_acme:acme.toml")

It tests every stream: the first in the class itself, each other in a nested class
``Test<Stream>`` (``stream=`` names one stream to test alone). A relative declaration path
starts at the calling test file's folder. The pull tests seed more than two pages' worth
at the declared page size (:func:`page_size`), so paging is always exercised.

The class serves the declaration's sandbox on loopback, connects with sandbox credentials,
and fills every hook of :class:`~hub.testing.contract.ConnectorContract` from the
declaration: samples follow ``[sandbox.streams.NAME] fields`` (the record path holding
``{email}`` is the identity, ``{first_name}`` or ``{name}`` is edited), deletes and throttles
go through the sandbox, ``invalid_create`` leaves out a field the sandbox requires. It runs
under pytest-asyncio's strict mode.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import AsyncIterator, Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import pytest_asyncio
from starlette.requests import Request

from hub.connector import Change, Connector, ConnectorContext, Stream
from hub.rest.auth import NoAuth, OAuth2Auth
from hub.rest.connector import RestConnector, declared
from hub.rest.jsonpath import JsonPath
from hub.rest.load import Loaded
from hub.rest.model import FakeSpec
from hub.rest.paginators import CustomPaginator, NoPaginator, PageRequest
from hub.rest.sandbox import (
    FAKE_FIELDS,
    SANDBOX_KEY,
    SANDBOX_PASSWORD,
    SANDBOX_USER,
    RestSandboxApp,
    create_sandbox,
    sandbox_settings,
)
from hub.rest.sandbox_paging import DEFAULT_PAGE, MAX_PAGE, serve
from hub.rest.sandbox_state import _take
from hub.rest.template import Template
from hub.sandbox import serve_sandbox
from hub.testing.contract import ConnectorContract
from hub.testing.credentials import StaticCredentials

__all__ = ["declarative_contract", "page_size", "sample_values"]

IDENTITY = ("{email}", "{domain}", "{name}", "{company}")
EDITED = ("{first_name}", "{last_name}", "{name}", "{company}", "{title}", "{city}")


def sample_values(i: int) -> dict[str, Any]:
    """The fake-person attributes of contract sample ``i`` (unique per ``i``)."""
    return {
        "index": i,
        "email": f"contract{i}@example.com",
        "first_name": f"First{i}",
        "last_name": "Doe",
        "name": f"First{i} Doe",
        "company": f"Contract Company {i}",
        "domain": f"company{i}.example.com",
        "phone": f"+1415555{i:04d}",
        "title": "Buyer",
        "city": "Utrecht",
        "country": "NL",
    }


def page_size(loaded: Loaded, stream: str) -> int | None:
    """How many records the generated sandbox puts on the first page of ``stream``'s
    listing, asked for as the declared paginator asks (``None``: the listing is one page).

    Read by serving the paginator's first request, so it holds for every kind, ``custom``
    ones included: the size the declaration sends, or the sandbox's own when it sends none.
    """
    spec = loaded.spec.streams[stream]
    paginator: Any = spec.paginator
    if isinstance(paginator, NoPaginator):
        return None
    if isinstance(paginator, CustomPaginator):
        paginator = loaded.hooks[paginator.hook](**paginator.options)
    first = paginator.start(PageRequest(spec.method, spec.path, dict(spec.params), spec.body))
    query = {k: str(v) for k, v in first.params.items()}
    inc = spec.incremental
    if inc is not None and inc.resume == "next_page":  # a change feed serves its own pages
        fake = loaded.spec.sandbox.streams.get(stream, FakeSpec())
        size_param = fake.size_param or getattr(paginator, "size_param", None)
        asked = query.get(size_param, "") if size_param else ""
        return min(int(asked) if asked.isdigit() else DEFAULT_PAGE, MAX_PAGE)
    scope = {
        "type": "http",
        "method": first.method,
        "scheme": "http",
        "server": ("sandbox", 80),
        "root_path": "",
        "path": "/" + first.url.lstrip("/"),
        "query_string": urlencode(query).encode(),
        "headers": [],
    }
    served = serve(paginator, Request(scope), first.json, list(range(MAX_PAGE + 1)))
    return len(served.items) or None


def _connector_class(source: type[RestConnector] | str | Path, base: Path) -> type[RestConnector]:
    if isinstance(source, type):
        return source
    text = str(source)
    module, sep, name = text.partition(":")
    path = Path(text)
    if sep and not (base / path).exists():
        return declared(Path(str(files(module).joinpath(name))))
    return declared(base / path)


def _caller_folder() -> Path:
    """The folder of the file that called :func:`declarative_contract` (the test module),
    where relative declaration paths start; the working directory when there is none."""
    caller = sys._getframe(2).f_globals.get("__file__")
    return Path(caller).resolve().parent if caller else Path.cwd()


def declarative_contract(
    source: type[RestConnector] | str | Path,
    *,
    stream: str | None = None,
    seed_count: int = 12,
) -> type[ConnectorContract]:
    """A ``ConnectorContract`` subclass that tests ``source`` (a declared connector class,
    a declaration file, or ``"package:file.toml"``) against its generated sandbox.

    A relative file path starts at the folder of the calling test file, not the working
    directory, so the tests pass wherever pytest is started. ``stream`` names the one stream
    to test; without it every stream is tested: the first by the class itself, each other
    by a class nested in it, ``Test<Stream>`` (pytest collects nested test classes). The
    pull tests seed ``seed_count`` records, or more than two pages' worth at the declared
    page size when that is more, so paging is always exercised.
    """
    cls = _connector_class(source, _caller_folder())
    names = list(cls.declaration.streams)
    if stream is not None:
        if stream not in names:
            raise ValueError(f"no stream {stream!r} in {cls.__name__} (it has: {names})")
        names = [stream]
    first, *others = (_stream_contract(cls, name, seed_count) for name in names)
    for name, contract in zip(names[1:], others, strict=True):
        nested = "Test" + "".join(part.capitalize() for part in name.split("_"))
        contract.__name__ = nested
        contract.__qualname__ = f"{first.__qualname__}.{nested}"
        setattr(first, nested, contract)
    return first


def _stream_contract(
    cls: type[RestConnector], name: str, seed_count: int
) -> type[ConnectorContract]:
    """The contract of one stream of ``cls``."""
    spec = cls.declaration
    stream_spec = spec.streams[name]
    fields = spec.sandbox.streams.get(name)
    templates = (fields.fields if fields and fields.fields else None) or FAKE_FIELDS.get(
        stream_spec.entity, {"name": "{name}"}
    )
    ident = next((p for p, t in templates.items() if t in IDENTITY), next(iter(templates)))
    edited = next((p for p, t in templates.items() if t in EDITED and p != ident), None)
    required = spec.sandbox.required.get(name, [])
    moved = fields.moved if fields else {}
    writes_versions = any(
        w is not None and w.version != "none" for w in (stream_spec.update, stream_spec.delete)
    )

    class DeclarativeContract(ConnectorContract):
        stream_name = name

        @pytest.fixture(scope="class")
        @classmethod
        def served(cls_) -> Iterator[tuple[RestSandboxApp, str]]:
            app = create_sandbox(cls.loaded, size=0)
            url, server = serve_sandbox(app)
            try:
                yield app, url
            finally:
                server.stop()

        @pytest_asyncio.fixture
        async def connector(  # type: ignore[override]
            self, served: tuple[RestSandboxApp, str], tmp_path: Path
        ) -> AsyncIterator[Connector]:
            app, url = served
            app.reset()
            app.provider.retry_after = spec.sandbox.retry_after
            settings = cls.Settings.model_validate({**sandbox_settings(spec), "base_url": url})
            context = ConnectorContext(name, tmp_path, credentials=_credentials(app))
            made = cls(settings, context)
            made.served = app  # type: ignore[attr-defined]
            yield made
            await made.aclose()

        async def seed(self, connector: Connector, records: list[dict[str, Any]]) -> None:
            for record in records:
                _app(connector).provider.add(name, record)

        async def remote_records(self, connector: Connector) -> list[dict[str, Any]]:
            return _app(connector).provider.records(name)

        def _id(self, connector: Connector, identity: str) -> str:
            provider = _app(connector).provider
            found = provider.find(name, ident, identity)
            if found is None:  # identities compare as ``identity`` writes them (lower case)
                found = next(
                    (
                        str(provider.tables[name].key.first(r))
                        for r in provider.records(name)
                        if str(JsonPath(ident).first(r) or "").strip().lower() == identity
                    ),
                    None,
                )
            assert found is not None, f"no {name} record with {ident} = {identity!r}"
            return found

        async def edit_remotely(
            self, connector: Connector, identity: str, changes: dict[str, Any]
        ) -> None:
            _app(connector).provider.edit(name, self._id(connector, identity), changes)

        async def delete_remotely(self, connector: Connector, identity: str) -> None:
            _app(connector).provider.remove(name, self._id(connector, identity))

        async def throttle(self, connector: Connector, times: int) -> float | None:
            app = _app(connector)
            app.provider.retry_after = 0.0
            app.set_faults(burst_429=times)
            return 0.0

        def sample(self, stream: Stream, i: int) -> dict[str, Any]:
            values = sample_values(i)
            record: dict[str, Any] = {}
            for path, text in templates.items():
                JsonPath(path).set(record, Template(text).render(values))
            return record

        def identity(self, stream: Stream, data: dict[str, Any]) -> str:
            return str(JsonPath(ident).first(data) or "").strip().lower()

        def edit(self, stream: Stream, data: dict[str, Any]) -> dict[str, Any]:
            if edited is None:
                return {}
            return JsonPath(edited).set({}, f"{JsonPath(edited).first(data) or ''} Changed")

        def matches(self, pulled: dict[str, Any], expected: dict[str, Any]) -> bool:
            if moved:  # write-only fields are read back where the API keeps them
                expected = copy.deepcopy(expected)
                for source, target in moved.items():
                    value = _take(expected, JsonPath(source))
                    if value is not None:
                        JsonPath(target).set(expected, value)
            return _subset(pulled, expected)

        @pytest.mark.asyncio
        async def test_only_crmhub_errors_escape(self, connector: Connector) -> None:
            violations = _app(connector).violations
            await super().test_only_crmhub_errors_escape(connector)
            # its odd writes (an empty create) are invalid on purpose: a description refuses
            # them as the provider would; what the sandbox answered is still checked
            for violation in violations.take():
                if violation.direction != "request":
                    violations.add(violation)

        def invalid_create(self, stream: Stream) -> Change | None:
            if not required:
                return None
            data = self.sample(stream, 900)
            data.pop(str(JsonPath(required[0]).steps[0]), None)
            return Change("invalid", "create", data, "contract-invalid")

    DeclarativeContract.seed_count = seed_count
    DeclarativeContract.page_size = page_size(cls.loaded, name)
    DeclarativeContract.settles = stream_spec.incremental is not None
    DeclarativeContract.stale_versions = writes_versions
    DeclarativeContract.remote_edits = edited is not None
    DeclarativeContract.__name__ = DeclarativeContract.__qualname__ = f"Test{cls.__name__}"
    return DeclarativeContract


def _app(connector: Connector) -> RestSandboxApp:
    app: RestSandboxApp = connector.served  # type: ignore[attr-defined]
    return app


def _credentials(app: RestSandboxApp) -> StaticCredentials:
    auth = app.provider.spec.client.auth
    if isinstance(auth, NoAuth):
        return StaticCredentials()
    if isinstance(auth, OAuth2Auth) and app.oauth is not None:
        return StaticCredentials(app.oauth.issue_grant())
    return StaticCredentials(api_key=SANDBOX_KEY, username=SANDBOX_USER, password=SANDBOX_PASSWORD)


def _subset(pulled: Any, expected: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(pulled, dict) and all(
            _subset(pulled.get(k), v) for k, v in expected.items()
        )
    return bool(pulled == expected)
