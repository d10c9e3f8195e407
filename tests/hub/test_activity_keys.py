"""Activities are matched by their RFC 5322 Message-ID: the same message seen by two
mailboxes is one activity, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from hub.records import match_keys, normalize_message_id
from tests.hub.enginekit import Setup, links

ACTIVITY_MAPPING = """\
entity = "activity"

[[field]]
canonical = "subject"
remote = "subject"

[[field]]
canonical = "message_id"
remote = "message_id"

[[field]]
canonical = "thread_id"
remote = "thread_id"

[[field]]
canonical = "direction"
remote = "direction"
"""


def test_message_ids_are_kept_without_brackets_in_lower_case() -> None:
    assert normalize_message_id(" <CAF+x1@Mail.Example.COM> ") == "caf+x1@mail.example.com"
    assert normalize_message_id("abc@example.com") == "abc@example.com"
    assert normalize_message_id("<>") is None and normalize_message_id(None) is None
    keys = match_keys("activity", {"message_id": "<A@B.example>", "subject": "Hi"})
    assert keys == [("message_id", "a@b.example")]
    assert match_keys("activity", {"subject": "no id"}) == []


async def test_one_message_in_two_mailboxes_is_one_activity(tmp_path: Path, db_url: str) -> None:
    per = {n: 'entity = "activity"\n' for n in ("alice", "bob")}
    setup = Setup(tmp_path, db_url, ["alice", "bob"], per_connection=per)
    (tmp_path / "contact.toml").write_text(ACTIVITY_MAPPING)  # the mapping both connections use
    setup.remotes["alice"].add(
        {"subject": "Quote", "message_id": "<Q1@Mail.Example>", "direction": "out"}
    )
    setup.remotes["bob"].add(
        {"subject": "Quote", "message_id": "q1@mail.example", "direction": "in"}
    )
    setup.remotes["bob"].add({"subject": "Other", "message_id": "<q2@mail.example>"})
    await setup.open()
    try:
        await setup.sync("alice")
        await setup.sync("bob")
        found = [e for e in await setup.entities() if e["type"] == "activity"]
        assert sorted(e["fields"]["subject"] for e in found) == ["Other", "Quote"]
        # the second mailbox's copy linked to the first one's activity, no duplicate
        assert await setup.count(links, connection="bob") == 2
        assert await setup.count(links) == 3
    finally:
        await setup.close()
