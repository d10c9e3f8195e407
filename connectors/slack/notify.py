"""Notifications to the team: hub events posted to Slack channels by rules.

A rule (``[[connections.NAME.notify]]``: ``name``, ``on``, ``channel``, optional
``connections`` and ``text``) posts one Block Kit message per event:

- ``new_contact``: a contact created from one of ``connections`` (a web form's connection:
  a new lead), with its name, e-mail address and company;
- ``conflict``: a field held for a person to settle (``crmhub conflicts``);
- ``needs_reauth``: a connection whose credentials were refused (``crmhub connect NAME``);
- ``held_run``: a run that stopped before deleting more than the guard allows;
- ``dead_letter``: a write the hub gave up on (``crmhub outbox``).

Events are read from the hub (``ConnectionServices.events``, :mod:`hub.events`), where the
engine records them anyway, so whichever process made them, the daemon's upkeep turn
(every minute, one node at a time) finds them. The
state kept between turns is the time looked up to and the keys of what was posted, so a
row committed late (its time stamped before it committed) is still seen once and nothing
is posted twice. A first turn starts from now: the past is not announced. ``chat.postMessage``
is sent at most once a second per channel (Slack's limit).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from hub.errors import ConnectorError, NeedsReauth, RateLimited, TransientError
from hub.events import Event

if TYPE_CHECKING:
    from connectors.slack.connector import SlackConnector
    from connectors.slack.settings import NotifyRule
    from hub.services import ConnectionServices

__all__ = ["Event", "Notifier", "render", "sample_event"]

log = logging.getLogger("crmhub.slack.notify")

LOOKBACK = timedelta(seconds=30)
TITLES = {
    "new_contact": "New lead",
    "conflict": "A conflict to settle",
    "needs_reauth": "A connection needs reconnecting",
    "held_run": "A sync is held for approval",
    "dead_letter": "A write was given up",
}


def render(rule: NotifyRule, event: Event) -> tuple[str, list[dict[str, Any]]]:
    """The message's fallback text and its Block Kit blocks."""
    title = TITLES[event.kind]
    summary = ", ".join(f"{k}: {v}" for k, v in event.facts.items())
    text = f"{title} ({event.connection}): {summary}" if event.connection else f"{title}: {summary}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title}},
    ]
    if rule.text:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": rule.text}})
    fields = [
        {"type": "mrkdwn", "text": f"*{k}*\n{_escape(str(v))}"} for k, v in event.facts.items()
    ]
    if fields:
        blocks.append({"type": "section", "fields": fields[:10]})
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"crmhub · {event.connection or 'hub'} · rule {rule.name}",
                }
            ],
        }
    )
    return text, blocks


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def sample_event(kind: str) -> Event:
    """A made-up event of ``kind``, for ``crmhub slack test RULE``."""
    facts = {
        "new_contact": {
            "Name": "Ada Example",
            "E-mail": "ada@example.com",
            "Company": "Example Ltd",
        },
        "conflict": {
            "Field": "phone",
            "In the hub": "+44 20 7946 0000",
            "In crm": "+44 20 7946 0001",
        },
        "needs_reauth": {"Connection": "crm", "Fix with": "crmhub connect crm"},
        "held_run": {"Connection": "crm", "Why": "12 deletions, more than the guard allows"},
        "dead_letter": {"Connection": "crm", "Why": "the provider refused the e-mail address"},
    }[kind]
    return Event(
        kind, f"test:{kind}", datetime.now(UTC), "test", {**facts, "Note": "a test message"}
    )


class Notifier:
    """Posts the events of each rule since the last turn (see the module)."""

    def __init__(self, connector: SlackConnector, services: ConnectionServices) -> None:
        self.connector = connector
        self.services = services

    def matches(self, rule: NotifyRule, event: Event) -> bool:
        return rule.on == event.kind and (
            not rule.connections or event.connection in rule.connections
        )

    async def run(self, state: dict[str, Any]) -> dict[str, Any]:
        now = datetime.now(UTC)
        if "since" not in state:
            return {"since": now.isoformat(), "sent": []}
        since = datetime.fromisoformat(str(state["since"]))
        sent: set[str] = set(state.get("sent") or [])
        rules = self.connector.settings.notify
        api = self.connector.api()
        posted_up_to = now
        for event in await self.services.events(since - LOOKBACK):
            held = False
            for rule in (r for r in rules if self.matches(r, event)):
                key = f"{event.key}>{rule.name}"
                if key in sent:
                    continue
                try:
                    text, blocks = render(rule, event)
                    await api.post_message(rule.channel, text, blocks)
                except (TransientError, RateLimited, NeedsReauth) as exc:
                    # Slack cannot take it now: this and what follows wait for the next turn
                    log.warning("Slack notification %s waits: %s", key, exc)
                    held = True
                    break
                except ConnectorError as exc:
                    # the rule cannot be posted as it is (an unknown channel, the bot not in
                    # it): said in the log, and not tried again for this event
                    log.warning("Slack notification %s not posted: %s", key, exc)
                sent.add(key)
            if held:
                posted_up_to = min(posted_up_to, event.at)
                break
        horizon = posted_up_to - LOOKBACK * 2
        recent = {e.key for e in await self.services.events(horizon)}
        keep = sorted(k for k in sent if k.partition(">")[0] in recent)
        return {"since": posted_up_to.isoformat(), "sent": keep}
