"""Built-in value-format transforms: phone, email, date, datetime, money, decimal, bool.

Each turns the many ways a remote system writes a value into one hub form, so equal values
compare equal: phones in E.164, emails normalised, dates ``YYYY-MM-DD``, datetimes ISO-8601
in UTC (``2024-05-01T12:30:00Z``), amounts as plain decimal strings (``"12.50"``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import UTC, date, datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hub.mapping.registry import BuildContext, Step, TransformError, identity
from hub.mapping.registry import register_transform as transform
from hub.mapping.transforms import text_of
from hub.records import normalize_email, normalize_phone

# -- phone and email -------------------------------------------------------------------

_PHONE_FORMATS = {
    "international": phonenumbers.PhoneNumberFormat.INTERNATIONAL,
    "national": phonenumbers.PhoneNumberFormat.NATIONAL,
}


# Parsing a number costs tens of microseconds and the same numbers come back every sync.
_e164 = lru_cache(maxsize=65536)(normalize_phone)


class PhoneParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    region: str | None = None
    """Region for numbers without a country code (``GB``); defaults to the hub's."""
    format: Literal["e164", "international", "national"] = "e164"
    """How push writes the number."""
    keep_invalid: bool = False
    """Keep text that is not a phone number as it is instead of reporting it."""

    @field_validator("region")
    @classmethod
    def _known_region(cls, value: str | None) -> str | None:
        if value is not None and value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a phone region (use a code like 'GB' or 'US')")
        return value.upper() if value else None


@transform("phone", PhoneParams)
def phone(params: PhoneParams, ctx: BuildContext) -> Step:
    """Phone number -> E.164 ("+14155550100"); `region` for numbers without country code."""
    region = params.region or ctx.phone_region
    keep = params.keep_invalid

    def pull(value: Any) -> Any:
        text = text_of(value).strip()
        number = _e164(text, region)
        if number is not None:
            return number
        if keep:
            return text
        hint = "" if region or text.startswith("+") else " (no region set for local numbers)"
        raise TransformError(f"bad phone number {value!r}{hint}")

    push: Callable[[Any], Any] = identity
    style = _PHONE_FORMATS.get(params.format)
    if style is not None:

        def push(value: Any) -> Any:
            try:
                return phonenumbers.format_number(phonenumbers.parse(value, region), style)
            except phonenumbers.NumberParseException:
                return value

    return Step(pull=pull, push=push)


class KeepParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keep_invalid: bool = False


@transform("email", KeepParams)
def email(params: KeepParams, ctx: BuildContext) -> Step:
    """Email address -> trimmed, lower-case, IDNA domain; non-addresses are reported."""
    keep = params.keep_invalid

    def pull(value: Any) -> Any:
        address = normalize_email(text_of(value))
        if address is not None:
            return address
        if keep:
            return text_of(value).strip()
        raise TransformError(f"bad email address {value!r}")

    return Step(pull=pull, push=identity)


# -- dates and times -------------------------------------------------------------------

_DATE_FORMATS = (
    "%Y/%m/%d",
    "%Y.%m.%d",
    "%d.%m.%Y",
    "%d %b %Y",
    "%d %B %Y",
    "%b %d %Y",
    "%B %d %Y",
    "%b %d, %Y",
    "%B %d, %Y",
)
_EPOCH = re.compile(r"^-?\d+(\.\d+)?$")


class DateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: str | list[str] | None = None
    """strftime format(s) the remote writes, tried first on pull; push writes the first."""

    @field_validator("format")
    @classmethod
    def _formats(cls, value: str | list[str] | None) -> str | list[str] | None:
        for fmt in [value] if isinstance(value, str) else value or []:
            if "%" not in fmt:
                raise ValueError(f"{fmt!r} has no %-directive (e.g. '%d/%m/%Y')")
        return value

    @property
    def formats(self) -> tuple[str, ...]:
        return (self.format,) if isinstance(self.format, str) else tuple(self.format or ())


def _strptime(text: str, formats: tuple[str, ...]) -> datetime | None:
    for fmt in formats:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


@transform("date", DateParams)
def date_(params: DateParams, ctx: BuildContext) -> Step:
    """Date -> ISO "YYYY-MM-DD" from ISO and common formats; `format` for the remote's own."""
    own = params.formats
    out = own[0] if own else None

    def pull(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.date().isoformat()
        if isinstance(value, date):
            return value.isoformat()
        text = text_of(value).strip()
        parsed = _strptime(text, own)
        if parsed is not None:
            return parsed.date().isoformat()
        try:
            return date.fromisoformat(text).isoformat()
        except ValueError:
            pass
        try:
            return datetime.fromisoformat(text).date().isoformat()
        except ValueError:
            pass
        parsed = _strptime(text, _DATE_FORMATS)
        if parsed is None:
            raise TransformError(f"bad date {value!r}")
        return parsed.date().isoformat()

    def push(value: Any) -> Any:
        return date.fromisoformat(value).strftime(out) if out else value

    return Step(pull=pull, push=push)


class DatetimeParams(DateParams):
    timezone: str = "UTC"
    """Zone of remote times written without an offset; push with `format` writes in it."""
    unit: Literal["s", "ms"] | None = None
    """Unit of numeric (Unix epoch) input; when set, push writes epoch numbers too."""

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone (e.g. 'Europe/London')") from None
        return value


def iso_utc(moment: datetime) -> str:
    """The hub form of an aware datetime: ``2024-05-01T12:30:00Z`` (microseconds if any)."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}"
    return text + "Z"


@transform("datetime", DatetimeParams)
def datetime_(params: DatetimeParams, ctx: BuildContext) -> Step:
    """Date and time -> ISO-8601 in UTC; naive input is read in `timezone` (default UTC)."""
    own = params.formats
    zone: tzinfo = ZoneInfo(params.timezone)
    scale = 1000 if params.unit == "ms" else 1

    def parse(value: Any) -> datetime:
        if isinstance(value, datetime):
            moment = value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value / scale, UTC)
        else:
            text = text_of(value).strip()
            found = _strptime(text, own) or _iso_or_rfc(text)
            if found is None and _EPOCH.match(text):
                return datetime.fromtimestamp(float(text) / scale, UTC)
            if found is None:
                raise TransformError(f"bad date-time {value!r}")
            moment = found
        return moment if moment.tzinfo else moment.replace(tzinfo=zone)

    def pull(value: Any) -> Any:
        return iso_utc(parse(value))

    def push(value: Any) -> Any:
        moment = parse(value)
        if own:
            return moment.astimezone(zone).strftime(own[0])
        if params.unit:
            stamp = moment.timestamp() * scale
            return int(stamp) if stamp == int(stamp) else stamp
        return value

    return Step(pull=pull, push=push)


def _iso_or_rfc(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    try:  # RFC 2822, as in mail headers: "Tue, 01 May 2024 12:30:00 +0100"
        return parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None


# -- numbers ---------------------------------------------------------------------------

_GROUPED = re.compile(r"^[-+]?\d{1,3}(,\d{3})+(\.\d*)?$")


class DecimalParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    places: int | None = Field(None, ge=0, le=12)
    """Round (half up) to this many decimal places; unset keeps the value's own."""
    decimal_comma: bool = False
    """The remote writes ``1.234,50``: ``,`` marks decimals and ``.`` groups thousands."""
    output: Literal["string", "number"] = "string"
    """What push writes: the hub's decimal string, or a JSON number."""


class MoneyParams(DecimalParams):
    places: int | None = Field(2, ge=0, le=12)


def _decimal_step(params: DecimalParams, currency: bool) -> Step:
    quantum = Decimal(1).scaleb(-params.places) if params.places is not None else None
    comma = params.decimal_comma

    def pull(value: Any) -> Any:
        if isinstance(value, bool):
            raise TransformError(f"bad number {value!r}")
        if isinstance(value, Decimal | int):
            number = Decimal(value)
        else:
            text = text_of(value).strip()
            if currency:
                text = "".join(ch for ch in text if unicodedata.category(ch) != "Sc").strip()
            text = text.replace(" ", "").replace("\u00a0", "")
            if comma:
                text = text.replace(".", "").replace(",", ".")
            elif "," in text:
                if not _GROUPED.match(text):
                    raise TransformError(f"bad number {value!r} (use decimal_comma for 1,50)")
                text = text.replace(",", "")
            try:
                number = Decimal(text)
            except InvalidOperation:
                raise TransformError(f"bad number {value!r}") from None
        if not number.is_finite():
            raise TransformError(f"bad number {value!r}")
        if quantum is not None:
            number = number.quantize(quantum, rounding=ROUND_HALF_UP)
        elif number == number.to_integral_value():
            number = number.quantize(Decimal(1))
        else:
            number = number.normalize()
        if not number:
            number = number.copy_abs()  # "-0.00" and "0.00" are the same amount
        return format(number, "f")

    push: Callable[[Any], Any] = identity
    if params.output == "number":

        def push(value: Any) -> Any:
            number = Decimal(value)
            return int(number) if number == number.to_integral_value() else float(number)

    return Step(pull=pull, push=push)


@transform("money", MoneyParams)
def money(params: MoneyParams, ctx: BuildContext) -> Step:
    """Amount -> decimal string with `places` (default 2): "$1,234.5" -> "1234.50"."""
    return _decimal_step(params, currency=True)


@transform("decimal", DecimalParams)
def decimal_(params: DecimalParams, ctx: BuildContext) -> Step:
    """Number -> normalised decimal string ("12.500" -> "12.5"); `places` rounds."""
    return _decimal_step(params, currency=False)


# -- booleans --------------------------------------------------------------------------

_TRUE = frozenset({"yes", "y", "true", "t", "1", "on"})
_FALSE = frozenset({"no", "n", "false", "f", "0", "off"})


class BoolParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    yes: str | int | bool = True
    """What push writes for true (and pull also reads as true), e.g. "Y"."""
    no: str | int | bool = False
    """What push writes for false (and pull also reads as false), e.g. "N"."""


@transform("bool", BoolParams)
def bool_(params: BoolParams, ctx: BuildContext) -> Step:
    """yes/no, true/false, 1/0, on/off (any case) -> true/false; push writes `yes`/`no`."""
    truthy = _TRUE | {str(params.yes).strip().casefold()}
    falsy = _FALSE | {str(params.no).strip().casefold()}
    yes, no = params.yes, params.no

    def pull(value: Any) -> Any:
        if isinstance(value, bool):
            return value
        key = str(value).strip().casefold()
        if key in truthy:
            return True
        if key in falsy:
            return False
        raise TransformError(f"bad yes/no value {value!r}")

    def push(value: Any) -> Any:
        return yes if pull(value) else no

    return Step(pull=pull, push=push)
