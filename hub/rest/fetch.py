"""Reading records by id (``fetch``): after a stale-version answer, or for a webhook."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from hub.connector import RemoteRecord
from hub.http import RetryingClient, send_with_retry
from hub.rest.jsonpath import JsonPath
from hub.rest.reader import read_body
from hub.rest.stream import CompiledStream

__all__ = ["fetch_one", "fetch_records"]


async def fetch_one(
    http: RetryingClient, stream: CompiledStream, remote_id: str
) -> tuple[dict[str, Any], httpx.Response] | None:
    """The record as the remote holds it now and the answer it came in; ``None`` when the
    remote has no such record (or only its tombstone)."""
    spec = stream.spec.fetch
    path = spec.path if spec and spec.path else stream.spec.path.rstrip("/") + "/{id}"
    classifier = stream.classifiers["fetch"]
    response = await send_with_retry(
        http.client,
        "GET",
        stream.render(path, id=remote_id),
        connection=http.connection,
        classifier=classifier,
        policy=http.policy,
        sleep=http.sleep,
    )
    if classifier.outcome(response) != "ok":
        return None  # not found, or gone: nothing to merge
    body = read_body(response, http.connection)
    record = JsonPath(spec.record if spec else "$").first(body)
    if not isinstance(record, dict) or (stream.gone is not None and stream.gone(record)):
        return None
    return record, response


async def fetch_records(
    http: RetryingClient, stream: CompiledStream, remote_ids: list[str], concurrency: int
) -> list[RemoteRecord]:
    """The records of ``remote_ids`` that exist, read a few at a time."""
    slots = asyncio.Semaphore(concurrency)

    async def one(remote_id: str) -> RemoteRecord | None:
        async with slots:
            found = await fetch_one(http, stream, remote_id)
        if found is None:
            return None
        data, response = found
        read = stream.read(data)
        if read is None or read[1] is None:
            return None
        record = read[1]
        if record.version is None:
            record.version = stream.version_of(data, response)
        return record

    done = await asyncio.gather(*(one(i) for i in remote_ids))
    return [r for r in done if r is not None]
