"""Webhook intake: crmhub's receiver against a bare endpoint, at rising request rates.

    python bench/webhooks.py [--rates 100,250,500,1000] [--seconds 5] [--max-requests 5000]

Two servers run on loopback, each in its own process under uvicorn, one after the other:
the crmhub web app (SQLite store in a temporary directory, inbox processor running) and a
bare Starlette endpoint that answers 200 without verifying or storing anything. This process
posts signed deliveries to each at a fixed rate (open loop: latency counts from the moment a
request was due, so a slow server cannot hide its queue), for a bounded time and number of
requests per rate. At the end the inbox rows are counted: every 200 must be a stored row.

Prints accepted deliveries/s and p50/p99 latency per rate for both servers. Figures, never
asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SECRET = "bench-signing-secret-0123456789"
SOURCE = "bench"


# ---- the servers (run in their own processes) ----------------------------------------------


def _bench_connector() -> Any:
    from pydantic import BaseModel, ConfigDict, SecretStr

    from hub.connector import Connector, Cursor, Page, Stream
    from hub.inbox import InboxItem
    from hub.services import ConnectionServices
    from hub.webhooks import (
        Delivery,
        RequestInfo,
        WebhookReceiver,
        check_timestamp,
        hmac_sha256,
        parse_json,
        verify_signature,
    )

    class BenchSettings(BaseModel):
        model_config = ConfigDict(extra="forbid")
        signing_secret: SecretStr

    class Receiver(WebhookReceiver):
        """Slack's scheme: hex HMAC of ``v0:{timestamp}:{body}``, 300 s window, JSON body."""

        async def verify(self, request: RequestInfo, body: bytes) -> Delivery:
            ts = request.headers.get("x-slack-request-timestamp")
            check_timestamp(ts)
            secret = self.secret("signing_secret") or ""
            expected = "v0=" + hmac_sha256(secret, f"v0:{ts}:".encode() + body)
            verify_signature(expected, request.headers.get("x-slack-signature"))
            payload = parse_json(body)
            return Delivery(delivery_id=str(payload["event_id"]), kind="event_callback")

        async def handle(self, services: ConnectionServices, item: InboxItem) -> None:
            return None

    class BenchConnector(Connector):
        name = "bench"
        Settings = BenchSettings
        webhook = Receiver

        def streams(self) -> list[Stream]:
            return [Stream(name="events", entity="activity")]

        async def pull(self, stream: Stream, cursor: Cursor | None) -> AsyncIterator[Page]:
            return
            yield Page()

    return BenchConnector


async def _serve_crmhub(port: int, directory: Path, processor: bool) -> None:
    import uvicorn

    from hub.config import load_config
    from hub.inbox import InboxProcessor
    from hub.logging import configure_logging
    from hub.registry import Registry
    from hub.runtime import Hub
    from hub.web import create_app

    configure_logging(json=True, level="WARNING")
    path = directory / "crmhub.toml"
    path.write_text(
        f'[hub]\ndatabase = "{directory / "crmhub.db"}"\n\n'
        f'[connections.{SOURCE}]\nconnector = "bench"\nsigning_secret = "{SECRET}"\n'
    )
    config = load_config(path)
    hub = await Hub.open(config, Registry.discover(extra={"bench": _bench_connector()}))
    app = create_app(hub)
    task = asyncio.create_task(InboxProcessor(hub).run()) if processor else None
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    try:
        await server.serve()
    finally:
        if task:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await hub.close()


async def _serve_bare(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def endpoint(request: Request) -> Response:
        await request.body()
        return Response(status_code=200)

    app = Starlette(routes=[Route("/hooks/{connection}", endpoint, methods=["POST"])])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    await server.serve()


# ---- the load (this process) ---------------------------------------------------------------


@dataclass
class Result:
    server: str
    rate: int
    sent: int
    ok: int
    failed: int
    elapsed: float
    latencies: list[float]

    @property
    def accepted_per_s(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    def pct(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


def _signed(event_id: str) -> tuple[bytes, dict[str, str]]:
    import hashlib
    import hmac

    body = json.dumps(
        {"type": "event_callback", "event_id": event_id, "event": {"type": "message", "x": 1}}
    ).encode()
    ts = str(int(time.time()))
    sig = hmac.new(SECRET.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    headers = {
        "content-type": "application/json",
        "x-slack-request-timestamp": ts,
        "x-slack-signature": "v0=" + sig,
    }
    return body, headers


class _Pool:
    """Keep-alive HTTP/1.1 connections on loopback, cheaper per request than a full client:
    the load generator must not be what limits the figures."""

    def __init__(self, port: int, size: int) -> None:
        self.port = port
        self.size = size
        self.opened = 0
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )

    async def _get(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.idle.empty() and self.opened < self.size:
            self.opened += 1
            return await asyncio.open_connection("127.0.0.1", self.port)
        return await self.idle.get()

    async def post(self, raw: bytes) -> int:
        reader, writer = await self._get()
        try:
            writer.write(raw)
            status = int((await reader.readline()).split()[1])
            length, close = 0, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "connection" and "close" in value.lower():
                    close = True
            if length:
                await reader.readexactly(length)
        except BaseException:
            self.opened -= 1
            writer.close()
            raise
        if close:
            self.opened -= 1
            writer.close()
        else:
            self.idle.put_nowait((reader, writer))
        return status

    async def close(self) -> None:
        while not self.idle.empty():
            _reader, writer = self.idle.get_nowait()
            writer.close()


def _raw(body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST /hooks/{SOURCE} HTTP/1.1", "host: 127.0.0.1", f"content-length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _load(server: str, port: int, rate: int, seconds: float, cap: int) -> Result:
    count = min(cap, int(rate * seconds))
    requests = [_raw(*_signed(f"{server}-{rate}-{i}-{uuid.uuid4().hex[:8]}")) for i in range(count)]
    latencies: list[float] = []
    ok = failed = 0
    pool = _Pool(port, 256)

    async def one(i: int, due: float) -> None:
        nonlocal ok, failed
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            status = await asyncio.wait_for(pool.post(requests[i]), 10)
        except (OSError, TimeoutError, ValueError, IndexError, asyncio.IncompleteReadError):
            failed += 1
            return
        latencies.append(time.perf_counter() - due)
        if status == 200:
            ok += 1
        else:
            failed += 1

    start = time.perf_counter() + 0.05
    tasks = [asyncio.create_task(one(i, start + i / rate)) for i in range(count)]
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    await pool.close()
    return Result(server, rate, count, ok, failed, elapsed, latencies)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(kind: str, port: int, directory: Path, processor: bool) -> subprocess.Popen[bytes]:
    args = [sys.executable, __file__, "--serve", kind, "--port", str(port), "--dir", str(directory)]
    if not processor:
        args.append("--no-processor")
    proc = subprocess.Popen(args)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{kind} server did not start on port {port}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


async def _warm(port: int) -> None:
    pool = _Pool(port, 4)
    for i in range(50):
        await pool.post(_raw(*_signed(f"warm-{i}-{uuid.uuid4().hex[:8]}")))
    await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="100,250,500,1000")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--max-requests", type=int, default=5000)
    parser.add_argument("--no-processor", action="store_true", help="crmhub: no inbox processor")
    parser.add_argument("--serve", choices=["crmhub", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "crmhub":
        asyncio.run(_serve_crmhub(args.port, args.dir, not args.no_processor))
        return
    if args.serve == "bare":
        asyncio.run(_serve_bare(args.port))
        return

    rates = [int(r) for r in args.rates.split(",")]
    results: dict[str, list[Result]] = {}
    with tempfile.TemporaryDirectory(prefix="crmhub-bench-") as tmp:
        directory = Path(tmp)
        stored = 0
        for kind in ("bare", "crmhub"):
            port = _free_port()
            proc = _start(kind, port, directory, not args.no_processor)
            try:
                asyncio.run(_warm(port))
                results[kind] = []
                for rate in rates:
                    results[kind].append(
                        asyncio.run(_load(kind, port, rate, args.seconds, args.max_requests))
                    )
                    time.sleep(0.5)
            finally:
                _stop(proc)
        with sqlite3.connect(directory / "crmhub.db") as db:
            stored, done = db.execute(
                "SELECT count(*), coalesce(sum(status = 'done'), 0) FROM inbox"
                " WHERE source = ? AND delivery_id LIKE 'crmhub-%'",
                (SOURCE,),
            ).fetchone()
    _report(rates, results, stored, args)
    print(f"processed (status done) by the end: {done} of {stored}")


def _report(
    rates: list[int], results: dict[str, list[Result]], stored: int, args: argparse.Namespace
) -> None:
    print(
        f"webhook intake, {args.seconds:g} s per rate (at most {args.max_requests} requests), "
        f"inbox processor {'off' if args.no_processor else 'on'}, cpus={os.cpu_count()}"
    )
    print(
        f"{'rate/s':>7} | {'bare ok/s':>9} {'p50 ms':>7} {'p99 ms':>7} | "
        f"{'crmhub ok/s':>11} {'p50 ms':>7} {'p99 ms':>7} {'failed':>6} | {'share':>6}"
    )
    for i, rate in enumerate(rates):
        bare, hub = results["bare"][i], results["crmhub"][i]
        share = hub.accepted_per_s / bare.accepted_per_s if bare.accepted_per_s else float("nan")
        print(
            f"{rate:>7} | {bare.accepted_per_s:>9.0f} {bare.pct(50):>7.1f} {bare.pct(99):>7.1f} | "
            f"{hub.accepted_per_s:>11.0f} {hub.pct(50):>7.1f} {hub.pct(99):>7.1f} "
            f"{hub.failed:>6} | {share:>6.0%}"
        )
    accepted = sum(r.ok for r in results["crmhub"])
    print(f"crmhub answered 200 to {accepted} deliveries; inbox rows: {stored}", end="")
    print("  (nothing lost)" if stored == accepted else f"  (MISMATCH: {accepted - stored})")
    median = statistics.median(r.pct(99) for r in results["crmhub"])
    print(f"median p99 over the rates: {median:.1f} ms")


if __name__ == "__main__":
    main()
