"""What the contract checks share: the hooks a connector's test class provides, samples,
and helpers that check every page and result on the way."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pytest

from hub.connector import Change, Connector, Cursor, Page, PushResult, RemoteRecord, Stream

__all__ = [
    "IDEMPOTENT_CREATES",
    "MISSING_ID",
    "ContractBase",
    "check_page",
    "check_results",
    "last_cursor",
    "pull_pages",
    "records_of",
]

MISSING_ID = "crmhub-contract-missing-record"

IDEMPOTENT_CREATES = (
    "Creates must be idempotent: the hub sends a create again, with the same "
    "Change.idempotency_key, after a timeout or a crash between the API's answer and its own "
    "commit. Declared: `idempotency_header` if the API honours an idempotency key, or "
    "`upsert` by a natural key (the email). Programmed: send idempotency_key as the API's "
    "idempotency key, upsert, or look the record up by its natural key before creating "
    "(plugins.md, B4)"
)
"""What to change when a repeated create makes a second record."""


def check_page(page: Any) -> None:
    """What every page of every pull must be: records with string ids, string versions,
    aware times, string deletions, a JSON cursor."""
    assert isinstance(page, Page), f"pull yielded {type(page).__name__}, not a Page"
    for record in page.records:
        assert isinstance(record, RemoteRecord), f"a page holds {type(record).__name__}"
        assert isinstance(record.id, str) and record.id, f"remote id {record.id!r} is not text"
        assert isinstance(record.data, dict), f"record {record.id}: data is not a dict"
        assert record.version is None or isinstance(record.version, str), (
            f"record {record.id}: version {record.version!r} is not text"
        )
        if record.modified_at is not None:
            assert record.modified_at.tzinfo is not None, (
                f"record {record.id}: modified_at {record.modified_at} has no time zone"
            )
        for path, moment in (record.field_modified_at or {}).items():
            assert moment.tzinfo is not None, f"record {record.id}: {path} time has no zone"
    assert all(isinstance(d, str) and d for d in page.deleted), f"deleted ids {page.deleted!r}"
    if page.cursor is not None:
        assert json.loads(json.dumps(page.cursor)) == page.cursor, "a cursor is a JSON object"


def check_results(changes: list[Change], results: Any) -> dict[str, PushResult]:
    """One ``PushResult`` per change, keyed as the change, none extra: the results by key."""
    assert isinstance(results, list), f"push returned {type(results).__name__}, not a list"
    keys = [r.key for r in results]
    wanted = [c.key for c in changes]
    extra = sorted(set(keys) - set(wanted))
    missing = sorted(set(wanted) - set(keys))
    assert not extra, f"results for keys that were not in the batch: {extra}"
    assert not missing, f"no result for: {missing}"
    assert len(keys) == len(set(keys)), f"several results for one change: {sorted(keys)}"
    for result in results:
        assert isinstance(result, PushResult), f"push returned a {type(result).__name__}"
        if result.ok:
            assert result.remote_id is None or isinstance(result.remote_id, str), (
                f"{result.key}: remote id {result.remote_id!r} is not text"
            )
        else:
            assert result.message, f"refusal of {result.key} says why"
    return {r.key: r for r in results}


async def pull_pages(connector: Connector, stream: Stream, cursor: Cursor | None) -> list[Page]:
    """Every page of one pull, each checked with :func:`check_page`."""
    pages = []
    async for page in connector.pull(stream, cursor):
        check_page(page)
        pages.append(page)
    return pages


def records_of(pages: list[Page]) -> list[RemoteRecord]:
    return [record for page in pages for record in page.records]


def last_cursor(pages: list[Page], default: Cursor | None) -> Cursor | None:
    for page in reversed(pages):
        if page.cursor is not None:
            return page.cursor
    return default


class ContractBase:
    """The hooks and helpers of :class:`~hub.testing.contract.ConnectorContract`."""

    stream_name: ClassVar[str | None] = None
    """The stream under test; ``None`` takes the first stream the connector declares."""
    seed_count: ClassVar[int] = 12
    """Records seeded for the pull tests, at least (see :attr:`page_size`)."""
    page_size: ClassVar[int | None] = None
    """Records a full pull reads per page, when known. The pull tests then seed more than
    two pages' worth (``2 * page_size + 1``, if ``seed_count`` is smaller), so every pull
    has to ask for a second and a third page: a paginator that never advances fails."""
    remote_edits: ClassVar[bool] = True
    """Set to ``False`` when :meth:`edit_remotely` is not implemented."""
    stale_versions: ClassVar[bool] = True
    """The remote refuses an update naming an outdated version (``If-Match``, SyncToken);
    ``False`` for APIs whose writes are unconditional."""

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

    async def delete_remotely(self, connector: Connector, identity: str) -> None:
        """Delete the record with ``identity`` in the remote system, as a remote user would.
        Optional: without it the check of deletes in incremental pulls is skipped."""
        raise NotImplementedError

    async def throttle(self, connector: Connector, times: int) -> float | None:
        """Make the remote answer its next ``times`` requests with its throttle answer, and
        return the wait that answer asks for (``Retry-After`` seconds, or ``None`` when the
        provider names none). Optional: without it the throttle checks are skipped."""
        raise NotImplementedError

    async def reopen(self, connector: Connector) -> Connector:
        """A new connector on the same remote, as a restarted process would make it."""
        return type(connector)(connector.settings, connector.context)

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

    def invalid_create(self, stream: Stream) -> Change | None:
        """A create the remote refuses for its content (a missing required field), or
        ``None`` when the remote accepts anything."""
        return None

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

    @property
    def pull_seed_count(self) -> int:
        """Records seeded for the pull tests: ``seed_count``, raised past two pages."""
        if self.page_size is None:
            return self.seed_count
        return max(self.seed_count, 2 * self.page_size + 1)

    async def seeded(self, connector: Connector, n: int | None = None) -> list[dict[str, Any]]:
        stream = self.stream_under_test(connector)
        count = n if n is not None else self.pull_seed_count
        records = [self.sample(stream, i) for i in range(count)]
        await self.seed(connector, records)
        return records

    async def pulled_by_identity(
        self, connector: Connector, cursor: Cursor | None = None
    ) -> dict[str, RemoteRecord]:
        stream = self.stream_under_test(connector)
        found: dict[str, RemoteRecord] = {}
        for record in records_of(await pull_pages(connector, stream, cursor)):
            ident = self.identity(stream, record.data)
            assert ident not in found, (
                f"record {ident!r} pulled twice in one pull (remote ids {found[ident].id} and "
                f"{record.id}): pages overlap, or two records share the identifying field"
            )
            found[ident] = record
        return found

    async def push_checked(
        self, connector: Connector, changes: list[Change]
    ) -> dict[str, PushResult]:
        """Push ``changes``; the results by key, checked with :func:`check_results`."""
        return check_results(
            changes, await connector.push(self.stream_under_test(connector), changes)
        )

    async def push_one(self, connector: Connector, change: Change) -> PushResult:
        return (await self.push_checked(connector, [change]))[change.key]

    async def hook(self, name: str, *args: Any) -> Any:
        """Call an optional hook; the test is skipped when the subclass does not have it."""
        try:
            return await getattr(self, name)(*args)
        except NotImplementedError:
            pytest.skip(f"{type(self).__name__} does not implement {name}()")
