"""A connection's ``schedule`` setting: ``every 5m`` or a five-field cron expression.

``every N<unit>`` runs every N seconds (``s``), minutes (``m``), hours (``h``) or days (``d``);
the first run is as soon as the daemon starts. A cron expression (``*/15 * * * *``: minute,
hour, day of month, month, day of week) runs at the matching times in the host's time zone.
A bad value is a :class:`~hub.errors.ConfigError` that names the connection and the value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from hub.errors import ConfigError

if TYPE_CHECKING:
    from apscheduler.abc import Trigger

    from hub.config import Config

__all__ = ["ScheduleSpec", "parse_schedule", "schedule_for"]

_EVERY = re.compile(r"^every\s+(\d+)\s*([a-z]+)$")
_UNITS = {
    "s": "seconds", "sec": "seconds", "second": "seconds", "seconds": "seconds",
    "m": "minutes", "min": "minutes", "minute": "minutes", "minutes": "minutes",
    "h": "hours", "hour": "hours", "hours": "hours",
    "d": "days", "day": "days", "days": "days",
}  # fmt: skip
_HELP = (
    "use 'every 30s', 'every 5m', 'every 2h', 'every 1d' or a cron expression like '*/15 * * * *'"
)


@dataclass(frozen=True)
class ScheduleSpec:
    """A parsed schedule. ``text`` is the normalised form, stable across restarts."""

    text: str
    interval: timedelta | None = None
    cron: str | None = None

    def trigger(self, start: datetime | None = None) -> Trigger:
        """A fresh APScheduler trigger; interval schedules fire first at ``start`` (now)."""
        if self.interval is not None:
            return IntervalTrigger(
                seconds=self.interval.total_seconds(), start_time=start or datetime.now(UTC)
            )
        assert self.cron is not None
        return CronTrigger.from_crontab(self.cron)

    def period(self) -> timedelta:
        """The gap between two consecutive runs (for cron: the next two matching times)."""
        if self.interval is not None:
            return self.interval
        trigger = self.trigger()
        first, second = trigger.next(), trigger.next()
        assert first is not None and second is not None
        return second - first


def parse_schedule(value: str, connection: str = "?") -> ScheduleSpec:
    """Parse ``value``; raise ``ConfigError`` naming ``connection`` when it is not valid."""
    text = " ".join(str(value).strip().lower().split())
    match = _EVERY.match(text)
    if match:
        count, unit = int(match.group(1)), match.group(2)
        if unit not in _UNITS:
            raise _bad(connection, value, f"unknown unit {unit!r}")
        if count <= 0:
            raise _bad(connection, value, "the interval must be at least 1")
        interval = timedelta(**{_UNITS[unit]: count})
        return ScheduleSpec(text=f"every {count}{_UNITS[unit][0]}", interval=interval)
    if text.startswith("every"):
        raise _bad(connection, value, "not an interval")
    fields = text.split()
    if len(fields) != 5:
        raise _bad(connection, value, f"a cron expression has 5 fields, got {len(fields)}")
    try:
        trigger = CronTrigger.from_crontab(text)
    except ValueError as exc:
        raise _bad(connection, value, f"bad cron expression: {exc}") from None
    if trigger.next() is None or trigger.next() is None:
        raise _bad(connection, value, "it never matches a date")
    return ScheduleSpec(text=text, cron=text)


def schedule_for(config: Config, name: str) -> ScheduleSpec | None:
    """The schedule of connection ``name``, or ``None`` when it has none or is disabled.

    Errors point at the ``schedule`` key's line in the configuration file.
    """
    conn = config.connection(name)
    if not conn.hub.enabled or not conn.hub.schedule:
        return None
    try:
        return parse_schedule(conn.hub.schedule, name)
    except ConfigError as exc:
        message = exc.problems[0].message
        raise ConfigError([config.problem(message, ["connections", name], "schedule")]) from None


def _bad(connection: str, value: str, why: str) -> ConfigError:
    return ConfigError(
        f"connection {connection!r}: schedule {value!r} is not valid ({why}); {_HELP}"
    )
