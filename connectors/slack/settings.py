"""The settings of a Slack connection (``[connections.NAME]`` with ``connector = "slack"``)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

__all__ = ["EVENTS", "NotifyRule", "SlackSettings"]

_CHANNEL = re.compile(r"^[CGD][A-Z0-9]{2,}$")

EVENTS = ("new_contact", "conflict", "needs_reauth", "held_run", "dead_letter")
"""What a notification rule can be about (``on``)."""
Event = Literal["new_contact", "conflict", "needs_reauth", "held_run", "dead_letter"]


def _channel_id(value: str) -> str:
    if not _CHANNEL.match(value):
        raise ValueError(
            f"{value!r} is not a Slack channel id (like C0123ABCD: right-click the channel, "
            "View channel details, the id is at the bottom)"
        )
    return value


class NotifyRule(BaseModel):
    """``[[connections.NAME.notify]]``: post to ``channel`` when ``on`` happens in the hub."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    """Names the rule in ``crmhub slack test RULE`` and in logs."""
    on: Event
    channel: str
    connections: list[str] = []
    """Only events of these connections (the form connection a lead came from, the
    connection a conflict, re-authorisation, held run or dead letter belongs to); default
    all."""
    text: str = ""
    """A line put above the details (Slack mrkdwn)."""

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        return _channel_id(value)


class SlackSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_url: str = "https://slack.com/api"
    """Where the Web API answers (a sandbox: ``http://127.0.0.1:8805/api``)."""
    channels: list[str] = []
    """Channel ids whose messages become activities (shared Slack Connect channels with
    customers); none by default. The bot must be a member of each."""
    match_by_name: bool = False
    """People without an e-mail address are taken too, and matched to the one contact of
    the same first and last name (a new contact when none or several have it)."""
    own_team: str | None = None
    """The workspace's team id; messages of people of other teams (Slack Connect) are
    ``in``, the others ``out``. Default: read with ``auth.test``."""
    page_size: int = Field(200, ge=1, le=200)
    """``limit`` of each listing call (Slack: at most 200 recommended)."""
    thread_days: int = Field(14, ge=0, le=365)
    """New replies in threads started up to this many days ago are read again."""
    history_days: int = Field(90, ge=1, le=3650)
    """How far back the first sync reads a channel."""
    tier2_per_minute: float = Field(20, gt=0)
    tier3_per_minute: float = Field(50, gt=0)
    tier4_per_minute: float = Field(100, gt=0)
    signing_secret: SecretStr | None = None
    """The app's signing secret (Basic Information > App Credentials); enables the Events
    API receiver at ``/hooks/<connection>``."""
    notify: list[NotifyRule] = []

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: list[str]) -> list[str]:
        return [_channel_id(v) for v in value]

    @field_validator("api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("api_url must be an http(s) URL, like https://slack.com/api")
        return value.rstrip("/")

    @field_validator("notify")
    @classmethod
    def _unique(cls, value: list[NotifyRule]) -> list[NotifyRule]:
        names = [r.name for r in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"notification rule names must be unique: {', '.join(twice)}")
        return value
