"""What Zendesk's declaration cannot say: which users are contacts, and comments out of
ticket events. Both are record transforms (``transform = "connectors.zendesk.hooks:..."``)."""

from __future__ import annotations

from typing import Any

__all__ = ["comment", "end_users"]


def end_users(user: dict[str, Any]) -> dict[str, Any] | None:
    """End users are the customers; agents and admins are the account's own people."""
    return user if user.get("role", "end-user") == "end-user" else None


def comment(event: dict[str, Any]) -> dict[str, Any] | None:
    """The comment of one ticket update (the ``comment_events`` sideload puts it among the
    update's ``child_events``) as a record of its own, or ``None`` for updates without one.

    The comment's id names it; its ticket says whose timeline it belongs on (the mapping
    reads the requester and organization through the hub's ticket: the export names
    neither), whoever wrote it.
    """
    found = next(
        (c for c in event.get("child_events") or [] if c.get("event_type") == "Comment"), None
    )
    if found is None or found.get("id") is None:
        return None
    ticket = event.get("ticket_id")
    return {
        "id": found["id"],
        "ticket_id": ticket,
        "author_id": found.get("author_id"),
        "subject": f"Zendesk ticket #{ticket}",
        "body": found.get("body"),
        "public": found.get("public"),
        "created_at": found.get("created_at") or event.get("created_at"),
        "kind": "ticket_comment",
        "source": "zendesk",
        "thread": f"zendesk:ticket:{ticket}",
    }
