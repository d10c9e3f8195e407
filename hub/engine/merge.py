"""The three-way merge of one field: base B (the link's), remote R, hub H.

Pure functions, no I/O. ``MISSING`` marks "no value known" (a field the link has no base
for, or the hub has never held), which is different from an emptied field (``None``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from hub.config import Policy
from hub.records import MISSING


class Outcome(Enum):
    SAME = "same"  # nothing to do
    TAKE_REMOTE = "take_remote"  # hub := remote
    OWE_REMOTE = "owe_remote"  # the remote must get the hub's value (push)
    CONVERGED = "converged"  # both changed to the same value: base := value
    CONFLICT = "conflict"  # policy ``manual``: held on both sides until a person decides


@dataclass(frozen=True)
class FieldSide:
    """What a policy needs to know about one side: its value, when and by whom it was set."""

    value: Any
    at: datetime | None
    connection: str | None


def _empty(value: Any) -> bool:
    return value is MISSING or value is None


def merge_field(
    base: Any,
    remote: Any,
    hub: Any,
    *,
    policy: Policy,
    remote_side: FieldSide,
    hub_side: FieldSide,
    prefer: list[str],
) -> Outcome:
    """Decide one field. ``remote`` is never MISSING here: unknown remote fields are skipped."""
    if base is MISSING:
        # First sight of the pair: a value present on one side only is taken.
        if _empty(hub):
            return Outcome.SAME if _empty(remote) else Outcome.TAKE_REMOTE
        if remote is None:
            return Outcome.OWE_REMOTE
        if remote == hub:
            return Outcome.CONVERGED
        return resolve(policy, remote_side, hub_side, prefer)
    hub_value = None if hub is MISSING else hub
    remote_changed = remote != base
    hub_changed = hub_value != base
    if not remote_changed and not hub_changed:
        return Outcome.SAME
    if remote_changed and not hub_changed:
        return Outcome.TAKE_REMOTE
    if hub_changed and not remote_changed:
        return Outcome.OWE_REMOTE
    if remote == hub_value:
        return Outcome.CONVERGED
    return resolve(policy, remote_side, hub_side, prefer)


def resolve(policy: Policy, remote: FieldSide, hub: FieldSide, prefer: list[str]) -> Outcome:
    """Settle a true conflict by policy. Deterministic: never depends on arrival order."""
    if policy == "remote":
        return Outcome.TAKE_REMOTE
    if policy == "hub":
        return Outcome.OWE_REMOTE
    if policy == "manual":
        return Outcome.CONFLICT
    if policy == "prefer":
        rank = {name: i for i, name in enumerate(prefer)}
        r = rank.get(remote.connection or "", len(rank))
        h = rank.get(hub.connection or "", len(rank))
        if r != h:
            return Outcome.TAKE_REMOTE if r < h else Outcome.OWE_REMOTE
        # neither side is listed: fall through to ``newest``
    return _newest(remote, hub)


def _newest(remote: FieldSide, hub: FieldSide) -> Outcome:
    if remote.at is not None and hub.at is not None and remote.at != hub.at:
        return Outcome.TAKE_REMOTE if remote.at > hub.at else Outcome.OWE_REMOTE
    if remote.at is not None and hub.at is None:
        return Outcome.TAKE_REMOTE
    if hub.at is not None and remote.at is None:
        return Outcome.OWE_REMOTE
    # A tie: the side whose connection name sorts first wins, every time.
    r, h = remote.connection or "", hub.connection or ""
    return Outcome.TAKE_REMOTE if r <= h else Outcome.OWE_REMOTE
