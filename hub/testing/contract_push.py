"""The contract's checks of ``push`` and ``fetch``."""

from __future__ import annotations

import contextlib

import pytest

from hub.connector import Change, Connector
from hub.errors import CrmhubError, ErrorKind, RateLimited
from hub.testing.contract_base import (
    IDEMPOTENT_CREATES,
    MISSING_ID,
    ContractBase,
    check_results,
    pull_pages,
)

__all__ = ["PushContract"]


def _delete(target_id: str, version: str | None, key: str = "del") -> Change:
    return Change(
        key=key,
        op="delete",
        data={},
        idempotency_key=f"contract-{key}",
        remote_id=target_id,
        version=version,
    )


class PushContract(ContractBase):
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
        assert isinstance(result.remote_id, str) and result.remote_id, (
            f"a create that succeeded returns the new record's remote id, not "
            f"{result.remote_id!r}: read it from the answer (`create.record`, `primary_key`)"
        )
        found = await self.pulled_by_identity(connector)
        ident = self.identity(stream, change.data)
        assert ident in found, f"the record created as {change.data!r} is not pulled afterwards"
        record = found[ident]
        assert record.id == result.remote_id, (
            f"the create answered remote id {result.remote_id!r}, but the record is pulled as "
            f"{record.id!r}: the id is read from the wrong place in the create's answer"
        )
        assert self.matches(record.data, change.data), (
            f"created as {change.data!r}, pulled back as {record.data!r}: the create's body "
            "loses or renames fields"
        )

    @pytest.mark.asyncio
    async def test_push_returns_one_result_per_change(self, connector: Connector) -> None:
        stream = self.stream_under_test(connector)
        empty = await connector.push(stream, [])
        assert empty == [], f"a push of no changes returns no results, not {empty!r}"
        changes = [self.create(stream, 200 + i, key=f"k{i}") for i in range(3)]
        results = await self.push_checked(connector, changes)
        if stream.can_create:
            failed = {k: r.message for k, r in results.items() if not r.ok}
            assert not failed, f"creates of a batch failed: {failed}"
            ids = {k: r.remote_id for k, r in results.items()}
            assert len(set(ids.values())) == 3, f"three creates, three records: remote ids {ids}"

    @pytest.mark.asyncio
    async def test_results_match_a_mixed_batch(self, connector: Connector) -> None:
        """Creates, an update, deletes and refusals in one call: exactly one result for each
        key of the batch, none for anything else."""
        stream = self.stream_under_test(connector)
        seeded = await self.seeded(connector, 3)
        pulled = await self.pulled_by_identity(connector)
        first, second = (pulled[self.identity(stream, d)] for d in seeded[:2])
        changes = [
            self.create(stream, 600, key="new-a"),
            self.create(stream, 601, key="new-b"),
            Change(
                "upd",
                "update",
                self.edit(stream, seeded[0]),
                "contract-mix-upd",
                remote_id=first.id,
                version=first.version,
            ),
            _delete(second.id, second.version, key="gone"),
            _delete(MISSING_ID, None, key="gone-before"),
            self.refused_change(stream),
        ]
        results = await self.push_checked(connector, changes)
        if stream.can_create:
            new_a, new_b = results["new-a"], results["new-b"]
            assert new_a.ok and new_b.ok, (
                f"creates in a mixed batch failed: {new_a.message!r}, {new_b.message!r}"
            )
            assert new_a.remote_id != new_b.remote_id, (
                f"two creates were answered with one remote id {new_a.remote_id!r}: results "
                "are matched to the wrong changes"
            )
        if stream.can_update:
            assert results["upd"].ok, f"the update of a mixed batch failed: {results['upd']}"
        if stream.can_delete:
            assert results["gone"].ok and results["gone-before"].ok, (
                f"deletes of a mixed batch failed: {results['gone']}, {results['gone-before']} "
                "(a record already gone counts as deleted)"
            )

    @pytest.mark.asyncio
    async def test_one_bad_item_is_a_result_not_an_exception(self, connector: Connector) -> None:
        stream = self.stream_under_test(connector)
        await self.seeded(connector, 2)
        bad = [self.refused_change(stream)]
        invalid = self.invalid_create(stream)
        if invalid is not None:
            bad.append(invalid)
        good = self.create(stream, 400, key="good")
        try:
            results = await self.push_checked(connector, [*bad, good])
        except CrmhubError as exc:
            pytest.fail(f"push raised for one bad item instead of returning its result: {exc!r}")
        for change in bad:
            assert isinstance(results[change.key].error, ErrorKind), (
                f"{change.key} ({change.op}) was accepted, but the remote refuses it: "
                f"{results[change.key]}"
            )
        if stream.can_create:
            assert results["good"].ok, (
                f"one refused item does not fail the others: {results['good'].message}"
            )

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
            assert first.error is not None and second.error is not None, (
                "a stream that cannot create refuses creates"
            )
            return
        assert first.ok and second.ok, (
            f"a create and its retry succeed: {first.message!r}, {second.message!r}"
        )
        assert second.remote_id == first.remote_id, (
            f"a create sent again made a second record (remote id {first.remote_id!r}, then "
            f"{second.remote_id!r}). {IDEMPOTENT_CREATES}"
        )
        held = [self.identity(stream, d) for d in await self.remote_records(connector)]
        copies = held.count(self.identity(stream, change.data))
        assert copies == 1, (
            f"after a create and its retry the remote holds {copies} copies of the record. "
            f"{IDEMPOTENT_CREATES}"
        )
        assert len(held) == 3, f"2 seeded records and 1 created, but the remote holds {held}"

    @pytest.mark.asyncio
    async def test_create_after_a_crash_before_commit_is_not_repeated(
        self, connector: Connector
    ) -> None:
        """The remote made the record, the hub died before saving the answer; a new process
        sends the same create again and must get the same record, not a second one."""
        stream = self.stream_under_test(connector)
        if not stream.can_create:
            pytest.skip("the stream cannot create")
        await self.seeded(connector, 2)
        change = self.create(stream, 310)
        first = await self.push_one(connector, change)
        assert first.ok, f"create failed: {first.message}"
        restarted = await self.reopen(connector)
        try:
            second = (await self.push_checked(restarted, [change]))[change.key]
        finally:
            await restarted.aclose()
        assert second.ok, f"the create sent again after a crash failed: {second.message}"
        assert second.remote_id == first.remote_id, (
            f"the retried create made a second record: a new connector instance sent the same "
            f"create after a crash and got remote id {second.remote_id!r}, not "
            f"{first.remote_id!r} (remembering creates in memory does not survive a crash). "
            f"{IDEMPOTENT_CREATES}"
        )
        held = [self.identity(stream, d) for d in await self.remote_records(connector)]
        copies = held.count(self.identity(stream, change.data))
        assert copies == 1, (
            f"after a crash and a retried create the remote holds {copies} copies. "
            f"{IDEMPOTENT_CREATES}"
        )

    @pytest.mark.asyncio
    async def test_update_round_trips(self, connector: Connector) -> None:
        stream = self.stream_under_test(connector)
        seeded = await self.seeded(connector, 3)
        target = (await self.pulled_by_identity(connector))[self.identity(stream, seeded[1])]
        edits = self.edit(stream, seeded[1])
        change = Change("upd", "update", edits, "contract-update", target.id, target.version)
        result = await self.push_one(connector, change)
        if not stream.can_update:
            assert result.error is not None, "a stream that cannot update refuses updates"
            return
        assert result.ok, f"update failed: {result.message}"
        assert result.remote_id, "an update that succeeded returns the record's remote id"
        after = (await self.pulled_by_identity(connector))[self.identity(stream, seeded[1])]
        assert after.id == result.remote_id, (
            f"the update answered remote id {result.remote_id!r}, the record is {after.id!r}"
        )
        assert self.matches(after.data, {**seeded[1], **edits}), (
            f"after the update {edits!r} the record is pulled as {after.data!r}: the update "
            "did not take, or it replaced fields it did not carry (a PUT that replaces the "
            "whole record needs `read_first`)"
        )
        if target.version is not None and after.version is not None:
            assert after.version != target.version, (
                f"an update changes the version, but it is still {after.version!r}"
            )
            assert result.version in (None, after.version), (
                f"the update answered version {result.version!r}, the record has {after.version!r}"
            )

    @pytest.mark.asyncio
    async def test_stale_version_is_refused_and_fetch_reads_the_current_record(
        self, connector: Connector
    ) -> None:
        stream = self.stream_under_test(connector)
        if not (stream.can_update and self.remote_edits):
            pytest.skip("needs a stream that can update and edit_remotely()")
        seeded = await self.seeded(connector, 3)
        ident = self.identity(stream, seeded[0])
        before = (await self.pulled_by_identity(connector))[ident]
        if before.version is None:
            pytest.skip("the remote gives no versions")
        remote_edit = self.edit(stream, seeded[0])
        await self.edit_remotely(connector, ident, remote_edit)
        ours = self.edit(stream, {**seeded[0], **remote_edit})
        stale = Change("stale", "update", ours, "contract-stale", before.id, before.version)
        result = await self.push_one(connector, stale)
        if self.stale_versions:
            assert not result.ok, "an update naming an outdated version is refused"
            assert result.stale, "an outdated-version refusal sets stale=True (else no re-read)"
        fetched = await connector.fetch(stream, [before.id, MISSING_ID])
        assert [r.id for r in fetched] == [before.id], "fetch reads the record, skips unknown ids"
        current = fetched[0]
        if self.stale_versions:
            assert current.version not in (None, before.version), (
                f"fetch gives the new version, not {current.version!r}"
            )
            assert self.matches(current.data, remote_edit), (
                f"fetch reads the current record: {current.data!r} lacks {remote_edit!r}"
            )
            fresh = Change("fresh", "update", ours, "contract-fresh", before.id, current.version)
            assert (await self.push_one(connector, fresh)).ok, "the retry with the new version"

    @pytest.mark.asyncio
    async def test_delete_round_trips(self, connector: Connector) -> None:
        stream = self.stream_under_test(connector)
        seeded = await self.seeded(connector, 3)
        target = (await self.pulled_by_identity(connector))[self.identity(stream, seeded[2])]
        result = await self.push_one(connector, _delete(target.id, target.version))
        if not stream.can_delete:
            assert result.error is not None, "a stream that cannot delete refuses deletes"
            return
        assert result.ok, f"delete failed: {result.message}"
        gone = self.identity(stream, seeded[2])
        assert gone not in await self.pulled_by_identity(connector), (
            f"{gone!r} was deleted, yet a full pull still lists it"
        )
        left = [self.identity(stream, d) for d in await self.remote_records(connector)]
        assert len(left) == 2, f"3 seeded records, 1 deleted, but the remote holds {left}"

    @pytest.mark.asyncio
    async def test_delete_of_an_already_deleted_record_succeeds(self, connector: Connector) -> None:
        stream = self.stream_under_test(connector)
        if not stream.can_delete:
            pytest.skip("the stream cannot delete")
        seeded = await self.seeded(connector, 3)
        pulled = await self.pulled_by_identity(connector)
        target = pulled[self.identity(stream, seeded[0])]
        first = await self.push_one(connector, _delete(target.id, target.version))
        assert first.ok, f"delete failed: {first.message}"
        again = await self.push_one(connector, _delete(target.id, target.version, key="again"))
        assert again.ok, f"deleting what is already gone is the wanted outcome: {again.message}"
        with contextlib.suppress(NotImplementedError):
            other = pulled[self.identity(stream, seeded[1])]
            await self.delete_remotely(connector, self.identity(stream, seeded[1]))
            result = await self.push_one(connector, _delete(other.id, other.version, "remote"))
            assert result.ok, f"a record deleted remotely is deleted: {result.message}"

    @pytest.mark.asyncio
    async def test_refused_item_is_a_result_not_an_exception(self, connector: Connector) -> None:
        stream = self.stream_under_test(connector)
        await self.seeded(connector, 2)
        refused = self.refused_change(stream)
        good = self.create(stream, 410, key="good")
        results = await self.push_checked(connector, [refused, good])
        assert isinstance(results[refused.key].error, ErrorKind), (
            f"an update of a record that does not exist is refused: {results[refused.key]}"
        )
        if stream.can_create:
            assert results["good"].ok, (
                f"one refused item does not fail the others: {results['good'].message}"
            )

    @pytest.mark.asyncio
    async def test_throttled_push_says_how_long_to_wait(self, connector: Connector) -> None:
        stream = self.stream_under_test(connector)
        if not stream.can_create:
            pytest.skip("the stream cannot create")
        wait = await self.hook("throttle", connector, 50)
        change = self.create(stream, 700)
        try:
            result = await self.push_one(connector, change)
        except RateLimited as exc:
            assert wait is None or exc.retry_after is not None, "RateLimited carries the wait"
            return
        assert result.error is ErrorKind.RATE_LIMITED, (
            f"a throttled create is rate limited, not {result.error}: {result.message}"
        )
        if wait is not None:
            assert result.retry_after is not None, "the result carries the wait the remote asked"

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
        by_key = check_results(odd, results)
        assert by_key["no-id-update"].error is not None, (
            f"an update without a remote id is refused, not {by_key['no-id-update']}"
        )
