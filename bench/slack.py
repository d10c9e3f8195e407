"""The Slack connector's first sync against its sandbox: calls against the minimum the
listing limits allow, and time against the bound Slack's tiers set.

    python bench/slack.py [--people 1000] [--messages 5000] [--thread-every 10]
                          [--replies 3] [--customers 20] [--scale 60] [--unchecked]

A workspace of ``--people`` members and ``--customers`` people of another team (Slack
Connect), one followed channel with ``--messages`` top-level messages from them over the
last 30 days, every ``--thread-every``-th one with ``--replies`` replies. One ``crmhub sync``
(in-process engine, SQLite store) reads it all. The sandbox runs in a thread of the same
process (``--unchecked``: without holding the traffic to Slack's description).

The minimum: ``users.list`` ceil(people / 200), ``conversations.history`` ceil(messages /
200), one ``conversations.replies`` per thread, one ``users.info`` per author from another
team, one ``auth.test``. Slack's tiers (tier 2: 20 a minute, tier 3: 50, tier 4: 100) are
multiplied by ``--scale`` on both sides, so the run's length can be compared with the bound
they set (tier-3 calls / tier-3 rate) without waiting minutes. Prints figures, never asserts.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import math  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import httpx  # noqa: E402

from connectors.slack.sandbox import create_sandbox  # noqa: E402
from connectors.slack.sandbox_workspace import SHARED_CHANNEL  # noqa: E402
from hub.sandbox import serve_sandbox  # noqa: E402

TIERS = {2: 20, 3: 50, 4: 100}


def workspace(args: argparse.Namespace) -> tuple[object, int]:
    """The sandbox app and the number of threads in its channel."""
    tiers = {t: int(n * args.scale) for t, n in TIERS.items()}
    app = create_sandbox(
        seed=1,
        size=args.people,
        customers=args.customers,
        tiers=tiers,
        validate=not args.unchecked,
    )
    space = app.provider.workspace
    staff = space.staff()
    customers = sorted(space.external)
    start = time.time() - 30 * 86_400
    threads = 0
    for i in range(args.messages):
        author = (
            customers[i % len(customers)] if i % 3 == 0 and customers else staff[i % len(staff)]
        )
        ts = f"{start + i * 30:.6f}"
        space.post(SHARED_CHANNEL, author, f"Message {i} about the order", ts=ts)
        if args.thread_every and i % args.thread_every == 0:
            threads += 1
            for r in range(args.replies):
                reply_ts = f"{start + i * 30 + r + 1:.6f}"
                who = staff[(i + r + 1) % len(staff)]
                space.post(SHARED_CHANNEL, who, f"Reply {r} to {i}", thread_ts=ts, ts=reply_ts)
    return app, threads


async def first_sync(folder: Path, url: str, scale: float) -> tuple[float, dict[str, int]]:
    from auth.credentials import VaultAuth
    from auth.flows import complete_authorization, start_authorization
    from hub.config import load_config
    from hub.engine import sync_connection
    from hub.runtime import Hub

    (folder / "crmhub.toml").write_text(
        f'[hub]\ndatabase = "sqlite+aiosqlite:///{folder / "crmhub.db"}"\n\n'
        f'[connections.team]\nconnector = "slack"\napi_url = "{url}/api"\n'
        f'channels = ["{SHARED_CHANNEL}"]\n'
        f"tier2_per_minute = {20 * scale}\ntier3_per_minute = {50 * scale}\n"
        f"tier4_per_minute = {100 * scale}\n\n"
        '[connections.team.oauth]\nclient_id = "sandbox-client"\n'
        'client_secret = "sandbox-secret"\n'
        f'authorize_url = "{url}/oauth/authorize"\ntoken_url = "{url}/api/oauth.v2.access"\n'
    )
    hub = await Hub.open(load_config(folder / "crmhub.toml"), auth=VaultAuth())
    try:
        start = await start_authorization(hub, "team")
        async with httpx.AsyncClient() as browser:
            answer = await browser.get(start.url)
        await complete_authorization(hub, answer.headers["location"])
        began = time.perf_counter()
        report = await sync_connection(hub, "team")
        took = time.perf_counter() - began
        assert report.status == "ok", report.error
        return took, dict(report.counts)
    finally:
        await hub.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--thread-every", type=int, default=10)
    parser.add_argument("--replies", type=int, default=3)
    parser.add_argument("--customers", type=int, default=20)
    parser.add_argument("--scale", type=float, default=60.0)
    parser.add_argument("--unchecked", action="store_true")
    args = parser.parse_args()

    app, threads = workspace(args)
    url, server = serve_sandbox(app)  # type: ignore[arg-type]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            took, counts = asyncio.run(first_sync(Path(tmp), url, args.scale))
    finally:
        server.stop()
    log = app.log  # type: ignore[attr-defined]
    calls = {
        m: log.count("GET", f"/api/{m}")
        for m in (
            "users.list",
            "conversations.history",
            "conversations.replies",
            "users.info",
            "auth.test",
        )
    }
    minimum = {
        "users.list": math.ceil((args.people + 2) / 200),  # + the bot and Slackbot
        "conversations.history": math.ceil(args.messages / 200),
        "conversations.replies": threads,
        "users.info": min(args.customers, args.messages),
        "auth.test": 1,
    }
    total, least = sum(calls.values()), sum(minimum.values())
    activities = args.messages + threads * args.replies
    tier3 = calls["conversations.history"] + calls["conversations.replies"]
    bound = tier3 / (TIERS[3] * args.scale) * 60
    print(
        f"workspace: {args.people} people, {args.customers} customers, "
        f"{args.messages} messages, {threads} threads of {args.replies} replies "
        f"({activities} activities); tiers x{args.scale:g}"
        f"{'' if not args.unchecked else ', unchecked'}"
    )
    for method, n in calls.items():
        print(f"  {method:24} {n:6} calls (minimum {minimum[method]})")
    print(f"  {'total':24} {total:6} calls (minimum {least}): {total / least:.2f} x")
    throttled = app.provider.throttled  # type: ignore[attr-defined]
    print(
        f"first sync: {took:.1f} s, {activities / took:.0f} activities/s; "
        f"tier-3 bound {bound:.1f} s ({tier3} calls at {TIERS[3] * args.scale:g}/min): "
        f"{took / bound:.2f} x; 429s: {throttled}"
    )
    print(f"run counts: {counts}")


if __name__ == "__main__":
    main()
