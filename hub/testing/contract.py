"""The standard test suite every connector runs: one subclass, a few hooks.

A connector (built-in or third-party) proves it keeps the :class:`~hub.connector.Connector`
contract by subclassing :class:`ConnectorContract` in its own tests::

    import pytest
    from hub.testing.contract import ConnectorContract

    class TestAcmeContract(ConnectorContract):
        @pytest.fixture
        async def connector(self, tmp_path):           # 1. a connector on a fresh, empty remote
            connector = AcmeConnector(AcmeSettings(...), ConnectorContext("acme", tmp_path))
            yield connector
            await connector.aclose()

        async def seed(self, connector, records):      # 2. put records in, bypassing push
            ...

        async def remote_records(self, connector):     # 3. read every record back, bypassing pull
            ...

        async def edit_remotely(self, connector, identity, changes):  # 4. optional
            ...

The suite then checks that streams are declared sanely, a full pull returns every seeded
record exactly once, cursors are JSON and settle, remote changes show up from a saved cursor,
pushes return one result per change (with remote ids, without duplicates on retry, with
updates and deletes round-tripping), refused items are results rather than exceptions, and
nothing but crmhub errors leave ``pull`` and ``push``.

Records are exchanged in the remote shape. The defaults suit flat remotes whose keys are
canonical field names (``email``, ``first_name``, ``name``, ``domain``); a connector with
another shape overrides :meth:`~ConnectorContract.sample`, :meth:`~ConnectorContract.identity`,
:meth:`~ConnectorContract.edit` and, if values come back transformed,
:meth:`~ConnectorContract.matches`. ``stream_name`` picks the stream under test (default:
the first one). Every test is marked ``asyncio``, so the suite runs under pytest-asyncio in
strict mode too (write async fixtures with ``@pytest_asyncio.fixture`` there).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, ClassVar

import pytest

from hub.connector import Change, Connector, Cursor, Page, PushResult, RemoteRecord, Stream
from hub.errors import CrmhubError, ErrorKind
from hub.records import ENTITY_TYPES

MISSING_ID = "crmhub-contract-missing-record"


async def pull_pages(connector: Connector, stream: Stream, cursor: Cursor | None) -> list[Page]:
    """Every page of one pull, checked for type on the way."""
    pages = []
    async for page in connector.pull(stream, cursor):
        assert isinstance(page, Page), f"pull yielded {type(page).__name__}, not a Page"
        pages.append(page)
    return pages


def records_of(pages: list[Page]) -> list[RemoteRecord]:
    return [record for page in pages for record in page.records]


def last_cursor(pages: list[Page], default: Cursor | None) -> Cursor | None:
    for page in reversed(pages):
        if page.cursor is not None:
            return page.cursor
    return default


class ConnectorContract:
    """Base class of a connector's contract tests; see the module docstring for its use."""

    stream_name: ClassVar[str | None] = None
    """The stream under test; ``None`` takes the first stream the connector declares."""
    seed_count: ClassVar[int] = 12
    """Records seeded for the pull tests (set it above the page size to cover paging)."""
    remote_edits: ClassVar[bool] = True
    """Set to ``False`` when :meth:`edit_remotely` is not implemented."""

    # -- hooks a connector's test class provides -----------------------------------------

    @pytest.fixture
    def connector(self) -> Connector:
        """A connector instance whose remote system starts empty (override this fixture)."""
        raise NotImplementedError("define a `connector` fixture in the contract subclass")

    async def seed(self, connector: Connector, records: list[dict[str, Any]]) -> None:
        """Put ``records`` (remote shape) into the remote system directly, not via push."""
        raise NotImplementedError("implement seed() in the contract subclass")

    async def remote_records(self, connector: Connector) -> list[dict[str, Any]]:
        """Every record the remote system holds now (remote shape), read directly."""
        raise NotImplementedError("implement remote_records() in the contract subclass")

    async def edit_remotely(
        self, connector: Connector, identity: str, changes: dict[str, Any]
    ) -> None:
        """Change the record with ``identity`` in the remote system, as a remote user would."""
        raise NotImplementedError(
            "implement edit_remotely() in the contract subclass or set remote_edits = False"
        )

    def sample(self, stream: Stream, i: int) -> dict[str, Any]:
        """The ``i``-th sample record in the remote shape; distinct ``i``, distinct identity."""
        if stream.entity == "company":
            return {"name": f"Contract Company {i}", "domain": f"company{i}.example.com"}
        return {"email": f"contract{i}@example.com", "first_name": f"First{i}", "last_name": "Doe"}

    def identity(self, stream: Stream, data: dict[str, Any]) -> str:
        """What tells sample records apart, read from remote-shape data."""
        field = "domain" if stream.entity == "company" else "email"
        return str(data.get(field) or "").strip().lower()

    def edit(self, stream: Stream, data: dict[str, Any]) -> dict[str, Any]:
        """Partial changes to a sample record that keep its identity."""
        field = "name" if stream.entity == "company" else "first_name"
        return {field: f"{data.get(field) or ''} Changed"}

    def matches(self, pulled: dict[str, Any], expected: dict[str, Any]) -> bool:
        """Whether pulled data carries the expected values (default: a subset check)."""
        return all(pulled.get(key) == value for key, value in expected.items())

    def refused_change(self, stream: Stream) -> Change:
        """A change the remote refuses (default: an update of a record that does not exist)."""
        return Change(
            key="refused",
            op="update",
            data=self.edit(stream, self.sample(stream, 0)),
            idempotency_key="contract-refused",
            remote_id=MISSING_ID,
        )

    # -- helpers -------------------------------------------------------------------------

    def stream_under_test(self, connector: Connector) -> Stream:
        if self.stream_name is None:
            return connector.streams()[0]
        return connector.stream(self.stream_name)

    def create(self, stream: Stream, i: int, key: str | None = None) -> Change:
        return Change(
            key=key or f"create-{i}",
            op="create",
            data=self.sample(stream, i),
            idempotency_key=f"contract-create-{i}",
        )

    async def seeded(self, connector: Connector, n: int | None = None) -> list[dict[str, Any]]:
        stream = self.stream_under_test(connector)
        records = [self.sample(stream, i) for i in range(n if n is not None else self.seed_count)]
        await self.seed(connector, records)
        return records

    async def pulled_by_identity(
        self, connector: Connector, cursor: Cursor | None = None
    ) -> dict[str, RemoteRecord]:
        stream = self.stream_under_test(connector)
        found: dict[str, RemoteRecord] = {}
        for record in records_of(await pull_pages(connector, stream, cursor)):
            ident = self.identity(stream, record.data)
            assert ident not in found, f"record {ident!r} pulled twice"
            found[ident] = record
        return found

    async def push_one(self, connector: Connector, change: Change) -> PushResult:
        results = await connector.push(self.stream_under_test(connector), [change])
        assert len(results) == 1, f"push of one change gave {len(results)} results"
        assert results[0].key == change.key
        return results[0]

    # -- the contract --------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_streams_are_declared_sanely(self, connector: Connector) -> None:
        assert isinstance(type(connector).name, str) and type(connector).name
        streams = connector.streams()
        assert streams, "a connector offers at least one stream"
        names = [s.name for s in streams]
        assert len(names) == len(set(names)), f"stream names repeat: {names}"
        for stream in streams:
            assert isinstance(stream, Stream)
            assert stream.name and stream.name.strip() == stream.name
            assert stream.entity in ENTITY_TYPES, f"unknown entity {stream.entity!r}"
            assert connector.stream(stream.name) == stream
        overrides_push = type(connector).push is not Connector.push
        assert overrides_push == any(s.can_push for s in streams), (
            "streams that can push need a push() implementation, and push() needs such a stream"
        )

    @pytest.mark.asyncio
    async def test_full_pull_returns_every_seeded_record_once(self, connector: Connector) -> None:
        stream = self.stream_under_test(connector)
        seeded = await self.seeded(connector)
        pages = await pull_pages(connector, stream, None)
        records = records_of(pages)
        ids = [r.id for r in records]
        assert all(isinstance(i, str) and i for i in ids), "remote ids are non-empty strings"
        assert len(ids) == len(set(ids)), "a full pull lists each record once"
        found = await self.pulled_by_identity(connector)
        assert set(found) == {self.identity(stream, data) for data in seeded}
        for data in seeded:
            record = found[self.identity(stream, data)]
            assert self.matches(record.data, data), f"{record.data!r} lacks {data!r}"
            assert record.version is None or isinstance(record.version, str)
            if record.modified_at is not None:
                assert record.modified_at.tzinfo is not None, "modified_at must be aware"

    @pytest.mark.asyncio
    async def test_cursors_are_json_and_settle(self, connector: Connector) -> None:
        stream = self.stream_under_test(connector)
        await self.seeded(connector)
        pages = await pull_pages(connector, stream, None)
        for page in pages:
            if page.cursor is not None:
                assert json.loads(json.dumps(page.cursor)) == page.cursor
        cursor = last_cursor(pages, None)
        assert cursor is not None, "a pull that saw records ends with a cursor"
        again = await pull_pages(connector, stream, cursor)
        assert records_of(again) == [], "nothing changed, so nothing is pulled"
        assert [d for page in again for d in page.deleted] == []

    @pytest.mark.asyncio
    async def test_remote_changes_show_up_from_saved_cursor(self, connector: Connector) -> None:
        stream = self.stream_under_test(connector)
        seeded = await self.seeded(connector)
        cursor = last_cursor(await pull_pages(connector, stream, None), None)
        newcomer = self.sample(stream, self.seed_count)
        await self.seed(connector, [newcomer])
        edits = self.edit(stream, seeded[0])
        if self.remote_edits:
            await self.edit_remotely(connector, self.identity(stream, seeded[0]), edits)
        found = await self.pulled_by_identity(connector, cursor)
        assert self.identity(stream, newcomer) in found, "a record added remotely is pulled"
        if self.remote_edits:
            edited = found.get(self.identity(stream, seeded[0]))
            assert edited is not None, "a record edited remotely is pulled"
            assert self.matches(edited.data, edits)

    @pytest.mark.asyncio
    async def test_push_create_returns_remote_id_and_is_pulled(self, connector: Connector) -> None:
        stream = self.stream_under_test(connector)
        await self.seeded(connector, 2)
        change = self.create(stream, 100)
        result = await self.push_one(connector, change)
        if not stream.can_create:
            assert result.error is not None, "a stream that cannot create refuses creates"
            return
        assert result.ok, f"create failed: {result.message}"
        assert isinstance(result.remote_id, str) and result.remote_id
        found = await self.pulled_by_identity(connector)
        record = found[self.identity(stream, change.data)]
        assert record.id == result.remote_id
        assert self.matches(record.data, change.data)

    @pytest.mark.asyncio
    async def test_push_returns_one_result_per_change(self, connector: Connector) -> None:
        stream = self.stream_under_test(connector)
        assert await connector.push(stream, []) == []
        changes = [self.create(stream, 200 + i, key=f"k{i}") for i in range(3)]
        results = await connector.push(stream, changes)
        assert sorted(r.key for r in results) == ["k0", "k1", "k2"]
        if stream.can_create:
            assert all(r.ok for r in results), [r.message for r in results]
            assert len({r.remote_id for r in results}) == 3

    @pytest.mark.asyncio
    async def test_retried_create_does_not_duplicate(self, connector: Connector) -> None:
        stream = self.stream_under_test(connector)
        await self.seeded(connector, 2)
        change = self.create(stream, 300)
        first = await self.push_one(connector, change)
        retry = Change(
            key="retry", op="create", data=change.data, idempotency_key=change.idempotency_key
        )
        second = await self.push_one(connector, retry)
        if not stream.can_create:
            assert first.error is not None and second.error is not None
            return
        assert first.ok and second.ok, (first.message, second.message)
        assert second.remote_id == first.remote_id
        held = [self.identity(stream, d) for d in await self.remote_records(connector)]
        assert held.count(self.identity(stream, change.data)) == 1
        assert len(held) == 3

    @pytest.mark.asyncio
    async def test_update_round_trips(self, connector: Connector) -> None:
        stream = self.stream_under_test(connector)
        seeded = await self.seeded(connector, 3)
        target = (await self.pulled_by_identity(connector))[self.identity(stream, seeded[1])]
        edits = self.edit(stream, seeded[1])
        change = Change(
            key="upd",
            op="update",
            data=edits,
            idempotency_key="contract-update",
            remote_id=target.id,
            version=target.version,
        )
        result = await self.push_one(connector, change)
        if not stream.can_update:
            assert result.error is not None, "a stream that cannot update refuses updates"
            return
        assert result.ok, f"update failed: {result.message}"
        assert result.remote_id
        after = (await self.pulled_by_identity(connector))[self.identity(stream, seeded[1])]
        assert after.id == result.remote_id
        assert self.matches(after.data, {**seeded[1], **edits})
        if target.version is not None and after.version is not None:
            assert after.version != target.version, "an update changes the version"
            assert result.version in (None, after.version)

    @pytest.mark.asyncio
    async def test_delete_round_trips(self, connector: Connector) -> None:
        stream = self.stream_under_test(connector)
        seeded = await self.seeded(connector, 3)
        target = (await self.pulled_by_identity(connector))[self.identity(stream, seeded[2])]
        change = Change(
            key="del",
            op="delete",
            data={},
            idempotency_key="contract-delete",
            remote_id=target.id,
            version=target.version,
        )
        result = await self.push_one(connector, change)
        if not stream.can_delete:
            assert result.error is not None, "a stream that cannot delete refuses deletes"
            return
        assert result.ok, f"delete failed: {result.message}"
        assert self.identity(stream, seeded[2]) not in await self.pulled_by_identity(connector)
        assert len(await self.remote_records(connector)) == 2

    @pytest.mark.asyncio
    async def test_refused_item_is_a_result_not_an_exception(self, connector: Connector) -> None:
        stream = self.stream_under_test(connector)
        await self.seeded(connector, 2)
        refused = self.refused_change(stream)
        good = self.create(stream, 400, key="good")
        results = {r.key: r for r in await connector.push(stream, [refused, good])}
        assert set(results) == {refused.key, "good"}
        assert isinstance(results[refused.key].error, ErrorKind)
        assert results[refused.key].message, "a refusal says why"
        if stream.can_create:
            assert results["good"].ok, "one refused item does not fail the others"

    @pytest.mark.asyncio
    async def test_only_crmhub_errors_escape(self, connector: Connector) -> None:
        stream = self.stream_under_test(connector)
        await self.seeded(connector, 2)
        for cursor in ({}, {"unexpected": [1, 2]}):
            with contextlib.suppress(CrmhubError):
                await pull_pages(connector, stream, cursor)
        sample = self.sample(stream, 500)
        odd = [
            Change(key="no-id-update", op="update", data=sample, idempotency_key="odd-1"),
            Change(key="no-id-delete", op="delete", data={}, idempotency_key="odd-2"),
            Change(key="empty-create", op="create", data={}, idempotency_key="odd-3"),
            Change(
                key="nested-create",
                op="create",
                data={**sample, "crmhub_contract_nested": {"a": [1, {"b": None}]}},
                idempotency_key="odd-4",
            ),
        ]
        try:
            results = await connector.push(stream, odd)
        except CrmhubError:
            return
        assert sorted(r.key for r in results) == sorted(c.key for c in odd)
        by_key = {r.key: r for r in results}
        assert by_key["no-id-update"].error is not None, "an update needs a remote id"
