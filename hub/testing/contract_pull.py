"""The contract's checks of ``streams`` and ``pull``."""

from __future__ import annotations

from typing import ClassVar

import pytest

from hub.connector import Connector, Stream
from hub.errors import RateLimited
from hub.records import ENTITY_TYPES
from hub.testing.contract_base import ContractBase, last_cursor, pull_pages, records_of

__all__ = ["PullContract"]


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
        records = records_of(await pull_pages(connector, stream, None))
        ids = [r.id for r in records]
        assert len(ids) == len(set(ids)), "a full pull lists each record once"
        found = await self.pulled_by_identity(connector)
        assert set(found) == {self.identity(stream, data) for data in seeded}
        for data in seeded:
            record = found[self.identity(stream, data)]
            assert self.matches(record.data, data), f"{record.data!r} lacks {data!r}"

    @pytest.mark.asyncio
    async def test_cursors_are_json_and_settle(self, connector: Connector) -> None:
        stream = self.stream_under_test(connector)
        await self.seeded(connector)
        cursor = last_cursor(await pull_pages(connector, stream, None), None)
        assert cursor is not None, "a pull that saw records ends with a cursor"
        if not self.settles:
            return
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
    async def test_cursor_settles_after_changes(self, connector: Connector) -> None:
        """An incremental pull that brought changes ends with a cursor after them: pulling
        from it again brings nothing (no re-pull at an inclusive boundary, no stuck cursor)."""
        stream = self.stream_under_test(connector)
        seeded = await self.seeded(connector)
        first = last_cursor(await pull_pages(connector, stream, None), None)
        await self.seed(connector, [self.sample(stream, self.seed_count + 1)])
        if self.remote_edits:
            edits = self.edit(stream, seeded[1])
            await self.edit_remotely(connector, self.identity(stream, seeded[1]), edits)
        changed = await pull_pages(connector, stream, first)
        assert records_of(changed), "the changes are pulled"
        second = last_cursor(changed, first)
        assert second != first or not self.settles, "a pull that brought changes moves the cursor"
        if not self.settles:
            return
        again = await pull_pages(connector, stream, second)
        repeated = sorted(self.identity(stream, r.data) for r in records_of(again))
        assert repeated == [], f"pulled again from the cursor after the changes: {repeated}"
        assert [d for page in again for d in page.deleted] == []

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
        assert gone not in listed, "a deleted record is not pulled as a live one"
        if by_identity[gone].id in deleted:
            return
        assert pages and all(p.full_scan for p in pages), (
            "a remote delete is neither in Page.deleted nor implied by a full scan"
        )
        if self.settles:
            assert listed == {self.identity(stream, d) for d in seeded} - {gone}

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
        newcomer = self.sample(stream, self.seed_count + 2)
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
        assert set(found) == {self.identity(stream, d) for d in seeded}, (
            "a pull that met two throttle answers retried and finished"
        )
        wait = await self.throttle(connector, 50)
        with pytest.raises(RateLimited) as raised:
            await pull_pages(connector, stream, None)
        if wait is not None:
            assert raised.value.retry_after is not None, "RateLimited carries the asked wait"
