"""How close the hub client gets to a server's rate limit without being throttled.

Starts a loopback server (a subprocess running uvicorn) whose one endpoint accepts RATE
requests per second and answers 429 with ``Retry-After`` beyond that, either as a token
bucket (``--server bucket``: RATE tokens, refilled continuously) or as fixed one-second
windows (``--server window``). The hub client, configured with that published limit, drives
it with many tasks for a bounded time, then prints the accepted requests per second as a
share of RATE and the share of answers that were 429.

    python bench/ratelimit.py --rate 50 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import math
import socket
import subprocess
import sys
import time

import httpx

from hub.http import HttpCounters, RateLimit, RetryPolicy, make_client, send_with_retry


def serve(port: int, rate: int, mode: str) -> None:
    """Run the limited server in this process (the subprocess side)."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    stats = {"accepted": 0, "rejected": 0}
    bucket = {"tokens": float(rate), "at": time.monotonic()}
    window = {"second": -1, "used": 0}

    def admit() -> float | None:
        """None when the request may pass, else the seconds to wait."""
        now = time.monotonic()
        if mode == "bucket":
            bucket["tokens"] = min(rate, bucket["tokens"] + (now - bucket["at"]) * rate)
            bucket["at"] = now
            if bucket["tokens"] >= 1:
                bucket["tokens"] -= 1
                return None
            return (1 - bucket["tokens"]) / rate
        second = int(now)
        if second != window["second"]:
            window["second"], window["used"] = second, 0
        if window["used"] < rate:
            window["used"] += 1
            return None
        return second + 1 - now

    async def limited(request: Request) -> Response:
        wait = admit()
        if wait is None:
            stats["accepted"] += 1
            return JSONResponse({"ok": True})
        stats["rejected"] += 1
        return Response(status_code=429, headers={"Retry-After": str(math.ceil(wait))})

    async def report(request: Request) -> Response:
        return JSONResponse(stats)

    app = Starlette(routes=[Route("/limited", limited), Route("/stats", report)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_until_up(base_url: str, deadline: float) -> None:
    async with httpx.AsyncClient(base_url=base_url) as probe:
        while True:
            try:
                await probe.get("/stats")
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"server at {base_url} did not start") from None
                await asyncio.sleep(0.05)


async def drive(base_url: str, args: argparse.Namespace) -> None:
    await wait_until_up(base_url, time.monotonic() + 15)
    limit = RateLimit(rate=args.rate, per_seconds=1, concurrency=args.concurrency)
    if args.burst is not None:
        limit = limit.model_copy(update={"burst": args.burst})
    if args.share < 1:
        limit = limit.scaled(args.share)
    counters = HttpCounters()
    policy = RetryPolicy(attempts=10, max_wait=5)
    ceiling = int(args.rate * args.seconds * 1.5) + 100  # never more requests than this
    accepted = 0
    client = make_client(base_url=base_url, counters=counters, rate_limit=limit, limit_key="bench")
    async with client:
        started = time.monotonic()
        stop_at = started + args.seconds

        async def worker() -> None:
            nonlocal accepted
            while time.monotonic() < stop_at and counters.calls < ceiling:
                await send_with_retry(client, "GET", "/limited", connection="bench", policy=policy)
                if time.monotonic() <= stop_at:  # requests queued at the end don't count
                    accepted += 1

        await asyncio.gather(*(worker() for _ in range(args.tasks)))
        elapsed = stop_at - started
        server = (await client.get("/stats")).json()

    achieved = accepted / elapsed
    throttled_share = counters.throttled / max(1, counters.calls)
    print(
        f"server {args.server}, published limit {args.rate}/s, client {limit.rate:g}/s "
        f"burst {limit.burst} concurrency {limit.concurrency}, {args.tasks} tasks, "
        f"{elapsed:.1f} s"
    )
    print(f"accepted        {accepted} ({achieved:.2f}/s = {achieved / args.rate:.1%} of limit)")
    print(
        f"429 answers     {counters.throttled} of {counters.calls} ({throttled_share:.2%}); "
        f"server saw {server['accepted']} accepted, {server['rejected']} rejected"
    )
    print(f"counters        {counters.as_dict()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=50, help="published limit, requests/s")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to drive")
    parser.add_argument("--tasks", type=int, default=64, help="concurrent tasks")
    parser.add_argument("--concurrency", type=int, default=10, help="client in-flight cap")
    parser.add_argument("--burst", type=int, help="client burst (default: RateLimit's)")
    parser.add_argument("--share", type=float, default=1.0, help="pace to this share of rate")
    parser.add_argument("--server", choices=["bucket", "window"], default="window")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seconds <= 0 or args.seconds > 600:
        parser.error("--seconds must be in (0, 600]")
    if args.serve:
        serve(args.port, args.rate, args.server)
        return
    port = free_port()
    command = [sys.executable, __file__, "--serve", f"--port={port}", f"--rate={args.rate}"]
    server = subprocess.Popen([*command, f"--server={args.server}"])
    try:
        asyncio.run(drive(f"http://127.0.0.1:{port}", args))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
