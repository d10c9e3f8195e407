"""``crmhub status`` on both databases, over a hub of memory connections: a hub in step
exits 0; each kind of problem is listed with the command that deals with it and exits 1;
``--json`` keeps its keys."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

import hub.cli.auth_commands as auth_commands
import hub.cli.core_commands as core_commands
from auth.keys import KEY_ENV, KEY_FILE_ENV, create_key_file, load_keyring
from auth.vault import TokenVault
from hub.authspec import OAuthSettings
from hub.cli import (
    app,
    commands,  # noqa: F401  (registers the commands)
)
from hub.engine import sync_connection
from hub.errors import PermanentError
from hub.registry import Registry
from hub.store import utcnow
from hub.store.schema import outbox
from hub.testing.memory import MemoryConnector
from tests.hub.enginekit import Setup

runner = CliRunner()


class KeyedMemory(MemoryConnector):
    """A memory connection that authenticates with an API key."""

    name = "memkey"
    auth_kind = "api_key"


class IdleGrant(MemoryConnector):
    """A memory connection behind OAuth2 whose refresh tokens die after 60 days unused."""

    name = "memgrant"
    auth_kind = "oauth2"
    oauth = OAuthSettings(
        authorize_url="https://id.example.com/authorize",
        token_url="https://id.example.com/token",
        refresh_token_max_idle_days=60,
    )


CONNECTORS: dict[str, Any] = {
    "memory": MemoryConnector,
    "memkey": KeyedMemory,
    "memgrant": IdleGrant,
}


@pytest.fixture
def hub(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    """Memory connections ``crm`` (deletions propagate, held past the guard) and ``shop``,
    ``city`` settled by a person; the CLI reads their configuration."""
    for name in (KEY_ENV, KEY_FILE_ENV, "CRMHUB_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    setup = Setup(
        tmp_path,
        db_url,
        ["crm", "shop"],
        per_connection={
            "crm": 'delete_policy = "propagate"\nfield_policies = { city = "manual" }\n',
            "shop": 'field_policies = { city = "manual" }\n',
        },
    )
    monkeypatch.setenv("CRMHUB_CONFIG", str(tmp_path / "crmhub.toml"))
    monkeypatch.setattr(
        auth_commands, "registry_factory", lambda: Registry.discover(extra=CONNECTORS)
    )
    people = [{"email": f"p{i}@x.io", "first_name": f"P{i}", "city": "Paris"} for i in range(20)]
    step(setup, lambda: _add_and_settle(setup, people))
    yield setup
    asyncio.run(setup.close())


async def _add_and_settle(setup: Setup, people: list[dict[str, Any]]) -> None:
    for person in people:
        setup.remotes["crm"].add(person)
    await setup.sync_until_quiet()


def step(setup: Setup, body: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``body`` against the hub opened for it (the CLI opens its own)."""

    async def run() -> Any:
        await setup.open()
        try:
            return await body()
        finally:
            assert setup.hub is not None
            await setup.hub.close()
            setup.hub = None

    return asyncio.run(run())


def status(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["status", *args])
    return result.exit_code, result.output


def status_json() -> tuple[int, dict[str, Any]]:
    code, out = status("--json")
    return code, json.loads(out)


def actions(report: dict[str, Any]) -> list[tuple[str | None, str, str]]:
    return [(p["connection"], p["what"], p["command"], p["then"]) for p in report["needs_action"]]


TOP_KEYS = {"checked_at", "ok", "connections", "hub", "needs_action"}
CONNECTION_KEYS = {
    "connection",
    "connector",
    "enabled",
    "direction",
    "schedule",
    "last_run",
    "last_ok_at",
    "running",
    "next_run_at",
    "throttled_until",
    "owed",
    "held_runs",
    "credentials",
    "needs_action",
    "notes",
}
HUB_KEYS = {
    "open_conflicts",
    "open_conflicts_by_connection",
    "inbox",
    "pending_references",
    "pending_references_more",
}


def test_a_hub_in_step_exits_0_and_keeps_its_json_keys(hub: Setup) -> None:
    code, out = status()
    assert code == 0, out
    assert "Everything is in step" in out and "need you" not in out
    assert "crm" in out and "shop" in out and "memory" in out

    code, report = status_json()
    assert code == 0
    assert set(report) == TOP_KEYS and report["ok"] is True and report["needs_action"] == []
    assert set(report["hub"]) == HUB_KEYS
    assert set(report["hub"]["inbox"]) == {"pending", "dead", "malformed", "oldest_pending_at"}
    by_name = {c["connection"]: c for c in report["connections"]}
    assert set(by_name) == {"crm", "shop"}
    for c in by_name.values():
        assert set(c) == CONNECTION_KEYS
        assert set(c["last_run"]) == {
            "id",
            "short_id",
            "status",
            "started_at",
            "finished_at",
            "seconds",
            "error",
        }
        assert c["last_run"]["status"] == "ok" and c["last_run"]["error"] is None
        assert c["last_ok_at"] == c["last_run"]["finished_at"]
        assert c["owed"] == {"pending": 0, "overdue": 0, "dead": 0, "oldest_pending_at": None}
        assert c["running"] is None and c["held_runs"] == []
        assert c["credentials"]["status"] == "no credentials needed"
    assert report["hub"]["open_conflicts"] == 0 and report["hub"]["inbox"]["dead"] == 0


def test_a_failed_run_shows_its_error_and_the_sync_to_run(hub: Setup) -> None:
    async def fail() -> None:
        hub.remotes["crm"].fail("pull", PermanentError("the API refused the listing\ndetails"))
        assert hub.hub is not None
        report = await sync_connection(hub.hub, "crm")
        assert report.status == "failed", report

    step(hub, fail)
    code, out = status()
    assert code == 1, out
    assert "crm: last run failed: the API refused the listing" in out
    assert "crmhub sync crm" in out and "details" not in out
    code, report = status_json()
    assert code == 1 and report["ok"] is False
    crm = next(c for c in report["connections"] if c["connection"] == "crm")
    assert crm["last_run"]["status"] == "failed"
    assert crm["last_run"]["error"] == "the API refused the listing"
    assert crm["last_ok_at"] is not None and crm["last_ok_at"] < crm["last_run"]["started_at"]
    assert actions(report) == [
        ("crm", "last run failed: the API refused the listing", "crmhub sync crm", None)
    ]


def test_a_held_run_names_the_approval_that_settles_it(
    hub: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def delete_six() -> str:
        crm = hub.remotes["crm"]
        for rid in list(crm.all())[:6]:
            crm.delete(rid)
        report = await hub.sync("crm")
        assert report.status == "held"
        return report.run_id

    run_id = step(hub, delete_six)
    code, report = status_json()
    assert code == 1
    crm = next(c for c in report["connections"] if c["connection"] == "crm")
    (held,) = crm["held_runs"]
    assert held["id"] == run_id and held["deletes_held"] == 6
    short = held["short_id"]
    assert run_id.startswith(short)
    command = f"crmhub runs approve {short}"
    assert [a[2] for a in actions(report)] == [command]
    code, out = status()
    assert code == 1 and f"run {short} is held: 6 deletion(s)" in out and command in out

    # The command shown settles it: the approval is applied, the hub is in step again.
    monkeypatch.setattr(core_commands, "open_hub", _hub_with(CONNECTORS))
    approved = runner.invoke(app, command.split()[1:])
    assert approved.exit_code == 0 and "applied 6 deletion(s)" in approved.output
    code, out = status()
    assert code == 0, out


def test_owed_writes_count_once_they_wait_too_long(hub: Setup) -> None:
    async def new_person() -> None:
        hub.remotes["crm"].add({"email": "new@x.io", "first_name": "New"})
        await hub.sync("crm")  # shop now owes it; its next run pushes it

    step(hub, new_person)
    code, report = status_json()
    shop = next(c for c in report["connections"] if c["connection"] == "shop")
    assert shop["owed"]["pending"] == 1 and shop["owed"]["overdue"] == 0
    assert code == 0, report["needs_action"]  # just owed: not yet a problem
    code, out = status()
    assert code == 0 and "1 pending" in out

    async def age(**values: Any) -> None:
        assert hub.hub is not None
        async with hub.hub.store.begin() as db:
            await db.execute(update(outbox).where(outbox.c.status == "pending").values(**values))

    step(hub, lambda: age(created_at=utcnow() - timedelta(hours=2)))
    code, out = status()
    assert code == 1, out
    assert "shop: 1 owed write(s) waiting longer than they should" in out
    assert "run: crmhub outbox --connection shop --status pending" in out
    assert "then: crmhub sync shop" in out

    step(hub, lambda: age(status="dead", last_error="refused: invalid phone"))
    code, report = status_json()
    assert code == 1
    assert actions(report) == [
        (
            "shop",
            "1 owed write(s) given up on (dead letters)",
            "crmhub outbox --connection shop",
            "crmhub outbox retry --all-dead",
        )
    ]
    shop = next(c for c in report["connections"] if c["connection"] == "shop")
    assert shop["owed"] == {"pending": 0, "overdue": 0, "dead": 1, "oldest_pending_at": None}


def test_an_open_conflict_names_the_listing_and_the_resolution(hub: Setup) -> None:
    async def both_change_city() -> None:
        crm, shop = hub.remotes["crm"], hub.remotes["shop"]
        rid = next(iter(crm.all()))
        email = crm.get(rid)["email"]
        sid = next(s for s in shop.all() if shop.get(s)["email"] == email)
        crm.update(rid, city="Rome")
        shop.update(sid, city="Oslo")
        await hub.sync("crm")
        await hub.sync("shop")

    step(hub, both_change_city)
    code, report = status_json()
    assert code == 1
    assert report["hub"]["open_conflicts"] == 1
    assert report["hub"]["open_conflicts_by_connection"] == {"shop": 1}
    ((connection, what, command, then),) = actions(report)
    assert connection is None and what.startswith("1 open conflict(s)")
    assert command == "crmhub conflicts"
    assert then == "crmhub conflicts resolve ID --take hub|remote|VALUE"
    code, out = status()
    assert code == 1 and "1 open conflict(s) wait for a person (shop 1)" in out


def test_credentials_needing_reauthorisation_name_the_connect(
    hub: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_key_file(tmp_path / "crmhub.key")
    with (tmp_path / "crmhub.toml").open("a") as config:
        config.write('\n[connections.desk]\nconnector = "memkey"\nstore = "desk"\n')
        config.write('mapping = "contact.toml"\nenabled = false\n')
    code, report = status_json()
    desk = next(c for c in report["connections"] if c["connection"] == "desk")
    assert desk["credentials"]["auth"] == "api_key" and desk["enabled"] is False
    assert code == 0, report["needs_action"]  # disabled: nothing is asked of it

    text = (tmp_path / "crmhub.toml").read_text().replace("enabled = false\n", "")
    (tmp_path / "crmhub.toml").write_text(text)
    code, report = status_json()
    assert code == 1
    assert actions(report) == [("desk", "no credentials stored", "crmhub connect desk", None)]

    async def refused() -> None:
        assert hub.hub is not None
        vault = TokenVault(hub.hub.store, load_keyring(tmp_path))
        await vault.put("desk", "api_key", {"api_key": "k-123"})
        assert await vault.mark_needs_reauth("desk", "key revoked\nby the admin")

    monkeypatch.setattr(Setup, "open", _open_with(CONNECTORS))
    step(hub, refused)
    code, out = status()
    assert code == 1, out
    assert "desk: credentials need re-authorisation: key revoked" in out
    assert "crmhub connect desk" in out
    code, report = status_json()
    desk = next(c for c in report["connections"] if c["connection"] == "desk")
    assert desk["credentials"]["status"] == "needs_reauth"
    assert actions(report) == [
        ("desk", "credentials need re-authorisation: key revoked", "crmhub connect desk", None)
    ]
    assert desk["notes"] == ["never synced: crmhub sync desk"]


def _hub_with(connectors: dict[str, Any]) -> Callable[[], Any]:
    """``open_hub`` of the core commands, with ``connectors`` added."""
    from hub.cli.app import get_config
    from hub.runtime import Hub

    @contextlib.asynccontextmanager
    async def open_hub() -> AsyncIterator[Hub]:
        opened = await Hub.open(get_config(), Registry.discover(extra=connectors))
        try:
            yield opened
        finally:
            await opened.close()

    return open_hub


def _open_with(connectors: dict[str, Any]) -> Callable[[Setup], Awaitable[Any]]:
    from hub.config import load_config
    from hub.runtime import Hub

    async def open_(self: Setup) -> Hub:
        self.hub = await Hub.open(
            load_config(self.tmp / "crmhub.toml"), Registry.discover(extra=connectors)
        )
        return self.hub

    return open_


def test_an_empty_hub_says_so(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "crmhub.toml").write_text(f'[hub]\ndatabase = "{db_url}"\n')
    monkeypatch.setenv("CRMHUB_CONFIG", str(tmp_path / "crmhub.toml"))
    monkeypatch.delenv("CRMHUB_DATABASE_URL", raising=False)
    code, out = status()
    assert code == 0, out
    assert "no connections configured" in out and "crmhub init" in out
    code, report = status_json()
    assert code == 0 and report["connections"] == [] and report["ok"] is True


def test_a_status_that_cannot_be_read_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "crmhub.toml").write_text('[hub]\ndatabase = "crmhub.db"\nnot_a_setting = 1\n')
    monkeypatch.setenv("CRMHUB_CONFIG", str(tmp_path / "crmhub.toml"))
    code, out = status()
    assert code == 2 and "not_a_setting" in out


def test_the_outbox_is_counted_per_stream_through_its_index(hub: Setup) -> None:
    """Only rows of the connection's streams are counted: another connection's owed rows
    and the written ones stay out."""

    async def rows() -> list[Any]:
        assert hub.hub is not None
        async with hub.hub.store.connect() as db:
            return (await db.execute(select(outbox.c.connection, outbox.c.status))).all()

    written = step(hub, rows)
    assert written and all(r.status == "done" for r in written)
    code, report = status_json()
    assert code == 0
    assert all(c["owed"]["pending"] == c["owed"]["dead"] == 0 for c in report["connections"])


def test_a_stopped_daemon_shows_in_late_runs_and_waiting_deliveries(
    hub: Setup, tmp_path: Path
) -> None:
    config = tmp_path / "crmhub.toml"
    config.write_text(
        config.read_text().replace(
            "[connections.crm]\n", '[connections.crm]\nschedule = "every 5m"\n'
        )
    )
    code, report = status_json()
    crm = next(c for c in report["connections"] if c["connection"] == "crm")
    assert crm["schedule"] == "every 5m" and crm["next_run_at"] > crm["last_run"]["started_at"]
    assert code == 0, report["needs_action"]

    async def an_hour_ago() -> None:
        from hub.inbox import Inbox
        from hub.store.schema import inbox, runs

        assert hub.hub is not None
        store = hub.hub.store
        await Inbox(store).add("shop", "d-1", b"{}", kind="profile")
        await Inbox(store).add("shop", "d-2", b"{}", kind="profile")
        earlier = utcnow() - timedelta(hours=1)
        async with store.begin() as db:
            await db.execute(update(runs).values(started_at=earlier, finished_at=earlier))
            await db.execute(update(inbox).values(received_at=earlier))
            await db.execute(
                update(inbox).where(inbox.c.delivery_id == "d-2").values(status="dead")
            )

    step(hub, an_hour_ago)
    code, report = status_json()
    assert code == 1
    found = actions(report)
    assert found[0][0] == "crm" and found[0][2] == "crmhub sync crm"
    assert "though scheduled every 5m: is the daemon (crmhub up) running?" in found[0][1]
    assert found[1:] == [
        (
            None,
            "1 webhook delivery(ies) given up on",
            "crmhub inbox --status dead",
            "crmhub inbox retry --all-dead",
        ),
        (
            None,
            found[2][1],
            "crmhub up",
            None,
        ),
    ]
    assert found[2][1].startswith("1 webhook delivery(ies) waiting, the oldest since")
    assert report["hub"]["inbox"]["pending"] == report["hub"]["inbox"]["dead"] == 1


def test_a_grant_that_dies_unused_shows_as_expiring_then_expired(
    hub: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hub.store.schema import tokens

    create_key_file(tmp_path / "crmhub.key")
    with (tmp_path / "crmhub.toml").open("a") as config:
        config.write('\n[connections.books]\nconnector = "memgrant"\nstore = "books"\n')
        config.write('mapping = "contact.toml"\n\n[connections.books.oauth]\n')
        config.write('client_id = "books-client"\nclient_secret = "books-secret"\n')
    monkeypatch.setattr(Setup, "open", _open_with(CONNECTORS))

    async def refreshed(days_ago: int) -> None:
        assert hub.hub is not None
        vault = TokenVault(hub.hub.store, load_keyring(tmp_path))
        if await vault.status("books") is None:
            await vault.put("books", "oauth2", {"access_token": "a", "refresh_token": "r"})
        async with hub.hub.store.begin() as db:
            await db.execute(
                update(tokens).values(refreshed_at=utcnow() - timedelta(days=days_ago))
            )

    step(hub, lambda: refreshed(10))
    code, report = status_json()
    books = next(c for c in report["connections"] if c["connection"] == "books")
    assert books["credentials"]["status"] == "ok" and books["credentials"]["lapses_at"]
    assert code == 0, report["needs_action"]

    step(hub, lambda: refreshed(55))
    code, report = status_json()
    assert code == 1
    ((connection, what, command, then),) = actions(report)
    assert connection == "books" and command == "crmhub sync books" and then is None
    assert what.startswith("the grant lapses unused on ")
    books = next(c for c in report["connections"] if c["connection"] == "books")
    assert books["credentials"]["status"] == "expiring"

    step(hub, lambda: refreshed(61))
    code, report = status_json()
    assert code == 1
    ((connection, what, command, then),) = actions(report)
    assert what.startswith("the grant lapsed unused on ") and command == "crmhub connect books"
