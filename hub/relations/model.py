"""Reference fields: which fields of an entity point at other golden records.

A reference field holds hub entity ids (one id, or a list of ids for a field that names
several records, such as every participant of an email). Remote systems name the target
either by their own id (resolved through the connection's links) or by a key of the target
(``email``, ``domain``, ``name``, ``number``, resolved through identity matching).
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.records import normalize_domain, normalize_email, normalize_phone


@dataclass(frozen=True, slots=True)
class ReferenceField:
    """One reference field of an entity type: the types it may point at, and whether it
    holds one id or a list of them."""

    entity: str
    field: str
    targets: tuple[str, ...]
    many: bool = False


_DECLARED = (
    ReferenceField("contact", "company", ("company",)),
    ReferenceField("activity", "contacts", ("contact",), many=True),
    ReferenceField("activity", "company", ("company",)),
    ReferenceField("ticket", "requester", ("contact",)),
    ReferenceField("ticket", "organization", ("company",)),
    ReferenceField("invoice", "contact", ("contact", "company")),
)

REFERENCE_FIELDS: dict[str, dict[str, ReferenceField]] = {}
for _ref in _DECLARED:
    REFERENCE_FIELDS.setdefault(_ref.entity, {})[_ref.field] = _ref

KEY_KINDS: dict[str, tuple[str, ...]] = {
    "contact": ("email",),
    "company": ("domain", "name"),
    "invoice": ("number",),
    "ticket": (),
    "activity": (),
}
"""How a remote may name a target of each type besides its own id (``by = "id"``)."""

KEY_FIELD: dict[str, str] = {
    "email": "email",
    "domain": "domain",
    "name": "name",
    "number": "number",
}
"""The target's canonical field each key kind reads (and writes back on push)."""

BY_KINDS: tuple[str, ...] = ("id", "email", "domain", "name", "number")


def reference_field(entity: str, field: str) -> ReferenceField | None:
    """The declaration of ``entity.field`` when it is a reference field, else ``None``."""
    return REFERENCE_FIELDS.get(entity, {}).get(field)


def is_reference(entity: str, field: str) -> bool:
    return field in REFERENCE_FIELDS.get(entity, {})


def normalize_name(value: str | None) -> str | None:
    """A name as identity matching compares it: words separated by one space, case-folded."""
    if value is None:
        return None
    text = " ".join(str(value).split()).casefold()
    return text or None


def normalize_key(kind: str, value: object, region: str | None = None) -> str | None:
    """The normalised form of a reference key, as ``entity_keys`` holds it."""
    if value is None:
        return None
    text = str(value)
    if kind == "email":
        return normalize_email(text)
    if kind == "domain":
        return normalize_domain(text)
    if kind == "phone":
        return normalize_phone(text, region)
    if kind == "name":
        return normalize_name(text)
    return text.strip().lower() or None


@dataclass(frozen=True, slots=True)
class Reference:
    """How one mapping field names its target: ``target`` type, ``by`` key kind (or
    ``"id"``), and whether an unknown target is created."""

    target: str
    by: str
    create_missing: bool = False
    many: bool = False
    via: str | None = None
    """``"ticket.requester"``: the remote's value names a ticket (by ``by``) and the field
    takes what that ticket's ``requester`` points at (a ticket comment on the timeline of the
    ticket's requester, whoever wrote it). Pull only."""

    @property
    def names(self) -> str:
        """The type of record the remote's value names: the target, or the record read."""
        return self.via.partition(".")[0] if self.via else self.target

    @property
    def lookup(self) -> str:
        """How the value is looked up (``pending_refs.target_type``): the target type, or
        ``via`` (``"ticket.requester"``)."""
        return self.via or self.target


def dependency_rank(entity: str) -> int:
    """How deep ``entity``'s references go: records of a lower rank are pulled and pushed
    first, so what a record points at is there before it (companies, then contacts, then
    the activities, tickets and invoices that name them)."""
    fields = REFERENCE_FIELDS.get(entity, {})
    targets = {t for ref in fields.values() for t in ref.targets if t != entity}
    return 1 + max((dependency_rank(t) for t in targets), default=-1)
