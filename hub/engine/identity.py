"""Which match key identifies a record seen for the first time, and the golden records
those keys name.

Only a record's strongest key identifies it (two addresses sharing a phone number are two
people). A key of an opt-in kind (a contact's name, :data:`hub.records.OPT_IN_KINDS`)
identifies only for a stream that opts in (:attr:`hub.connector.Stream.match_by_name`),
and only when it names exactly one golden record: a name two records share is ambiguous,
and the record becomes a new golden record, never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncConnection

from hub.connector import RemoteRecord, Stream
from hub.records import OPT_IN_KINDS
from hub.store.bulk import select_in
from hub.store.schema import entity_keys

Key = tuple[str, str]


def identity_key(keys: list[Key], stream: Stream) -> Key | None:
    """The key that identifies a record of ``stream`` whose keys (strongest first) are
    ``keys``, or ``None`` when none may."""
    if not keys:
        return None
    kind = keys[0][0]
    if kind in OPT_IN_KINDS and not stream.match_by_name:
        return None
    return keys[0]


@dataclass(slots=True)
class Identities:
    """Golden records by identity key, and the opt-in keys that name several."""

    by_key: dict[Key, str] = field(default_factory=dict)
    ambiguous: set[Key] = field(default_factory=set)


async def look_up(db: AsyncConnection, entity_type: str, wanted: dict[str, set[str]]) -> Identities:
    """The golden records of ``entity_type`` that the key values ``wanted`` (by kind) name."""
    found = Identities()
    for kind, values in wanted.items():
        rows = await select_in(
            db,
            entity_keys,
            ("value", "entity_id"),
            {"entity_type": entity_type, "kind": kind},
            "value",
            values,
        )
        for value, entity_id in rows:
            key = (kind, value)
            known = found.by_key.setdefault(key, entity_id)
            if known != entity_id and kind in OPT_IN_KINDS:
                found.ambiguous.add(key)
    for key in found.ambiguous:
        del found.by_key[key]
    return found


def note_created(found: Identities, keys: list[Key], entity_id: str) -> None:
    """A golden record just made with ``keys`` (by a stream matching by name): a later
    record of the page with its name matches it, or finds the name ambiguous when another
    golden record has it too, as a later page would."""
    for key in keys:
        if key[0] not in OPT_IN_KINDS or key in found.ambiguous:
            continue
        if found.by_key.setdefault(key, entity_id) != entity_id:
            found.ambiguous.add(key)
            del found.by_key[key]


def ambiguous_message(connection: str, stream: str, rec: RemoteRecord, key: Key) -> str:
    where = rec.where or f"record {rec.id}"
    return (
        f"{connection} {stream} {where}: several contacts are named {key[1]!r}; matched to "
        "none of them, a new contact is made (merge it with `crmhub entities merge` if it "
        "is one of them)"
    )
