"""Pushing to a declared stream: one result per change, never an exception for one item.

Creates carry the change's idempotency key in the declared header (and go through
``upsert`` when declared, so a retry after a crash finds the first copy); updates and
deletes send the version the hub last saw as ``If-Match`` or in the body, and a refusal for
an outdated version comes back as ``stale`` so the hub re-reads and merges. A delete that
finds nothing to delete succeeded. Batches are answered item by item.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from typing import Any

import httpx

from hub.connector import Change, PushResult
from hub.errors import ConnectorError, ErrorKind, PermanentError
from hub.http import RetryingClient, send_with_retry
from hub.rest.errors import KIND_OF, Outcome, outcome_for
from hub.rest.jsonpath import JsonPath
from hub.rest.reader import read_body
from hub.rest.stream import CompiledStream
from hub.rest.writes import BatchSpec, WriteSpec, default_write

__all__ = ["Writer", "merge"]

STALE = "stale version"
"""Start of ``PushResult.message`` when a write named an outdated version."""


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` applied, nested objects merged key by key."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


class Writer:
    def __init__(self, http: RetryingClient, stream: CompiledStream, concurrency: int) -> None:
        self.http = http
        self.s = stream
        self.spec = stream.spec
        self.slots = asyncio.Semaphore(concurrency)

    async def push(self, changes: list[Change]) -> list[PushResult]:
        batch = self.spec.batch
        batched = [c for c in changes if batch is not None and self._op(c) in batch.ops]
        taken = {id(c) for c in batched}
        single = [c for c in changes if id(c) not in taken]
        tasks = [self._guarded(c) for c in single]
        if batch is not None:
            for start in range(0, len(batched), batch.size):
                tasks.append(self._batch(batched[start : start + batch.size], batch))
        results: list[PushResult] = []
        for done in await asyncio.gather(*tasks):
            results.extend(done)
        return results

    def _op(self, change: Change) -> str:
        if change.op == "create" and self.spec.upsert is not None:
            return "upsert"
        return change.op

    # -- one change at a time ----------------------------------------------------------

    async def _guarded(self, change: Change) -> list[PushResult]:
        async with self.slots:
            try:
                return [await self._one(change)]
            except ConnectorError as exc:
                return [_failed(change, exc.kind, str(exc), exc.retry_after)]

    async def _one(self, change: Change) -> PushResult:
        op = self._op(change)
        write: WriteSpec | None = getattr(self.spec, op)
        if write is None:
            return _failed(change, ErrorKind.CONFIG, f"stream {self.s.name!r} cannot {change.op}")
        if op not in ("create", "upsert") and not change.remote_id:
            return _failed(change, ErrorKind.PERMANENT, f"{change.op} needs a remote id")
        method, path = default_write(op, self.s.path, write)
        try:
            url = self.s.render(path, id=change.remote_id, data=change.data)
        except KeyError as exc:
            return _failed(change, ErrorKind.PERMANENT, f"the record has no {exc.args[0]}")
        headers: dict[str, str] = {}
        body: Any = None
        data = change.data
        if (
            op == "update"
            and method == "PUT"
            and not (write.read_first or write.partial)
            and (change.record)
        ):
            data = change.record  # a PUT replaces the record: send all of it as the hub knows it
        if op == "update" and write.read_first:
            current = await self._current(change.remote_id or "")
            if current is None:
                return _failed(change, ErrorKind.PERMANENT, f"no such record: {change.remote_id}")
            data = merge(current, data)
        if method != "DELETE":
            body = self._body(write, data, change)
        if change.version is not None and write.version == "if_match":
            headers["If-Match"] = change.version
        idempotent = method in ("PUT", "DELETE") or op == "upsert"
        if op == "create" and self.spec.idempotency_header:
            headers[self.spec.idempotency_header] = change.idempotency_key
            idempotent = True
        response = await self._send(op, method, url, write, body, headers, idempotent)
        return self._answer(change, op, write, response)

    def _body(self, write: WriteSpec, data: dict[str, Any], change: Change) -> Any:
        body = dict(data)
        hub = {"id": change.entity_id or change.idempotency_key}
        values = {"settings": self.s.settings, "hub": hub, "data": data}
        for path, template in write.set.items():
            if JsonPath(path).first(body) in (None, ""):
                with contextlib.suppress(KeyError):
                    JsonPath(path).set(body, self.s.template(template).render(values))
        if write.version == "body" and change.version is not None:
            assert self.s.version_field is not None
            JsonPath(self.s.version_field.text).set(body, change.version)
        return {write.wrap: body} if write.wrap else body

    async def _send(
        self,
        op: str,
        method: str,
        url: str,
        write: WriteSpec | BatchSpec,
        body: Any,
        headers: dict[str, str],
        idempotent: bool,
    ) -> httpx.Response:
        http = self.http
        return await send_with_retry(
            http.client,
            method,
            url,
            connection=http.connection,
            classifier=self.s.classifiers[op],
            policy=http.policy,
            sleep=http.sleep,
            idempotent=idempotent,
            params=getattr(write, "params", None) or None,
            json=body,
            headers=headers or None,
        )

    async def _current(self, remote_id: str) -> dict[str, Any] | None:
        from hub.rest.fetch import fetch_one

        found = await fetch_one(self.http, self.s, remote_id)
        return found[0] if found else None

    def _answer(
        self, change: Change, op: str, write: WriteSpec, response: httpx.Response
    ) -> PushResult:
        outcome = self.s.classifiers[op].outcome(response)
        if outcome == "already_deleted" or (outcome == "ok" and op == "delete"):
            return PushResult(key=change.key, remote_id=change.remote_id)
        if outcome != "ok":
            return self._refused(change, op, outcome, response)
        body = read_body(response, self.http.connection)
        record = JsonPath(write.record).first(body) if write.record and body is not None else None
        record = record if isinstance(record, dict) else None
        remote_id = (self.s.remote_id(record) if record else None) or change.remote_id
        if remote_id is None:
            remote_id = _from_location(response)
        if remote_id is None:
            raise PermanentError(
                f"the {op} answer names no record id (check '{op}.record')",
                connection=self.http.connection,
                request=f"{response.request.method} {response.request.url.path}",
            )
        return PushResult(
            key=change.key,
            remote_id=remote_id,
            version=self.s.version_of(record, response)
            if record is not None
            else self.s.version_of({}, response),
            data=record,
        )

    def _refused(
        self, change: Change, op: str, outcome: Outcome, response: httpx.Response
    ) -> PushResult:
        described = self.s.classifiers[op].describe(response)
        if outcome == "stale":
            return PushResult(
                key=change.key,
                remote_id=change.remote_id,
                error=ErrorKind.TRANSIENT,
                message=f"{STALE}: the remote record changed since version {change.version} "
                f"({described})",
                stale=True,
            )
        if outcome == "not_found":
            return _failed(change, ErrorKind.PERMANENT, f"no such record: {change.remote_id}")
        kind = KIND_OF[outcome] or ErrorKind.PERMANENT
        return _failed(change, kind, described)

    # -- batches -----------------------------------------------------------------------

    async def _batch(self, changes: list[Change], spec: BatchSpec) -> list[PushResult]:
        items = [self._item(change, spec) for change in changes]
        body: Any = items if JsonPath(spec.items).is_root else JsonPath(spec.items).set({}, items)
        headers: dict[str, str] = {}
        creates = all(c.op == "create" for c in changes)
        if creates and self.spec.idempotency_header:
            keys = "\n".join(sorted(c.idempotency_key for c in changes))
            headers[self.spec.idempotency_header] = hashlib.sha256(keys.encode()).hexdigest()
        idempotent = bool(headers) or all(self._op(c) != "create" for c in changes)
        try:
            async with self.slots:
                response = await self._send(
                    "batch", spec.method, self.s.render(spec.path), spec, body, headers, idempotent
                )
        except ConnectorError as exc:
            return [_failed(c, exc.kind, str(exc), exc.retry_after) for c in changes]
        answers = JsonPath(spec.results).records(read_body(response, self.http.connection))
        if spec.ref is not None:
            ref = JsonPath(spec.ref)
            by_ref = {str(ref.first(a)): a for a in answers if isinstance(a, dict)}
            matched = [by_ref.get(c.key) for c in changes]
        else:
            matched = [answers[i] if i < len(answers) else None for i in range(len(changes))]
        return [self._item_result(c, a, spec) for c, a in zip(changes, matched, strict=True)]

    def _item(self, change: Change, spec: BatchSpec) -> dict[str, Any]:
        item = dict(change.data)
        op = self._op(change)
        if change.remote_id is not None and op in ("update", "delete"):
            self.s.key.set(item, change.remote_id)
            write = getattr(self.spec, op)
            versioned = write is not None and write.version != "none"
            if change.version is not None and versioned and self.s.version_field is not None:
                self.s.version_field.set(item, change.version)
        if spec.op_field:
            JsonPath(spec.op_field).set(item, op)
        if spec.ref:
            JsonPath(spec.ref).set(item, change.key)
        if spec.item_key and op in ("create", "upsert"):
            JsonPath(spec.item_key).set(item, change.idempotency_key)
        return item

    def _item_result(self, change: Change, answer: Any, spec: BatchSpec) -> PushResult:
        if not isinstance(answer, dict):
            return _failed(change, ErrorKind.TRANSIENT, "the batch answer has no entry for it")
        status = JsonPath(spec.status).first(answer) if spec.status else None
        error = JsonPath(spec.error).first(answer) if spec.error else None
        op = self._op(change)
        if isinstance(status, int):
            outcome = outcome_for(self.s.rules, status, str(error or ""), op)
        else:
            outcome = "permanent" if error not in (None, "", False) else "ok"
        if op == "delete" and outcome in ("ok", "already_deleted"):
            return PushResult(key=change.key, remote_id=change.remote_id)
        if outcome == "stale":
            return PushResult(
                key=change.key,
                remote_id=change.remote_id,
                error=ErrorKind.TRANSIENT,
                message=f"{STALE}: {error or status}",
                stale=True,
            )
        if outcome != "ok":
            kind = KIND_OF.get(outcome) or ErrorKind.PERMANENT
            return _failed(change, kind, f"item refused: {error or status}")
        record = JsonPath(spec.record).first(answer)
        record = record if isinstance(record, dict) else None
        remote_id = (self.s.remote_id(record) if record else None) or change.remote_id
        if remote_id is None:
            return _failed(change, ErrorKind.PERMANENT, "the batch answer names no record id")
        version = self.s.version_of(record) if record is not None else None
        return PushResult(key=change.key, remote_id=remote_id, version=version, data=record)


def _failed(
    change: Change, kind: ErrorKind, message: str, retry_after: float | None = None
) -> PushResult:
    return PushResult(
        key=change.key,
        remote_id=change.remote_id,
        error=kind,
        message=message,
        retry_after=retry_after,
    )


def _from_location(response: httpx.Response) -> str | None:
    location = response.headers.get("Location")
    if not location:
        return None
    tail = httpx.URL(location).path.rstrip("/").rpartition("/")[2]
    return tail or None
