"""The connector contract on the Slack sandbox: the people stream and the messages stream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.slack import SlackConnector
from connectors.slack.sandbox import SANDBOX_BOT_TOKEN, SlackSandboxApp, create_sandbox
from connectors.slack.sandbox_workspace import SHARED_CHANNEL, TEAM
from connectors.slack.settings import SlackSettings
from hub.connector import ConnectorContext, Stream
from hub.sandbox import serve_sandbox
from hub.testing import static_credentials
from hub.testing.contract import ConnectorContract


@pytest.fixture
def empty() -> Iterator[tuple[SlackSandboxApp, str]]:
    app = create_sandbox(seed=5, size=0, customers=0)
    url, server = serve_sandbox(app)
    try:
        yield app, url
    finally:
        server.stop()


def slack_connector(url: str, tmp_path: Path, **settings: Any) -> SlackConnector:
    values = {
        "api_url": f"{url}/api",
        "channels": [SHARED_CHANNEL],
        "own_team": TEAM,
        "page_size": 5,
        "tier2_per_minute": 600,
        "tier3_per_minute": 600,
        "tier4_per_minute": 600,
        **settings,
    }
    context = ConnectorContext(
        "team", tmp_path, credentials=static_credentials(access_token=SANDBOX_BOT_TOKEN)
    )
    return SlackConnector(SlackSettings(**values), context)


class SlackContract(ConnectorContract):
    @pytest.fixture
    async def connector(
        self, empty: tuple[SlackSandboxApp, str], tmp_path: Path
    ) -> AsyncIterator[SlackConnector]:
        connector = slack_connector(empty[1], tmp_path)
        connector.sandbox = empty[0]  # type: ignore[attr-defined]
        yield connector
        await connector.aclose()

    async def throttle(self, connector: Any, times: int) -> float | None:
        # two answers: a short wait, retried; fifty: a wait past what a run sleeps for
        connector.sandbox.provider.retry_after = 1 if times <= 2 else 600
        connector.sandbox.set_faults(burst_429=times)
        return float(connector.sandbox.provider.retry_after)


class TestSlackPeopleContract(SlackContract):
    stream_name = "users"

    async def seed(self, connector: Any, records: list[dict[str, Any]]) -> None:
        for r in records:
            connector.sandbox.provider.join(r["first_name"], r["last_name"], r["email"])

    async def remote_records(self, connector: Any) -> list[dict[str, Any]]:
        return [
            {"email": m["profile"]["email"], "first_name": m["profile"]["first_name"]}
            for m in connector.sandbox.provider.workspace.users.values()
            if m["profile"].get("email") and not m["deleted"]
        ]

    def _user(self, connector: Any, identity: str) -> str:
        users = connector.sandbox.provider.workspace.users
        return next(u for u, m in users.items() if m["profile"].get("email") == identity)

    async def edit_remotely(self, connector: Any, identity: str, changes: dict[str, Any]) -> None:
        connector.sandbox.provider.edit_user(self._user(connector, identity), **changes)

    async def delete_remotely(self, connector: Any, identity: str) -> None:
        connector.sandbox.provider.workspace.deactivate(self._user(connector, identity))


class TestSlackMessagesContract(SlackContract):
    stream_name = "messages"
    remote_edits = False  # Slack's history by `oldest` does not list edited messages again

    def sample(self, stream: Stream, i: int) -> dict[str, Any]:
        return {"text": f"Contract message {i}"}

    def identity(self, stream: Stream, data: dict[str, Any]) -> str:
        return str(data.get("text") or "")

    async def seed(self, connector: Any, records: list[dict[str, Any]]) -> None:
        slack = connector.sandbox.provider
        author = slack.join("Contract", "Author", "author@example.com")["id"]
        for r in records:
            slack.say(author, r["text"])

    async def remote_records(self, connector: Any) -> list[dict[str, Any]]:
        messages = connector.sandbox.provider.workspace.messages[SHARED_CHANNEL]
        return [{"text": m["text"]} for m in messages.values()]


async def pulled(connector: SlackConnector, stream: str) -> list[Any]:
    from hub.testing.contract import pull_pages, records_of

    try:
        return records_of(await pull_pages(connector, connector.stream(stream), None))
    finally:
        await connector.aclose()


async def test_people_without_an_address_come_only_by_name_when_asked(tmp_path: Path) -> None:
    app = create_sandbox(seed=6, size=4, customers=0)
    app.provider.bot_scopes = "users:read,channels:history,chat:write"  # no users:read.email
    url, server = serve_sandbox(app)
    try:
        assert await pulled(slack_connector(url, tmp_path), "users") == []
        by_name = await pulled(slack_connector(url, tmp_path, match_by_name=True), "users")
    finally:
        server.stop()
    staff = app.provider.workspace.staff()
    assert sorted(r.id for r in by_name) == sorted(staff)  # no bot, no Slackbot
    names = {r.data["first_name"] + " " + r.data["last_name"] for r in by_name}
    assert names == {app.provider.workspace.users[u]["real_name"] for u in staff}
    assert all(r.data["email"] is None for r in by_name)


async def test_a_first_sync_stopped_after_any_page_resumes_without_losing_a_message(
    tmp_path: Path,
) -> None:
    import json

    app = create_sandbox(seed=7, size=3, customers=1)
    slack = app.provider
    staff = slack.workspace.staff()
    texts = []
    for i in range(7):
        first = slack.say(staff[i % 3], f"question {i}")
        texts.append(f"question {i}")
        if i % 2 == 0:
            for r in range(3):
                slack.say(staff[(i + r) % 3], f"answer {i}.{r}", thread_ts=first["ts"])
                texts.append(f"answer {i}.{r}")
    url, server = serve_sandbox(app)
    try:
        connector = slack_connector(url, tmp_path, page_size=2)
        stream = connector.stream("messages")
        pages, frozen = [], []
        async for page in connector.pull(stream, None):
            pages.append(page)
            frozen.append(json.dumps(page.cursor, sort_keys=True))
        await connector.aclose()
        # a cursor handed over is never changed afterwards (the engine may store it later)
        assert [json.dumps(p.cursor, sort_keys=True) for p in pages] == frozen
        for k in range(len(pages)):
            before = {r.data["text"] for p in pages[: k + 1] for r in p.records}
            resumed = slack_connector(url, tmp_path, page_size=2)
            after = {
                r.data["text"]
                async for p in resumed.pull(stream, json.loads(frozen[k]))
                for r in p.records
            }
            await resumed.aclose()
            assert before | after == set(texts), f"stopped after page {k + 1}"
    finally:
        server.stop()
