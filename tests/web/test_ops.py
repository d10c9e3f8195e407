"""``/healthz`` and ``/metrics``, and the metrics registry's text format."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import insert

from hub import metrics
from hub.inbox import Inbox
from hub.runtime import Hub
from hub.store import Store, utcnow
from hub.store.schema import entities, outbox, runs, tokens
from hub.web import create_app
from tests.web import open_hub


@pytest.fixture
async def hub(tmp_path: Path, db_url: str) -> AsyncIterator[Hub]:
    h = await open_hub(tmp_path, database=db_url)
    try:
        yield h
    finally:
        await h.close()


def client_for(hub: Hub) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(hub)), base_url="http://h"
    )


def samples(text: str) -> dict[str, float]:
    """``name{labels}`` -> value for every sample line."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


async def test_healthz_ok(hub: Hub) -> None:
    async with client_for(hub) as client:
        answer = await client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json()["status"] == "ok"


async def test_healthz_503_when_the_database_fails(hub: Hub) -> None:
    working = hub.store
    # nothing listens on port 1: every connection attempt is refused
    hub.store = Store(Store.create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none"))
    try:
        async with client_for(hub) as client:
            answer = await client.get("/healthz")
            scraped = await client.get("/metrics")
    finally:
        await hub.store.close()
        hub.store = working
    assert answer.status_code == 503
    assert answer.json()["status"] == "error"
    assert "database error" in answer.json()["database"]
    assert scraped.status_code == 200
    assert samples(scraped.text)["crmhub_store_up"] == 0


async def _seed(store: Store) -> datetime:
    now = utcnow()
    expires = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    async with store.begin() as db:
        await db.execute(
            insert(entities).values(
                id="e1", type="contact", fields={}, provenance={}, created_at=now, updated_at=now
            )
        )
        for status, counts in (("ok", {"records": 10, "created": 2}), ("ok", {"records": 5})):
            await db.execute(
                insert(runs).values(
                    id=str(uuid.uuid4()),
                    connection="shop",
                    status=status,
                    full=False,
                    started_at=now - timedelta(minutes=5),
                    finished_at=now,
                    counts=counts,
                )
            )
        await db.execute(
            insert(runs).values(
                id=str(uuid.uuid4()),
                connection="shop",
                status="failed",
                full=False,
                started_at=now,
                finished_at=now + timedelta(hours=1),  # a failure is never a last success
                counts={"records": 1},
                error="boom",
            )
        )
        for status in ("pending", "dead", "dead"):
            await db.execute(
                insert(outbox).values(
                    id=str(uuid.uuid4()),
                    connection="quiet",
                    stream="events",
                    entity_id="e1",
                    op="upsert",
                    status=status,
                    attempts=0,
                    created_at=now,
                    updated_at=now,
                )
            )
        await db.execute(
            insert(tokens).values(
                connection="shop",
                version=1,
                kind="oauth2",
                ciphertext=b"x",
                key_id="k",
                expires_at=expires,
                status="ok",
                updated_at=now,
            )
        )
    inbox = Inbox(store, max_attempts=1)
    await inbox.add("shop", "d1", b"{}")
    dead, _ = await inbox.add("shop", "d2", b"{}")
    await inbox.mark_failed(dead, "boom")
    return expires


async def test_metrics_reads_the_store_and_the_process(hub: Hub) -> None:
    expires = await _seed(hub.store)
    metrics.RUN_COUNTS.inc(3, connection="shop", key="http_calls")
    before = metrics.RUN_COUNTS.value(connection="shop", key="http_calls")
    async with client_for(hub) as client:
        answer = await client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = answer.text
    got = samples(text)
    assert got["crmhub_store_up"] == 1
    assert got['crmhub_runs{connection="shop",status="ok"}'] == 2
    assert got['crmhub_runs{connection="shop",status="failed"}'] == 1
    last_ok = got['crmhub_last_success_timestamp_seconds{connection="shop"}']
    assert abs(last_ok - time.time()) < 60
    assert not any(k.startswith("crmhub_last_success") and "quiet" in k for k in got)
    assert got['crmhub_inbox_items{status="pending"}'] == 1
    assert got['crmhub_inbox_items{status="dead"}'] == 1
    assert got['crmhub_inbox_items{status="malformed"}'] == 0
    assert got['crmhub_outbox_items{connection="quiet",status="dead"}'] == 2
    assert got['crmhub_dead_letters{queue="inbox"}'] == 1
    assert got['crmhub_dead_letters{queue="outbox"}'] == 2
    assert got['crmhub_token_expiry_timestamp_seconds{connection="shop"}'] == expires.timestamp()
    assert got['crmhub_token_status{connection="shop",status="ok"}'] == 1
    assert got['crmhub_run_counts_total{connection="shop",key="http_calls"}'] == before
    assert got["process_resident_memory_bytes"] > 0
    assert "# TYPE crmhub_run_counts counter" in text
    assert "# TYPE crmhub_inbox_items gauge" in text
    assert 0 <= got["crmhub_inbox_oldest_pending_seconds"] < 60


def test_render_escapes_labels_and_checks_names() -> None:
    registry = metrics.Registry()
    counter = registry.counter("t_events", "Events.", ("source",))
    counter.inc(source='a"b\\c\nd')
    counter.inc(2, source="plain")
    gauge = registry.gauge("t_depth", "Depth.")
    gauge.set(1.5)
    text = registry.render()
    assert 't_events_total{source="a\\"b\\\\c\\nd"} 1' in text
    assert 't_events_total{source="plain"} 2' in text
    assert "t_depth 1.5" in text
    assert re.search(r"^# TYPE t_events counter$", text, re.M)
    with pytest.raises(ValueError):
        counter.inc(kind="x")
    with pytest.raises(ValueError):
        counter.inc(-1, source="plain")
    with pytest.raises(ValueError):
        registry.gauge("t_events", "again, differently")
    assert registry.counter("t_events", "Events.", ("source",)) is counter
