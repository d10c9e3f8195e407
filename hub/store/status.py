"""The statuses of runs, owed writes and webhook deliveries.

They are ``StrEnum`` members: stored as their text, equal to it, and the only names the
code uses for them.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """A run of one connection (``runs.status``)."""

    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    HELD = "held"
    """Pulled and merged; the deletions it saw wait for ``crmhub runs approve``."""
    SUPERSEDED = "superseded"
    """Was held; a later held run of its connection saw the records as they are now."""
    THROTTLED = "throttled"
    """The provider refused more calls; ``runs.throttled_until`` says until when."""
    INTERRUPTED = "interrupted"
    """Stopped (the daemon shut down) or found still running after its process died."""
    SKIPPED = "skipped"
    """Not started (reported, never stored): the connection is throttled."""
    PLAN = "plan"
    """A ``--plan`` run (reported, never stored)."""


UNFINISHED = (RunStatus.RUNNING, RunStatus.INTERRUPTED)
"""A run in one of these did not end: its connection is resumed at the daemon's start."""
ENDED = tuple(s for s in RunStatus if s not in UNFINISHED)
"""A run in one of these ended, well or not."""
READ_ALL = (RunStatus.OK, RunStatus.HELD)
"""A run in one of these read everything its connection had when it started."""


class OutboxStatus(StrEnum):
    """An owed write (``outbox.status``)."""

    PENDING = "pending"
    DONE = "done"
    DEAD = "dead"
    """Given up on (a permanent refusal, or retries exhausted): ``crmhub outbox retry``."""


class InboxStatus(StrEnum):
    """A webhook delivery (``inbox.status``)."""

    PENDING = "pending"
    DONE = "done"
    DEAD = "dead"
    MALFORMED = "malformed"
    """Authentic but unreadable: kept, never processed."""
