"""The hub's golden records: entity types, their core fields and match keys.

Inside the engine a record's values are a flat ``dict[str, Value]`` of canonical field
names to JSON scalars (custom fields are named ``custom.<name>``). The pydantic models
below describe each entity's core fields for validation and documentation; the engine
keeps plain dicts on its hot path.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from enum import Enum
from typing import Any, Final

import idna
from pydantic import BaseModel, ConfigDict

from hub.kinds import ENTITY_TYPES as ENTITY_TYPES  # re-exported
from hub.kinds import EntityType as EntityType

Value = str | int | float | bool | None | list[str]


class Missing(Enum):
    MISSING = "missing"

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = Missing.MISSING
"""No value known: a field a record does not carry, a path a remote record lacks, a base
the link never saw. Not ``None``, which is a known empty value."""
Fields = dict[str, Any]


CUSTOM_PREFIX = "custom."
_ASCII_DOMAIN = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


class _Entity(BaseModel):
    model_config = ConfigDict(extra="forbid")
    custom: dict[str, Any] = {}


class Contact(_Entity):
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    company: str | None = None
    """Reference: the hub id of the contact's company."""
    job_title: str | None = None
    street: str | None = None
    city: str | None = None
    postal_code: str | None = None
    country: str | None = None
    consent: bool | None = None
    consent_source: str | None = None
    consent_at: str | None = None
    birthday: str | None = None
    tags: list[str] | None = None


class Company(_Entity):
    name: str | None = None
    domain: str | None = None
    phone: str | None = None
    street: str | None = None
    city: str | None = None
    postal_code: str | None = None
    country: str | None = None
    industry: str | None = None


class Activity(_Entity):
    kind: str | None = None
    subject: str | None = None
    body: str | None = None
    occurred_at: str | None = None
    contact_email: str | None = None
    contacts: list[str] | None = None
    """Reference: hub ids of the contacts concerned (every participant of an email)."""
    company: str | None = None
    """Reference: the hub id of the company concerned."""
    source: str | None = None
    direction: str | None = None
    """``in`` or ``out``: received by, or sent from, the system's own side (a mailbox)."""
    thread_id: str | None = None
    message_id: str | None = None
    """RFC 5322 Message-ID without angle brackets, lower case: the same message seen by two
    mailboxes is one activity."""


class Ticket(_Entity):
    subject: str | None = None
    description: str | None = None
    status: str | None = None
    priority: str | None = None
    requester_email: str | None = None
    requester: str | None = None
    """Reference: the hub id of the contact who asked."""
    organization: str | None = None
    """Reference: the hub id of the requester's company."""
    created_at: str | None = None
    updated_at: str | None = None


class Invoice(_Entity):
    number: str | None = None
    contact_email: str | None = None
    contact: str | None = None
    """Reference: the hub id of the contact or company billed."""
    status: str | None = None
    currency: str | None = None
    total: str | None = None
    amount_due: str | None = None
    issued_on: str | None = None
    due_on: str | None = None


ENTITY_MODELS: dict[str, type[_Entity]] = {
    "contact": Contact,
    "company": Company,
    "activity": Activity,
    "ticket": Ticket,
    "invoice": Invoice,
}


def core_fields(entity: str) -> frozenset[str]:
    """The canonical core field names of an entity type (custom fields excluded)."""
    return frozenset(name for name in ENTITY_MODELS[entity].model_fields if name != "custom")


def is_known_field(entity: str, field: str) -> bool:
    return field in core_fields(entity) or (
        field.startswith(CUSTOM_PREFIX) and len(field) > len(CUSTOM_PREFIX)
    )


# -- match keys ------------------------------------------------------------------------


def normalize_email(value: str | None) -> str | None:
    """Trim, lowercase, IDNA-encode the domain. ``None`` for blanks and non-addresses."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if not text or text.count("@") != 1:
        return None
    local, domain = text.split("@")
    if not local or not domain:
        return None
    if domain.isascii() and "xn--" not in domain:
        # The common case: an ASCII domain needs no IDNA round trip, only a sanity check.
        return f"{local}@{domain}" if _ASCII_DOMAIN.match(domain) else None
    try:
        domain = idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError:
        return None
    return f"{local}@{domain}"


def normalize_phone(value: str | None, region: str | None = None) -> str | None:
    """E.164 form of a phone number, or ``None`` when it cannot be read as one."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    if _E164.match(text):
        return text  # already canonical (the mapping's phone transform made it so)
    return _parse_phone(text, region)


@functools.lru_cache(maxsize=65536)
def _parse_phone(text: str, region: str | None) -> str | None:
    # imported on first use: its metadata is a good part of importing this module, which
    # code that never reads a phone number (a declared connector's pull) imports too
    import phonenumbers

    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_message_id(value: str | None) -> str | None:
    """An RFC 5322 Message-ID as crmhub keeps it: trimmed, without ``<>``, lower case."""
    if value is None:
        return None
    text = str(value).strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    return text.lower() or None


def normalize_domain(value: str | None) -> str | None:
    if value is None:
        return None
    text = str(value).strip().lower()
    for prefix in ("https://", "http://"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    text = text.split("/", 1)[0].removeprefix("www.")
    if not text:
        return None
    try:
        return idna.encode(text, uts46=True).decode("ascii")
    except idna.IDNAError:
        return None


MAX_KEY_LENGTH = 320
"""The longest key value ``entity_keys`` holds."""


def normalize_full_name(first: object, last: object) -> str | None:
    """A person's name as name matching compares it: ``"first last"``, case-folded, accents
    dropped, words separated by one space (``" José  DE la Cruz"`` -> ``"jose de la cruz"``).
    ``None`` when both parts are blank, or when the name is too long to be a key."""
    text = " ".join(str(part) for part in (first, last) if part is not None)
    if not text.isascii():
        decomposed = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in decomposed if not unicodedata.combining(c))
    key = " ".join(text.casefold().split())
    return key if key and len(key) <= MAX_KEY_LENGTH else None


# entity -> ordered (key kind, canonical field, normaliser); the first kind that matches wins.
MATCH_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "contact": (("email", "email"), ("phone", "phone")),
    # A company without a domain is known by its name (a spreadsheet's company column).
    "company": (("domain", "domain"), ("name", "name")),
    "invoice": (("number", "number"),),
    "ticket": (),
    "activity": (("message_id", "message_id"),),
}
FULL_NAME = "full_name"
"""A contact's name key (:func:`normalize_full_name` of its first and last name): kept for
every contact, weakest of its keys, and used to identify a record only for a stream that
opts in (:attr:`hub.connector.Stream.match_by_name`)."""
FULL_NAME_FIELDS = ("first_name", "last_name")
OPT_IN_KINDS = frozenset({FULL_NAME})
"""Key kinds that identify a record only for the streams that opt in to them."""
KEY_FIELDS = frozenset(field for keys in MATCH_KEYS.values() for _, field in keys).union(
    FULL_NAME_FIELDS
)
"""The canonical fields some match key is made from: changing one re-keys the record."""


def match_keys(entity: str, fields: Fields, region: str | None = None) -> list[tuple[str, str]]:
    """Normalised identity keys of a record, strongest first: ``[("email", "a@b.com"), ...]``.

    Every key is kept in ``entity_keys``; kinds of :data:`OPT_IN_KINDS` identify a record
    only for a stream that opts in (:func:`hub.engine.identity.identity_key`)."""
    keys: list[tuple[str, str]] = []
    for kind, field in MATCH_KEYS.get(entity, ()):
        raw = fields.get(field)
        if raw is None:
            continue
        if kind == "email":
            value = normalize_email(raw)
        elif kind == "phone":
            value = normalize_phone(raw, region)
        elif kind == "domain":
            value = normalize_domain(raw)
        elif kind == "message_id":
            value = normalize_message_id(raw)
        elif kind == "name":
            value = " ".join(str(raw).split()).casefold() or None
        else:
            value = str(raw).strip().lower() or None
        if value:
            keys.append((kind, value))
    if entity == "contact":
        full_name = normalize_full_name(*(fields.get(f) for f in FULL_NAME_FIELDS))
        if full_name:
            keys.append((FULL_NAME, full_name))
    return keys
