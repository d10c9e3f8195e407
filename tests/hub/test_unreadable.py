"""What a run cannot read is said: records a connector could not read (``Page.problems``)
are listed among the run's errors, counted, and never a reason to take a linked record for
deleted; a stream without its mapping names the setting to give one. SQLite and
PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.config import load_config
from hub.connector import Cursor, Page, Stream
from hub.engine import sync_connection
from hub.errors import ConfigError
from hub.registry import Registry
from hub.runtime import Hub
from hub.testing.memory import MemoryConnector
from tests.hub.enginekit import Setup


class Unreadable(MemoryConnector):
    """The memory connector, with an answer that hides a record it cannot read."""

    problems: list[str] = []

    async def pull(self, stream: Stream, cursor: Cursor | None) -> AsyncIterator[Page]:
        async for page in super().pull(stream, cursor):
            if Unreadable.problems:
                hidden = [r for r in page.records if r.data.get("email") == "bo@x.com"]
                page.records = [r for r in page.records if r not in hidden]
                page.problems.extend(Unreadable.problems)
            yield page


async def test_an_unreadable_record_is_reported_and_its_absence_deletes_nothing(
    tmp_path: Path, db_url: str
) -> None:
    setup = Setup(tmp_path, db_url, ["crm"])
    crm = setup.remotes["crm"]
    crm.add({"email": "ann@x.com"})
    crm.add({"email": "bo@x.com"})
    config = load_config(tmp_path / "crmhub.toml")
    setup.hub = hub = await Hub.open(config, Registry.discover(extra={"memory": Unreadable}))
    try:
        assert (await sync_connection(hub, "crm", full=True)).status == "ok"
        Unreadable.problems = ["GET /people?page=1: record 2 has no id at $.id"]
        report = await sync_connection(hub, "crm", full=True)  # a complete listing
        assert report.counts["records_unreadable"] == 1
        assert report.errors == ["crm records: GET /people?page=1: record 2 has no id at $.id"]
        emails = sorted(e["fields"]["email"] for e in await setup.entities())
        assert emails == ["ann@x.com", "bo@x.com"]  # bo was not seen, but is not deleted
        Unreadable.problems = []
        report = await sync_connection(hub, "crm", full=True)
        assert report.status == "ok" and not report.errors
    finally:
        Unreadable.problems = []
        await setup.close()


async def test_a_stream_without_its_default_mapping_says_which_and_how_to_name_one(
    tmp_path: Path, db_url: str
) -> None:
    setup = Setup(tmp_path, db_url, ["crm"])
    text = (tmp_path / "crmhub.toml").read_text()
    text = text.replace('mapping = "contact.toml"', 'streams = { people = "contact" }')
    (tmp_path / "crmhub.toml").write_text(text)
    await setup.open()
    try:
        assert setup.hub is not None
        with pytest.raises(ConfigError) as caught:
            await sync_connection(setup.hub, "crm")
        said = str(caught.value)
        assert "[connections.crm]: stream 'people' has no mapping: the connector's" in said
        assert 'mapping = { people = "FILE" }' in said
    finally:
        await setup.close()
