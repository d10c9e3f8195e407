"""Pushing to declared streams against their sandboxes: bodies, versions, upserts, batches,
idempotency, and the error rules that say what an answer means."""

from __future__ import annotations

from typing import Any

import pytest

from hub.connector import Change, PushResult
from hub.errors import ErrorKind
from tests.rest.kit import connect, declaration, pull, records, served


def create(key: str, data: dict[str, Any], idem: str | None = None) -> Change:
    return Change(key, "create", data, idem or f"idem-{key}")


def update(key: str, rid: str, data: dict[str, Any], version: str | None = None) -> Change:
    return Change(key, "update", data, f"idem-{key}", remote_id=rid, version=version)


def delete(key: str, rid: str, version: str | None = None) -> Change:
    return Change(key, "delete", {}, f"idem-{key}", remote_id=rid, version=version)


async def push(
    spec: dict[str, Any], changes: list[Change], size: int = 3
) -> tuple[dict[str, PushResult], Any]:
    with served(spec, size=size) as (cls, app, url):
        connector = connect(cls, app, url)
        try:
            results = await connector.push(connector.streams()[0], changes)
        finally:
            await connector.aclose()
        return {r.key: r for r in results}, app


async def test_wrapped_bodies_and_a_record_inside_the_answer() -> None:
    spec = declaration({"create": {"wrap": "contact", "record": "$.contact"}})
    results, app = await push(spec, [create("a", {"email": "ann@example.com"})])
    assert results["a"].ok and results["a"].remote_id == "4" and results["a"].version == "1"
    assert app.provider.records("contacts")[-1]["email"] == "ann@example.com"


async def test_a_version_in_the_body_and_a_stale_one_refused() -> None:
    spec = declaration({"update": {"version": "body"}})
    results, _app = await push(
        spec,
        [update("ok", "1", {"first_name": "A"}, "1"), update("old", "2", {"first_name": "B"}, "9")],
    )
    assert results["ok"].ok and results["ok"].version == "2"
    assert results["old"].stale and results["old"].error is ErrorKind.TRANSIENT
    assert "stale version" in (results["old"].message or "")


async def test_put_updates_read_the_record_first_and_send_all_of_it() -> None:
    spec = declaration({"update": {"method": "PUT", "read_first": True, "version": "if_match"},
                        "fetch": {}})  # fmt: skip
    results, app = await push(spec, [update("u", "2", {"first_name": "Changed"}, "1")])
    assert results["u"].ok
    [record] = [r for r in app.provider.records("contacts") if r["id"] == 2]
    assert record["first_name"] == "Changed" and record["email"]  # nothing else was lost


async def test_put_updates_send_the_whole_record_the_hub_knows() -> None:
    spec = declaration({"update": {"method": "PUT", "version": "if_match"}})
    whole = {"email": "kept@example.com", "first_name": "Whole", "last_name": "Record"}
    change = Change("u", "update", {"first_name": "Whole"}, "i", remote_id="1", version="1",
                    record=whole)  # fmt: skip
    results, app = await push(spec, [change])
    assert results["u"].ok
    [one] = [r for r in app.provider.records("contacts") if r["id"] == 1]
    assert {k: one[k] for k in whole} == whole


async def test_upserts_by_natural_key_never_make_a_second_record() -> None:
    spec = declaration({"upsert": {"path": "/contacts/by-email/{data.email}", "key": "email"},
                        "create": None})  # fmt: skip
    with served(spec) as (cls, app, url):
        connector = connect(cls, app, url)
        stream = connector.streams()[0]
        assert stream.can_create
        first = await connector.push(stream, [create("a", {"email": "x@example.com"})])
        again = await connector.push(
            stream, [create("b", {"email": "x@example.com", "first_name": "X"})]
        )
        missing = await connector.push(stream, [create("c", {"first_name": "no email"})])
        await connector.aclose()
        assert first[0].remote_id == again[0].remote_id
        assert [
            r["first_name"]
            for r in app.provider.records("contacts")
            if r.get("email") == "x@example.com"
        ] == ["X"]
        assert missing[0].error is ErrorKind.PERMANENT and "email" in (missing[0].message or "")


async def test_creates_carry_their_idempotency_key_and_a_repeat_is_answered_the_same() -> None:
    with served(declaration()) as (cls, app, url):
        connector = connect(cls, app, url)
        stream = connector.streams()[0]
        first = await connector.push(stream, [create("a", {"email": "a@example.com"}, "K1")])
        second = await connector.push(stream, [create("b", {"email": "a@example.com"}, "K1")])
        await connector.aclose()
        assert first[0].remote_id == second[0].remote_id
        assert len(app.provider.records("contacts")) == 1


BATCH = {
    "ops": ["create", "update", "delete"],
    "path": "/contacts/batch",
    "size": 2,
    "op_field": "op",
    "ref": "ref",
    "item_key": "key",
    "results": "$.results",
    "record": "$.record",
}


async def test_batches_are_answered_item_by_item() -> None:
    spec = declaration({"batch": BATCH}, sandbox={"required": {"contacts": ["email"]}})
    changes = [
        create("new", {"email": "n@example.com"}),
        create("bad", {"first_name": "no email"}),
        update("upd", "1", {"first_name": "Changed"}, "1"),
        update("stale", "2", {"first_name": "Late"}, "7"),
        delete("del", "3", "1"),
        delete("gone", "99"),
    ]
    results, app = await push(spec, changes)
    assert sorted(results) == sorted(c.key for c in changes)
    assert results["new"].ok and results["new"].remote_id == "4"
    assert results["bad"].error is ErrorKind.PERMANENT and "email" in (results["bad"].message or "")
    assert results["upd"].ok and results["upd"].version == "2"
    assert results["stale"].stale
    assert results["del"].ok and results["gone"].ok  # already gone: done
    assert app.log.count("POST", "/contacts/batch") == 3  # six items, two a batch


async def test_a_batch_answer_without_an_entry_for_an_item_fails_only_that_item() -> None:
    spec = declaration({"batch": {**BATCH, "ref": None, "op_field": "op"}})
    with served(spec) as (cls, app, url):
        connector = connect(cls, app, url)
        stream = connector.streams()[0]
        writer_results = await connector.push(stream, [create("a", {"email": "a@example.com"})])
        assert writer_results[0].ok
        from hub.rest.writer import Writer

        writer = Writer(await connector.http(), connector.compiled(stream), 2)  # type: ignore[attr-defined]
        [short] = [writer._item_result(create("b", {}), None, stream_batch(cls))]
        await connector.aclose()
    assert short.error is ErrorKind.TRANSIENT and "no entry" in (short.message or "")


def stream_batch(cls: Any) -> Any:
    return cls.declaration.streams["contacts"].batch


@pytest.mark.parametrize(
    ("rules", "kind"),
    [
        ([{"status": 409, "body": "version conflict", "kind": "stale"}], "stale"),
        ([{"status": 410, "kind": "already_deleted", "ops": ["delete"]}], "already_deleted"),
        ([{"status": 403, "body": "slow down", "kind": "throttled"}], "throttled"),
    ],
)
async def test_error_rules_decide_and_the_sandbox_answers_by_them(rules: list, kind: str) -> None:
    spec = declaration(errors=rules)
    changes = [
        update("u", "1", {"first_name": "X"}, "5"),
        delete("d", "99"),
        delete("d2", "2", "1"),
    ]
    with served(spec, size=2) as (cls, app, url):
        connector = connect(cls, app, url)
        stream = connector.streams()[0]
        if kind == "throttled":
            app.provider.retry_after = 0
            app.set_faults(burst_429=20)
        results = {r.key: r for r in await connector.push(stream, changes)}
        await connector.aclose()
    if kind == "stale":
        assert results["u"].stale and app.log.count(status=409) == 1
    if kind == "already_deleted":
        assert results["d"].ok and app.log.count(status=410) == 1
    if kind == "throttled":
        assert {r.error for r in results.values()} == {ErrorKind.RATE_LIMITED}
        assert app.log.count(status=403) >= 5 and all(r.retry_after == 0 for r in results.values())


async def test_a_body_rule_for_a_success_status_refuses_the_item() -> None:
    """Some APIs answer 200 with an error body: a rule naming the 2xx status says so."""
    spec = declaration(errors=[{"status": 201, "body": r'"email":\s*"bad"', "kind": "permanent"}])
    results, _ = await push(spec, [create("a", {"email": "bad"}), create("b", {"email": "ok@x.y"})])
    assert results["a"].error is ErrorKind.PERMANENT and results["b"].ok


async def test_an_answer_without_a_record_uses_the_location_header() -> None:
    results, _app = await push(
        declaration({"create": {"record": None}}), [create("a", {"email": "a@b.c"})]
    )
    assert results["a"].ok and results["a"].remote_id == "4" and results["a"].data is None


async def test_pushed_records_pull_back_with_their_new_versions() -> None:
    with served(declaration(), size=2) as (cls, app, url):
        connector = connect(cls, app, url)
        stream = connector.streams()[0]
        done = await connector.push(stream, [update("u", "1", {"first_name": "New"}, "1")])
        [one] = [r for r in records(await pull(connector)) if r.id == "1"]
        await connector.aclose()
    assert done[0].version == one.version == "2" and one.data["first_name"] == "New"
