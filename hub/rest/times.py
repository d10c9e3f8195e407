"""Times as APIs write them: ISO 8601, Unix seconds or milliseconds, or a strptime pattern.

Reading always gives an aware datetime (times written without an offset take the declared
time zone); writing gives the form the API expects in a request.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from email.utils import format_datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["check_format", "formatter", "parser", "precision", "zone"]

NAMED = ("iso", "epoch", "epoch_ms")


def check_format(fmt: str) -> None:
    """Raise ``ValueError`` for a format that is neither named nor a strptime pattern."""
    if fmt not in NAMED and "%" not in fmt:
        raise ValueError(
            f"unknown time format {fmt!r} (valid: {', '.join(NAMED)}, or a strptime pattern "
            "like '%Y-%m-%d %H:%M:%S')"
        )


@lru_cache(maxsize=64)
def zone(name: str) -> tzinfo:
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (an IANA name like 'Europe/Berlin')"
        ) from None


def parser(fmt: str, tz: str = "UTC") -> Callable[[Any], datetime | None]:
    """A function reading one value in ``fmt``; unreadable or empty values give ``None``."""
    local = zone(tz)

    def aware(moment: datetime) -> datetime:
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=local)

    if fmt == "iso":
        from_iso = datetime.fromisoformat

        def read_iso(value: Any) -> datetime | None:
            if type(value) is not str:
                return None
            try:
                moment = from_iso(value)
            except ValueError:
                return None
            return moment if moment.tzinfo is not None else moment.replace(tzinfo=local)

        return read_iso
    if fmt in ("epoch", "epoch_ms"):
        scale = 1000.0 if fmt == "epoch_ms" else 1.0

        def read_epoch(value: Any) -> datetime | None:
            try:
                number = float(value)
            except (TypeError, ValueError):
                return None
            return datetime.fromtimestamp(number / scale, UTC)

        return read_epoch

    def read_pattern(value: Any) -> datetime | None:
        if not isinstance(value, str) or not value:
            return None
        try:
            return aware(datetime.strptime(value, fmt))
        except ValueError:
            return None

    return read_pattern


def formatter(fmt: str, tz: str = "UTC") -> Callable[[datetime], Any]:
    """A function writing an aware datetime in ``fmt`` (``http_date`` for headers)."""
    local = zone(tz)
    if fmt == "iso":
        return lambda moment: _iso(moment)
    if fmt == "epoch":
        return lambda moment: int(moment.timestamp())
    if fmt == "epoch_ms":
        return lambda moment: int(moment.timestamp() * 1000)
    if fmt == "http_date":
        return lambda moment: format_datetime(moment.astimezone(UTC), usegmt=True)
    return lambda moment: moment.astimezone(local).strftime(fmt)


def precision(fmt: str) -> timedelta:
    """The smallest step a time written in ``fmt`` can show."""
    if fmt == "epoch_ms":
        return timedelta(milliseconds=1)
    if fmt == "iso":
        return timedelta(microseconds=1)
    if fmt in ("epoch", "http_date") or "%f" not in fmt:
        return timedelta(seconds=1)
    return timedelta(microseconds=1)


def _iso(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    spec = "microseconds" if moment.microsecond else "seconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")
