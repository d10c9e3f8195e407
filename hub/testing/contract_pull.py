"""The contract's checks of ``streams`` and ``pull``."""

from __future__ import annotations

from collections import Counter
from typing import ClassVar

import pytest

from hub.connector import Connector, Page, RemoteRecord, Stream
from hub.errors import RateLimited
from hub.records import ENTITY_TYPES
from hub.testing.contract_base import ContractBase, last_cursor, pull_pages, records_of

__all__ = ["PullContract", "not_pulled"]


def _some(items: list[str], shown: int = 5) -> str:
    head = ", ".join(repr(i) for i in items[:shown])
    return head + (f" and {len(items) - shown} more" if len(items) > shown else "")


def _brief(value: object, width: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 5] + " ...}"


def not_pulled(
    missing: list[str],
    seeded: int,
    records: list[RemoteRecord],
    pages: list[Page],
    page_size: int | None,
) -> str:
    """Why a full pull left out seeded records, said so that paging gets looked at first."""
    text = (
        f"{len(missing)} of {seeded} seeded records are missing from a full pull "
        f"({_some(missing)}); it brought {len(records)} records in {len(pages)} page(s)"
    )
    if page_size is not None and 0 < len(records) <= page_size:
        return text + (
            f": paging stopped after the first page ({page_size} records a page), so the "
            "next page was never asked for. Check the paginator: its kind and parameter "
            "names must be the API's, and a custom paginator's advance() must return the "
            "next request until the listing ends"
        )
    return text + (
        ": check paging (a page skipped or a listing cut short), and that `records` points "
        "at the listing's records"
    )


class PullContract(ContractBase):
    settles: ClassVar[bool] = True
    """A pull from the last cursor of a quiet remote returns nothing; ``False`` for streams
    that can only list everything every time."""

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
        counts = Counter(r.id for r in records)
        twice = sorted(i for i, n in counts.items() if n > 1)
        assert not twice, (
            f"a full pull lists each record once, but {len(twice)} came more than once "
            f"(remote ids {_some(twice)}): pages overlap, so paging does not move on by a "
            "whole page, or the listing's order is not stable"
        )
        idents = Counter(self.identity(stream, r.data) for r in records)
        shared = sorted(i for i, n in idents.items() if n > 1)
        assert not shared, (
            f"several pulled records share one identity: {_some(shared)} (seeded records "
            "each have their own): a record is listed twice under different ids"
        )
        found = {self.identity(stream, r.data): r for r in records}
        wanted = {self.identity(stream, data) for data in seeded}
        missing = sorted(wanted - set(found))
        assert not missing, not_pulled(missing, len(seeded), records, pages, self.page_size)
        unknown = sorted(set(found) - wanted)
        assert not unknown, (
            f"a full pull of {len(seeded)} seeded records brought others too: {_some(unknown)} "
            "(identities read from the pulled data; an empty one means the identifying field "
            "is not where the records are read)"
        )
        for data in seeded:
            record = found[self.identity(stream, data)]
            assert self.matches(record.data, data), (
                f"record {record.id} was seeded as {data!r} but pulled as {record.data!r}: "
                "the pull loses or renames fields (override matches() if the remote "
                "transforms values)"
            )

    @pytest.mark.asyncio
    async def test_cursors_are_json_and_settle(self, connector: Connector) -> None:
        stream = self.stream_under_test(connector)
        await self.seeded(connector)
        cursor = last_cursor(await pull_pages(connector, stream, None), None)
        assert cursor is not None, "a pull that saw records ends with a cursor (Page.cursor)"
        if not self.settles:
            return
        again = await pull_pages(connector, stream, cursor)
        repeated = sorted(self.identity(stream, r.data) for r in records_of(again))
        assert repeated == [], (
            f"nothing changed, yet a pull from the last cursor brought {len(repeated)} records "
            f"again ({_some(repeated)}): the cursor must stand after everything pulled (set "
            "settles = False for a stream that can only list everything)"
        )
        deleted = [d for page in again for d in page.deleted]
        assert deleted == [], f"nothing was deleted, yet the pull names deletions: {deleted}"

    @pytest.mark.asyncio
    async def test_remote_changes_show_up_from_saved_cursor(self, connector: Connector) -> None:
        stream = self.stream_under_test(connector)
        seeded = await self.seeded(connector)
        cursor = last_cursor(await pull_pages(connector, stream, None), None)
        newcomer = self.sample(stream, self.pull_seed_count)
        await self.seed(connector, [newcomer])
        edits = self.edit(stream, seeded[0])
        if self.remote_edits:
            await self.edit_remotely(connector, self.identity(stream, seeded[0]), edits)
        found = await self.pulled_by_identity(connector, cursor)
        assert self.identity(stream, newcomer) in found, (
            f"a record added remotely after a pull is missing from the next pull, from the "
            f"saved cursor {_brief(cursor)} (it brought {_some(sorted(found))}): the changed-since "
            "filter or the cursor misses new records"
        )
        if self.remote_edits:
            edited = found.get(self.identity(stream, seeded[0]))
            assert edited is not None, (
                f"a record edited remotely ({self.identity(stream, seeded[0])!r}) is missing "
                f"from the pull from the saved cursor {_brief(cursor)}: the changed-since filter "
                "or the modification time read misses edits"
            )
            assert self.matches(edited.data, edits), (
                f"the remote edit {edits!r} is not in the pulled record {edited.data!r}"
            )

    @pytest.mark.asyncio
    async def test_cursor_settles_after_changes(self, connector: Connector) -> None:
        """An incremental pull that brought changes ends with a cursor after them: pulling
        from it again brings nothing (no re-pull at an inclusive boundary, no stuck cursor)."""
        stream = self.stream_under_test(connector)
        seeded = await self.seeded(connector)
        first = last_cursor(await pull_pages(connector, stream, None), None)
        await self.seed(connector, [self.sample(stream, self.pull_seed_count + 1)])
        if self.remote_edits:
            edits = self.edit(stream, seeded[1])
            await self.edit_remotely(connector, self.identity(stream, seeded[1]), edits)
        changed = await pull_pages(connector, stream, first)
        assert records_of(changed), (
            f"the changes made after a pull are not pulled from {_brief(first)}"
        )
        second = last_cursor(changed, first)
        assert second != first or not self.settles, (
            f"a pull that brought changes moves the cursor, but it stayed at {_brief(first)}"
        )
        if not self.settles:
            return
        again = await pull_pages(connector, stream, second)
        repeated = sorted(self.identity(stream, r.data) for r in records_of(again))
        assert repeated == [], (
            f"pulled again from the cursor after the changes: {_some(repeated)}. The cursor "
            "must stand after the last change pulled; an API whose changed-since filter is "
            "inclusive needs the boundary's records skipped (by id and version)"
        )
        deleted = [d for page in again for d in page.deleted]
        assert deleted == [], f"nothing was deleted, yet the pull names deletions: {deleted}"

    @pytest.mark.asyncio
    async def test_deletes_show_up_in_incremental_pulls(self, connector: Connector) -> None:
        """A record deleted remotely reaches the hub: named in ``Page.deleted``, or missing
        from a pull whose every page is a ``full_scan``."""
        stream = self.stream_under_test(connector)
        seeded = await self.seeded(connector)
        cursor = last_cursor(await pull_pages(connector, stream, None), None)
        gone = self.identity(stream, seeded[2])
        by_identity = await self.pulled_by_identity(connector)
        await self.hook("delete_remotely", connector, gone)
        pages = await pull_pages(connector, stream, cursor)
        deleted = {d for page in pages for d in page.deleted}
        listed = {self.identity(stream, r.data) for r in records_of(pages)}
        assert gone not in listed, (
            f"a deleted record is not pulled as a live one, but {gone!r}, deleted remotely, "
            "was: declare the tombstone field or deleted status (`deletes`) the API uses"
        )
        if by_identity[gone].id in deleted:
            return
        assert pages and all(p.full_scan for p in pages), (
            f"a remote delete is neither in Page.deleted nor implied by a full scan: "
            f"{gone!r} (remote id {by_identity[gone].id}) was deleted, the pull's deletions "
            f"were {sorted(deleted)}. Declare how the API tells deletions (`deletes`: "
            "tombstone, status, endpoint or full_scan)"
        )
        if self.settles:
            expected = {self.identity(stream, d) for d in seeded} - {gone}
            assert listed == expected, (
                f"a full scan after a delete lists {_some(sorted(listed ^ expected))} wrongly"
            )

    @pytest.mark.asyncio
    async def test_full_scan_pages_list_everything(self, connector: Connector) -> None:
        """Pages that say ``full_scan`` together list every record (the hub takes the ones
        missing for deleted)."""
        stream = self.stream_under_test(connector)
        seeded = await self.seeded(connector)
        everyone = {self.identity(stream, d) for d in seeded}
        pages = await pull_pages(connector, stream, None)
        cursor = last_cursor(pages, None)
        self._complete_if_full_scan(stream, pages, everyone)
        newcomer = self.sample(stream, self.pull_seed_count + 2)
        await self.seed(connector, [newcomer])
        pages = await pull_pages(connector, stream, cursor)
        self._complete_if_full_scan(stream, pages, everyone | {self.identity(stream, newcomer)})

    def _complete_if_full_scan(self, stream: Stream, pages: list, everyone: set[str]) -> None:
        if not pages or not all(p.full_scan for p in pages):
            return
        listed = {self.identity(stream, r.data) for r in records_of(pages)}
        missing = sorted(everyone - listed)
        assert not missing, f"full_scan pages leave out live records: {missing}"

    @pytest.mark.asyncio
    async def test_modified_at_is_aware_in_every_pull(self, connector: Connector) -> None:
        stream = self.stream_under_test(connector)
        seeded = await self.seeded(connector)
        cursor = last_cursor(await pull_pages(connector, stream, None), None)
        if self.remote_edits:
            await self.edit_remotely(
                connector, self.identity(stream, seeded[0]), self.edit(stream, seeded[0])
            )
        await pull_pages(connector, stream, cursor)  # pull_pages checks every record's times

    @pytest.mark.asyncio
    async def test_short_throttle_is_retried_long_one_says_how_long(
        self, connector: Connector
    ) -> None:
        stream = self.stream_under_test(connector)
        seeded = await self.seeded(connector)
        await self.hook("throttle", connector, 2)
        try:
            found = await self.pulled_by_identity(connector)
        except RateLimited as exc:
            pytest.fail(f"a pull that met two throttle answers gave up instead of retrying: {exc}")
        missing = sorted({self.identity(stream, d) for d in seeded} - set(found))
        assert not missing, (
            f"a pull that met two throttle answers retried but left out {_some(missing)}"
        )
        wait = await self.throttle(connector, 50)
        with pytest.raises(RateLimited) as raised:
            await pull_pages(connector, stream, None)
        if wait is not None:
            assert raised.value.retry_after is not None, (
                f"RateLimited carries the wait the throttle answer asked for ({wait}s)"
            )
