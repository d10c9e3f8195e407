"""Batch endpoints of a generated sandbox: items answered one by one, as declared."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from hub.rest.jsonpath import JsonPath
from hub.rest.sandbox_api import Refused, StreamApi, json_answer, read_json, refusal
from hub.rest.sandbox_state import Answer
from hub.rest.writes import BatchSpec

__all__ = ["batch"]


async def batch(api: StreamApi, request: Request) -> Response:
    spec = api.spec.batch
    assert spec is not None
    replay, key = api._replayed(request)
    if replay is not None:
        return replay
    body = await read_json(request)
    items = body if JsonPath(spec.items).is_root else JsonPath(spec.items).first(body)
    if not isinstance(items, list):
        return api.refused(Refused("permanent", f"no item list at {spec.items}"), "batch")
    answers = [_item(api, spec, item) for item in items]
    root = JsonPath(spec.results)
    out: Any = answers if root.is_root else root.set({}, answers)
    if key is not None:
        api.table.idempotency[key] = Answer(200, out)
    return json_answer(out, 200)


def _item(api: StreamApi, spec: BatchSpec, item: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {}
    if spec.ref and isinstance(item, dict):
        JsonPath(spec.ref).set(answer, JsonPath(spec.ref).first(item))
    try:
        if not isinstance(item, dict):
            raise Refused("permanent", "an item is not a JSON object")
        record = _op(api, spec, item)
    except Refused as exc:
        status, body = refusal(api.rules, exc.outcome, "batch", exc.message)
        if spec.status:
            JsonPath(spec.status).set(answer, status)
        JsonPath(spec.error or "error").set(answer, body.get("error"))
        return answer
    if spec.status:
        JsonPath(spec.status).set(answer, 200)
    if record is not None:
        JsonPath(spec.record).set(answer, record)
    return answer


def _op(api: StreamApi, spec: BatchSpec, item: dict[str, Any]) -> dict[str, Any] | None:
    op = str(JsonPath(spec.op_field).first(item)) if spec.op_field else spec.ops[0]
    data = {k: v for k, v in item.items()}
    for field_path in (spec.op_field, spec.ref):
        if field_path:
            data.pop(str(JsonPath(field_path).steps[0]), None)
    item_key = None
    if spec.item_key:
        item_key = data.pop(str(JsonPath(spec.item_key).steps[0]), None)
        stored = api.table.idempotency.get(f"item:{item_key}") if item_key else None
        if stored is not None:
            return stored.body
    record_id = api.table.key.first(item)
    if op in ("create", "upsert"):
        if op == "upsert" and api.spec.upsert is not None:
            record, _ = api.do_upsert(data, JsonPath(api.spec.upsert.key).first(data))
        else:
            record = api.do_create(data)
        if item_key:
            api.table.idempotency[f"item:{item_key}"] = Answer(200, record)
        return record
    if record_id is None:
        raise Refused("permanent", f"a batch {op} needs the record id")
    version = None
    if api.table.version is not None:
        found = api.table.version.first(data)
        version = None if found is None else str(found)
    if op == "delete":
        api.do_delete(str(record_id), version)
        return None
    data.pop(str(api.table.key.steps[0]), None)
    return api.do_update(str(record_id), data, version, replace=False)
