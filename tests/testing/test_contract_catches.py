"""Each defect the contract suite is there to catch, planted in a connector that otherwise
works, is caught: the suite's check fails on the broken connector (and passes on the sound
one, which ``tests/hub/test_memory_connector.py`` and the example plugin run in full)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

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
from hub.errors import ErrorKind, PermanentError
from hub.rest import PageAnswer, PageRequest, declared
from hub.rest.sandbox import RestSandboxApp, create_sandbox, sandbox_settings
from hub.sandbox import serve_sandbox
from hub.testing.contract import ConnectorContract
from hub.testing.credentials import static_credentials
from hub.testing.declarative import declarative_contract, page_size
from hub.testing.memory import MemoryConnector, MemorySettings, create_remote, remove_remote
from tests.rest.hooks import PageLetters

STORE = "contract-defects"
CAUGHT = (AssertionError, pytest.fail.Exception)


class MemoryHooks(ConnectorContract):
    """The suite's hooks for the in-memory remote (not collected: no ``Test`` prefix)."""

    def _remote(self) -> Any:
        from hub.testing.memory import get_remote

        return get_remote(STORE)

    async def seed(self, connector: Connector, records: list[dict[str, Any]]) -> None:
        for data in records:
            self._remote().add(data)

    async def remote_records(self, connector: Connector) -> list[dict[str, Any]]:
        return list(self._remote().all().values())

    def _rid(self, identity: str) -> str:
        [rid] = [r for r, d in self._remote().all().items() if d["email"] == identity]
        return str(rid)

    async def edit_remotely(self, connector: Connector, identity: str, changes: dict) -> None:
        self._remote().update(self._rid(identity), **changes)

    async def delete_remotely(self, connector: Connector, identity: str) -> None:
        self._remote().delete(self._rid(identity))


@pytest.fixture
def remote() -> Iterator[Any]:
    made = create_remote(STORE, now=datetime(2024, 5, 1, tzinfo=UTC))
    yield made
    remove_remote(STORE)


def memory(cls: type[MemoryConnector] = MemoryConnector, page_size: int = 5) -> Connector:
    settings = MemorySettings(store=STORE, page_size=page_size)
    return cls(settings, ConnectorContext("defect"))


def fresh() -> None:
    create_remote(STORE, now=datetime(2024, 5, 1, tzinfo=UTC))


async def caught(
    check: str, connector: Connector, says: str, suite: ConnectorContract | None = None
) -> None:
    """``check`` of the suite fails on ``connector``, saying ``says`` (each run starts on an
    empty remote)."""
    fresh()
    suite = suite or MemoryHooks()
    with pytest.raises(CAUGHT) as failed:
        await getattr(suite, check)(connector)
    assert says in str(failed.value), str(failed.value)


async def passes(check: str, connector: Connector, suite: ConnectorContract | None = None) -> None:
    fresh()
    await getattr(suite or MemoryHooks(), check)(connector)


# -- push ---------------------------------------------------------------------------------


class RaisesOnOneBadItem(MemoryConnector):
    async def push(self, stream: Stream, changes: list[Change]) -> list[PushResult]:
        results = await super().push(stream, changes)
        refused = [r for r in results if not r.ok]
        if refused:
            raise PermanentError(f"refused: {refused[0].message}", connection=self.connection)
        return results


async def test_push_raising_on_one_bad_item_is_caught(remote: Any) -> None:
    await caught(
        "test_one_bad_item_is_a_result_not_an_exception",
        memory(RaisesOnOneBadItem),
        "push raised for one bad item",
    )
    await passes("test_one_bad_item_is_a_result_not_an_exception", memory())


class DeleteOfMissingFails(MemoryConnector):
    """Answers a delete of a record that is not there with an error (a bare 404)."""

    async def push(self, stream: Stream, changes: list[Change]) -> list[PushResult]:
        out = []
        for change in changes:
            if change.op == "delete" and change.remote_id not in self.remote:
                out.append(
                    PushResult(
                        change.key,
                        change.remote_id,
                        error=ErrorKind.PERMANENT,
                        message="HTTP 404 Not Found",
                    )
                )
            else:
                out.extend(await super().push(stream, [change]))
        return out


async def test_delete_of_an_already_deleted_record_reported_as_error_is_caught(
    remote: Any,
) -> None:
    check = "test_delete_of_an_already_deleted_record_succeeds"
    await caught(check, memory(DeleteOfMissingFails), "already gone is the wanted outcome")
    await passes(check, memory())


class ResultsKeyedByRemoteId(MemoryConnector):
    async def push(self, stream: Stream, changes: list[Change]) -> list[PushResult]:
        results = await super().push(stream, changes)
        return [
            dataclasses.replace(r, key=r.remote_id) if r.ok and r.remote_id else r for r in results
        ]


class DropsTheLastResult(MemoryConnector):
    async def push(self, stream: Stream, changes: list[Change]) -> list[PushResult]:
        return (await super().push(stream, changes))[:-1]


async def test_a_result_for_a_key_not_in_the_batch_is_caught(remote: Any) -> None:
    await caught(
        "test_results_match_a_mixed_batch",
        memory(ResultsKeyedByRemoteId),
        "results for keys that were not in the batch",
    )
    await passes("test_results_match_a_mixed_batch", memory())


async def test_a_missing_result_is_caught(remote: Any) -> None:
    await caught("test_results_match_a_mixed_batch", memory(DropsTheLastResult), "no result for")


class NoFetch(MemoryConnector):
    async def fetch(self, stream: Stream, remote_ids: list[str]) -> list[RemoteRecord]:
        return []


class StaleNotFlagged(MemoryConnector):
    async def push(self, stream: Stream, changes: list[Change]) -> list[PushResult]:
        results = await super().push(stream, changes)
        return [
            dataclasses.replace(r, stale=False, error=ErrorKind.PERMANENT) if r.stale else r
            for r in results
        ]


class IgnoresVersions(MemoryConnector):
    async def push(self, stream: Stream, changes: list[Change]) -> list[PushResult]:
        unconditional = [dataclasses.replace(c, version=None) for c in changes]
        return await super().push(stream, unconditional)


async def test_fetch_that_reads_nothing_is_caught(remote: Any) -> None:
    check = "test_stale_version_is_refused_and_fetch_reads_the_current_record"
    await caught(check, memory(NoFetch), "fetch reads the record")
    await passes(check, memory())


async def test_a_stale_refusal_without_stale_flag_is_caught(remote: Any) -> None:
    check = "test_stale_version_is_refused_and_fetch_reads_the_current_record"
    await caught(check, memory(StaleNotFlagged), "sets stale=True")


async def test_an_update_that_ignores_the_version_is_caught(remote: Any) -> None:
    check = "test_stale_version_is_refused_and_fetch_reads_the_current_record"
    await caught(check, memory(IgnoresVersions), "outdated version is refused")


class RemembersCreatesInMemory(MemoryConnector):
    """Recognises a repeated create only within one process: lost after a crash."""

    def __init__(self, settings: Any, context: ConnectorContext) -> None:
        super().__init__(settings, context)
        self.made: dict[str, str] = {}

    async def push(self, stream: Stream, changes: list[Change]) -> list[PushResult]:
        out = []
        for change in changes:
            if change.op != "create":
                out.extend(await super().push(stream, [change]))
                continue
            rid = self.made.get(change.idempotency_key) or self.remote.add(change.data)
            self.made[change.idempotency_key] = rid
            out.append(PushResult(change.key, rid, self.remote.version(rid)))
        return out


async def test_creates_repeated_after_a_crash_are_caught(remote: Any) -> None:
    broken = memory(RemembersCreatesInMemory)
    await passes("test_retried_create_does_not_duplicate", broken)  # the old check misses it
    check = "test_create_after_a_crash_before_commit_is_not_repeated"
    await caught(check, memory(RemembersCreatesInMemory), "made a second record")
    await passes("test_create_after_a_crash_before_commit_is_not_repeated", memory())


# -- pull ---------------------------------------------------------------------------------


class DropsDeletions(MemoryConnector):
    async def pull(self, stream: Stream, cursor: Cursor | None) -> AsyncIterator[Page]:
        async for page in super().pull(stream, cursor):
            page.deleted = []
            yield page


async def test_deletes_lost_in_incremental_pulls_are_caught(remote: Any) -> None:
    await caught(
        "test_deletes_show_up_in_incremental_pulls",
        memory(DropsDeletions),
        "neither in Page.deleted nor implied by a full scan",
    )
    await passes("test_deletes_show_up_in_incremental_pulls", memory())


class IncrementalPagesClaimFullScan(MemoryConnector):
    async def pull(self, stream: Stream, cursor: Cursor | None) -> AsyncIterator[Page]:
        async for page in super().pull(stream, cursor):
            page.full_scan = True
            yield page


async def test_partial_pages_marked_full_scan_are_caught(remote: Any) -> None:
    await caught(
        "test_full_scan_pages_list_everything",
        memory(IncrementalPagesClaimFullScan),
        "full_scan pages leave out live records",
    )
    await passes("test_full_scan_pages_list_everything", memory())


class NaiveTimesWhenIncremental(MemoryConnector):
    async def pull(self, stream: Stream, cursor: Cursor | None) -> AsyncIterator[Page]:
        async for page in super().pull(stream, cursor):
            if cursor is not None:
                for record in page.records:
                    assert record.modified_at is not None
                    record.modified_at = record.modified_at.replace(tzinfo=None)
            yield page


async def test_naive_modified_at_is_caught(remote: Any) -> None:
    await caught(
        "test_modified_at_is_aware_in_every_pull",
        memory(NaiveTimesWhenIncremental),
        "has no time zone",
    )
    await passes("test_modified_at_is_aware_in_every_pull", memory())


class InclusiveCursor(MemoryConnector):
    """Saves the last change seen and asks "at or after" it: the boundary comes back."""

    async def pull(self, stream: Stream, cursor: Cursor | None) -> AsyncIterator[Page]:
        if cursor is not None:
            cursor = {"seq": max(0, cursor["seq"] - 1)}
        async for page in super().pull(stream, cursor):
            yield page


class StuckCursor(MemoryConnector):
    async def pull(self, stream: Stream, cursor: Cursor | None) -> AsyncIterator[Page]:
        async for page in super().pull(stream, cursor):
            if cursor is not None:
                page.cursor = cursor
            yield page


async def test_cursors_that_do_not_settle_are_caught(remote: Any) -> None:
    await caught(
        "test_cursor_settles_after_changes",
        memory(InclusiveCursor),
        "pulled again from the cursor after the changes",
    )
    await caught("test_cursor_settles_after_changes", memory(StuckCursor), "moves the cursor")
    await passes("test_cursor_settles_after_changes", memory())


# -- over HTTP: a declared connector and its sandbox --------------------------------------------

PEOPLE: dict[str, Any] = {
    "name": "people",
    "client": {"base_url": "https://people.example/api", "auth": "bearer"},
    "streams": {
        "contacts": {
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
    },
}


def _declared(**changes: Any) -> Any:
    spec = {**PEOPLE, **changes}
    return declared(spec, label="people", mapping_dir=Path("."))


@pytest.fixture
def people() -> Iterator[tuple[RestSandboxApp, str]]:
    app = create_sandbox(_declared().loaded, size=0)
    url, server = serve_sandbox(app)
    try:
        yield app, url
    finally:
        server.stop()


def connect(cls: Any, served: tuple[RestSandboxApp, str]) -> Connector:
    """A connector of ``cls`` on the sandbox, put back to empty."""
    app, url = served
    app.reset()
    settings = cls.Settings.model_validate({**sandbox_settings(cls.declaration), "base_url": url})
    made = cls(
        settings,
        ConnectorContext("people", credentials=static_credentials(api_key="sandbox-api-key")),
    )
    made.served = app
    return made


def http_suite(cls: Any) -> ConnectorContract:
    suite: ConnectorContract = declarative_contract(cls)()
    return suite


async def test_throttles_classified_as_permanent_are_caught(
    people: tuple[RestSandboxApp, str],
) -> None:
    broken = _declared(errors=[{"status": 429, "kind": "permanent"}])
    sound = _declared()
    check = "test_throttled_push_says_how_long_to_wait"
    await caught(check, connect(broken, people), "rate limited, not permanent", http_suite(broken))
    await passes(check, connect(sound, people), http_suite(sound))


async def test_a_lost_retry_after_is_caught(people: tuple[RestSandboxApp, str]) -> None:
    sound = _declared()

    class DropsTheWait(sound):  # type: ignore[valid-type, misc]
        async def push(self, stream: Stream, changes: list[Change]) -> list[PushResult]:
            results = await super().push(stream, changes)
            return [dataclasses.replace(r, retry_after=None) for r in results]

    check = "test_throttled_push_says_how_long_to_wait"
    await caught(check, connect(DropsTheWait, people), "carries the wait", http_suite(sound))


async def test_throttles_that_are_not_retried_are_caught(
    people: tuple[RestSandboxApp, str],
) -> None:
    broken = _declared(client={**PEOPLE["client"], "retry": {"attempts": 1}})
    check = "test_short_throttle_is_retried_long_one_says_how_long"
    await caught(check, connect(broken, people), "gave up instead of retrying", http_suite(broken))
    sound = _declared()
    await passes(check, connect(sound, people), http_suite(sound))


async def test_a_declaration_that_misses_its_tombstones_is_caught(
    people: tuple[RestSandboxApp, str],
) -> None:
    app, url = people
    stream = {**PEOPLE["streams"]["contacts"]}
    del stream["deletes"]
    broken = _declared(streams={"contacts": stream})
    # the remote keeps tombstones, as the sound declaration says; the broken one ignores them
    served = (app, url)
    check = "test_deletes_show_up_in_incremental_pulls"
    suite = http_suite(_declared())
    await caught(check, connect(broken, served), "not pulled as a live one", suite)


# -- paging ---------------------------------------------------------------------------------


class FirstPageOnly(MemoryConnector):
    async def pull(self, stream: Stream, cursor: Cursor | None) -> AsyncIterator[Page]:
        async for page in super().pull(stream, cursor):
            yield page
            return


class PagedHooks(MemoryHooks):
    page_size = 5  # as ``memory()`` makes connectors


async def test_a_programmed_pull_that_stops_after_one_page_is_caught(remote: Any) -> None:
    check = "test_full_pull_returns_every_seeded_record_once"
    await caught(check, memory(FirstPageOnly), "paging stopped", PagedHooks())
    await passes(check, memory(), PagedHooks())


class NeverAdvances(PageLetters):
    """Reads the first page and stops: ``advance`` never names the next one."""

    def advance(self, request: PageRequest, answer: PageAnswer) -> PageRequest | None:
        return None


def _paged_by(hook: str, size: int) -> Any:
    paginator = {"kind": "custom", "hook": hook, "options": {"size": size}}
    stream = {**PEOPLE["streams"]["contacts"], "paginator": paginator}
    return _declared(streams={"contacts": stream})


async def test_a_paginator_that_never_advances_is_caught_at_the_declared_page_size() -> None:
    """100 records a page, as declarations usually ask: the suite seeds past two pages."""
    broken = _paged_by("tests.testing.test_contract_catches:NeverAdvances", 100)
    sound = _paged_by("tests.rest.hooks:PageLetters", 100)
    check = "test_full_pull_returns_every_seeded_record_once"
    for cls in (broken, sound):
        suite = http_suite(cls)
        assert (suite.page_size, suite.pull_seed_count) == (100, 201)
    app = create_sandbox(broken.loaded, size=0)
    url, server = serve_sandbox(app)
    try:
        await caught(check, connect(broken, (app, url)), "paging stopped", http_suite(broken))
        await passes(check, connect(sound, (app, url)), http_suite(sound))
    finally:
        server.stop()


def test_the_page_size_is_read_from_each_kind_of_paginator() -> None:
    sizes = {
        "none": ({"kind": "none"}, None),
        "offset": ({"kind": "offset", "limit": 50}, 50),
        "page_number": ({"kind": "page_number", "size": 30}, 30),
        "page_number, server's size": ({"kind": "page_number", "size_param": None}, 100),
        "cursor": ({"kind": "cursor", "cursor": "$.next", "size_param": "n", "size": 7}, 7),
        "next_url": ({"kind": "next_url", "next": "$.next"}, 100),
        "capped": ({"kind": "offset", "limit": 5000}, 1000),
    }
    for kind, (paginator, size) in sizes.items():
        stream = {**PEOPLE["streams"]["contacts"], "paginator": paginator}
        cls = _declared(streams={"contacts": stream})
        assert page_size(cls.loaded, "contacts") == size, kind
    assert page_size(_paged_by("tests.rest.hooks:PageLetters", 3).loaded, "contacts") == 3


def test_a_relative_declaration_path_starts_at_the_calling_test_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # not where the declaration is
    suite = declarative_contract(
        "../../examples/crmhub-connector-people/crmhub_connector_people/people.toml"
    )
    assert suite.stream_name == "contacts" and suite.page_size == 100


# -- which streams ----------------------------------------------------------------------------

COMPANIES = """
[streams.companies]
entity = "company"
path = "/companies"
records = "$.data"
modified_at = "updated_at"
paginator = { kind = "offset", limit = 20 }
incremental = { param = "updated_since" }
create = {}
"""


def test_every_stream_is_tested_unless_one_is_named(tmp_path: Path) -> None:
    """The first stream by the class, each other by a nested ``Test<Stream>`` class, which
    pytest collects."""
    example = Path(__file__).parents[2] / "examples/crmhub-connector-people"
    people = (example / "crmhub_connector_people/people.toml").read_text(encoding="utf-8")
    start = people.index("[sandbox]")
    (tmp_path / "people.toml").write_text(people[:start] + COMPANIES + "\n" + people[start:])
    (tmp_path / "mappings").mkdir()
    (tmp_path / "test_both.py").write_text(
        "from hub.testing import declarative_contract\n\n"
        'TestPeople = declarative_contract("people.toml")\n'
        'TestContacts = declarative_contract("people.toml", stream="contacts")\n'
    )
    listed = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr
    tests = [line for line in listed.stdout.splitlines() if "::test_" in line]
    per_class = Counter(line.rsplit("::", 1)[0] for line in tests)
    assert set(per_class) == {
        "test_both.py::TestPeople",
        "test_both.py::TestPeople::TestCompanies",
        "test_both.py::TestContacts",
    }, per_class
    assert len(set(per_class.values())) == 1  # the whole suite for each
    both = declarative_contract(tmp_path / "people.toml")
    nested: Any = both.TestCompanies
    assert (both.stream_name, both.page_size) == ("contacts", 100)
    assert (nested.stream_name, nested.page_size) == ("companies", 20)
    contacts_only = declarative_contract(tmp_path / "people.toml", stream="contacts")
    assert not hasattr(contacts_only, "TestCompanies")
    with pytest.raises(ValueError, match="no stream 'deals'"):
        declarative_contract(tmp_path / "people.toml", stream="deals")
