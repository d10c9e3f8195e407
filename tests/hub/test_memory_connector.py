"""The in-memory connector: the connector contract, plus what engine tests rely on."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import mappings
from hub.connector import (
    Change,
    Connector,
    ConnectorContext,
    Cursor,
    Page,
    PushResult,
    Stream,
)
from hub.errors import ConnectorConfigError, ErrorKind, TransientError
from hub.mapping import load_mapping
from hub.testing.contract import ConnectorContract, pull_pages, records_of
from hub.testing.memory import (
    STALE_VERSION,
    MemoryConnector,
    MemoryRemote,
    MemorySettings,
    create_remote,
    get_remote,
    remove_remote,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def remote() -> Iterator[MemoryRemote]:
    remote = create_remote("test-memory", now=T0)
    yield remote
    remove_remote("test-memory")


def make(page_size: int = 1000, entity: str = "contact") -> MemoryConnector:
    settings = MemorySettings.model_validate(
        {"store": "test-memory", "page_size": page_size, "entity": entity}
    )
    return MemoryConnector(settings, ConnectorContext(connection="mem"))


class TestMemoryContract(ConnectorContract):
    page_size = 3  # the connector's below: the pull tests seed past two pages

    @pytest.fixture
    def connector(self, remote: MemoryRemote) -> MemoryConnector:
        return make(page_size=3)

    async def seed(self, connector: Connector, records: list[dict[str, Any]]) -> None:
        for data in records:
            get_remote("test-memory").add(data)

    async def remote_records(self, connector: Connector) -> list[dict[str, Any]]:
        return list(get_remote("test-memory").all().values())

    identity_field = "email"

    async def edit_remotely(
        self, connector: Connector, identity: str, changes: dict[str, Any]
    ) -> None:
        remote = get_remote("test-memory")
        [rid] = [r for r, data in remote.all().items() if data[self.identity_field] == identity]
        remote.update(rid, **changes)

    async def delete_remotely(self, connector: Connector, identity: str) -> None:
        remote = get_remote("test-memory")
        [rid] = [r for r, data in remote.all().items() if data[self.identity_field] == identity]
        remote.delete(rid)


class TestCompanyContract(TestMemoryContract):
    identity_field = "domain"

    @pytest.fixture
    def connector(self, remote: MemoryRemote) -> MemoryConnector:
        return make(page_size=5, entity="company")


class TestGeneratedContract(TestMemoryContract):
    """The same contract with the seeded records generated from their index."""

    async def seed(self, connector: Connector, records: list[dict[str, Any]]) -> None:
        remote = get_remote("test-memory")
        if remote.seq:  # seeded again later in a test: added as usual
            await super().seed(connector, records)
        else:
            remote.generate(len(records), lambda i: dict(records[i]), prefix="g")


def create(key: str, data: dict[str, Any], idem: str | None = None) -> Change:
    return Change(key=key, op="create", data=data, idempotency_key=idem or f"idem-{key}")


async def test_unknown_store_is_a_config_error() -> None:
    connector = make()
    with pytest.raises(ConnectorConfigError, match="no memory remote named 'test-memory'"):
        await pull_pages(connector, connector.streams()[0], None)


async def test_incremental_pull_reports_changes_and_deletions(remote: MemoryRemote) -> None:
    connector = make(page_size=2)
    stream = connector.streams()[0]
    ids = [remote.add({"email": f"p{i}@example.com"}) for i in range(5)]
    pages = await pull_pages(connector, stream, None)
    assert [p.full_scan for p in pages] == [True, True, True]
    assert [r.id for r in records_of(pages)] == ids
    cursor = pages[-1].cursor
    assert cursor == {"seq": 5}

    remote.update(ids[1], first_name="Pat")
    remote.delete(ids[3])
    new = remote.add({"email": "new@example.com"})
    pages = await pull_pages(connector, stream, cursor)
    assert not any(p.full_scan for p in pages)
    assert [r.id for r in records_of(pages)] == [ids[1], new]
    assert [d for p in pages for d in p.deleted] == [ids[3]]
    assert records_of(pages)[0].data == {"email": "p1@example.com", "first_name": "Pat"}
    assert records_of(pages)[0].version == "2"
    assert await pull_pages(connector, stream, pages[-1].cursor) == []


async def test_full_pull_resumes_from_any_page_cursor(remote: MemoryRemote) -> None:
    connector = make(page_size=4)
    stream = connector.streams()[0]
    ids = [remote.add({"email": f"r{i}@example.com"}) for i in range(10)]
    first = await pull_pages(connector, stream, None)
    # A crash after the first page: resuming from its cursor lists exactly the rest.
    rest = await pull_pages(connector, stream, first[0].cursor)
    assert [r.id for r in records_of(first[:1]) + records_of(rest)] == ids


async def test_empty_full_pull_still_yields_a_full_scan_page(remote: MemoryRemote) -> None:
    connector = make()
    pages = await pull_pages(connector, connector.streams()[0], None)
    assert len(pages) == 1 and pages[0].full_scan and pages[0].records == []


async def test_bad_cursor_is_a_config_error(remote: MemoryRemote) -> None:
    connector = make()
    with pytest.raises(ConnectorConfigError, match="unrecognised cursor"):
        await pull_pages(connector, connector.streams()[0], {"seq": "7"})


async def test_stale_version_is_refused_with_the_current_record(remote: MemoryRemote) -> None:
    connector = make()
    stream = connector.streams()[0]
    rid = remote.add({"email": "v@example.com", "first_name": "Val"})
    remote.update(rid, first_name="Valerie")
    change = Change(
        key="u",
        op="update",
        data={"first_name": "V"},
        idempotency_key="u",
        remote_id=rid,
        version="1",
    )
    [result] = await connector.push(stream, [change])
    assert result.stale and result.error is ErrorKind.TRANSIENT
    assert result.message is not None and result.message.startswith(STALE_VERSION)
    assert result.version == "2"
    assert result.data == {"email": "v@example.com", "first_name": "Valerie"}
    assert remote.get(rid) == {"email": "v@example.com", "first_name": "Valerie"}
    assert remote.changes_written == 0


async def test_counters_and_idempotent_create(remote: MemoryRemote) -> None:
    connector = make()
    stream = connector.streams()[0]
    first = await connector.push(stream, [create("a", {"email": "a@example.com"}, "k1")])
    again = await connector.push(stream, [create("b", {"email": "a@example.com"}, "k1")])
    assert first[0].remote_id == again[0].remote_id
    assert len(remote) == 1
    assert (remote.push_calls, remote.changes_written) == (2, 1)


async def test_clock_sets_modified_at_and_field_times(remote: MemoryRemote) -> None:
    connector = make()
    stream = connector.streams()[0]
    rid = remote.add({"email": "c@example.com", "city": "Leeds"})
    later = remote.advance(60)
    remote.update(rid, city="York")
    [record] = records_of(await pull_pages(connector, stream, None))
    assert record.modified_at == later
    assert record.field_modified_at == {"city": later}


def test_real_clock_until_set() -> None:
    remote = MemoryRemote("clockless")
    before = datetime.now(UTC)
    rid = remote.add({"email": "x@example.com"})
    assert before <= remote.record(rid).modified_at <= datetime.now(UTC)  # type: ignore[operator]


async def test_injected_failures_and_refusals(remote: MemoryRemote) -> None:
    connector = make()
    stream = connector.streams()[0]
    remote.fail("push", TransientError("remote is down"))
    with pytest.raises(TransientError):
        await connector.push(stream, [create("a", {"email": "a@example.com"})])
    remote.refuse = lambda change: "blocked" if change.data.get("email") == "no@x.io" else None
    results = await connector.push(
        stream, [create("a", {"email": "a@example.com"}), create("b", {"email": "no@x.io"})]
    )
    assert [r.error for r in results] == [None, ErrorKind.PERMANENT]
    assert len(remote) == 1


async def test_delete_of_missing_record_succeeds(remote: MemoryRemote) -> None:
    connector = make()
    change = Change(key="d", op="delete", data={}, idempotency_key="d", remote_id="nope")
    [result] = await connector.push(connector.streams()[0], [change])
    assert result.ok


async def test_hundred_thousand_records_pull_in_linear_time(remote: MemoryRemote) -> None:
    connector = make()
    stream = connector.streams()[0]
    for i in range(100_000):
        remote.add({"email": f"bulk{i}@example.com", "first_name": "Bulk"})
    start = time.perf_counter()
    pages = await pull_pages(connector, stream, None)
    elapsed = time.perf_counter() - start
    assert sum(len(p.records) for p in pages) == 100_000
    assert len(pages) == 100
    remote.update("m50000", first_name="Changed")
    changed = await pull_pages(connector, stream, pages[-1].cursor)
    assert [r.id for r in records_of(changed)] == ["m50000"]
    print(f"pulled 100,000 memory records in {elapsed:.2f}s")


async def test_generated_records_are_made_when_read_and_kept_once_changed(
    remote: MemoryRemote,
) -> None:
    made: list[int] = []

    def person(i: int) -> dict[str, Any]:
        made.append(i)
        return {"email": f"g{i}@example.com"}

    remote.generate(5, person, prefix="g")
    assert made == [] and len(remote) == 5 and "g4" in remote
    assert "g5" not in remote and "g01" not in remote and "x1" not in remote
    connector = make(page_size=2)
    stream = connector.streams()[0]
    pages = await pull_pages(connector, stream, None)
    assert [r.id for r in records_of(pages)] == ["g0", "g1", "g2", "g3", "g4"]
    assert {r.version for r in records_of(pages)} == {"1"}
    assert pages[-1].cursor == {"seq": 5} and remote._records == {}

    remote.update("g1", first_name="Pat")
    remote.delete("g3")
    update = Change(
        key="k", op="update", data={"city": "Oslo"}, idempotency_key="k", remote_id="g4"
    )
    [result] = await connector.push(stream, [update])
    assert result.ok and result.version == "2"
    with pytest.raises(ValueError, match="already exists"):
        remote.add({"email": "again@example.com"}, id="g2")
    new = remote.add({"email": "new@example.com"})
    assert sorted(remote._records) == ["g1", "g4", new]  # only what changed is kept
    changed = await pull_pages(connector, stream, pages[-1].cursor)
    assert [r.id for r in records_of(changed)] == ["g1", "g4", new]
    assert [d for p in changed for d in p.deleted] == ["g3"]
    assert records_of(changed)[0].data == {"email": "g1@example.com", "first_name": "Pat"}
    everything = await pull_pages(connector, stream, None)
    assert [r.id for r in records_of(everything)] == ["g0", "g2", "g1", "g4", new]
    assert remote.ids() == ["g0", "g2", "g1", "g4", new] and len(remote) == 5
    with pytest.raises(ValueError, match="seeds an empty remote"):
        remote.generate(1, person, prefix="h")


# -- the contract catches broken connectors --------------------------------------------


class DuplicatingConnector(MemoryConnector):
    """Forgets idempotency keys: a retried create adds a second record."""

    async def push(self, stream: Stream, changes: list[Change]) -> list[PushResult]:
        self.remote._idempotency.clear()
        return await super().push(stream, changes)


class LeakyConnector(MemoryConnector):
    """Lets a library error out of push."""

    async def push(self, stream: Stream, changes: list[Change]) -> list[PushResult]:
        if any(c.remote_id is None and c.op != "create" for c in changes):
            raise KeyError("remote_id")
        return await super().push(stream, changes)


class RepeatingConnector(MemoryConnector):
    """Lists the first record of a full pull twice."""

    async def pull(self, stream: Stream, cursor: Cursor | None) -> AsyncIterator[Page]:
        async for page in super().pull(stream, cursor):
            if cursor is None and page.records:
                page.records.append(page.records[0])
            yield page


@pytest.mark.parametrize(
    ("broken", "test"),
    [
        (DuplicatingConnector, "test_retried_create_does_not_duplicate"),
        (LeakyConnector, "test_only_crmhub_errors_escape"),
        (RepeatingConnector, "test_full_pull_returns_every_seeded_record_once"),
    ],
)
async def test_contract_fails_broken_connectors(
    remote: MemoryRemote, broken: type[MemoryConnector], test: str
) -> None:
    connector = broken(MemorySettings(store="test-memory"), ConnectorContext(connection="mem"))
    with pytest.raises((AssertionError, KeyError)):
        await getattr(TestMemoryContract(), test)(connector)


def test_default_mapping_fits_the_remote(remote: MemoryRemote) -> None:
    mapping = load_mapping(Path(mappings.__file__).parent / "memory" / "records.toml")
    data = {"email": " Ann@Example.com", "phone": "+44 20 7946 0000", "city": "Leeds"}
    canonical = mapping.to_canonical(data)
    assert canonical == {"email": "ann@example.com", "phone": "+442079460000", "city": "Leeds"}
    assert mapping.to_remote(canonical) == canonical
