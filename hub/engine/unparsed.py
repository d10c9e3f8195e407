"""Values the mapping cannot convert are kept as written, and flagged.

A phone number without a country code while no region is set, an address that is not an
email address: the field's transforms refuse it, but it is still what the remote system
holds. Treating it as absent would let another system's value overwrite it unasked (the hub
would see a field the remote lacks, and owe it the hub's value). So the value is kept as
the remote wrote it and merged like any other: compared with the base and the hub's value,
and settled by the field's conflict policy (a ``manual`` field opens a conflict). Each such
value is reported in the run, with where the record is (``people.csv:12``) when the
connector says, and a hub value taken from it is flagged in its provenance
(``[connection, time, "unparsed"]``; ``crmhub entities show`` marks it).
"""

from __future__ import annotations

from typing import Any

from hub.connector import RemoteRecord
from hub.mapping import FieldProblem

UNPARSED = "unparsed"
"""Third element of a provenance entry whose value was kept as written."""


def keep_unparsed(
    connection: str,
    stream: str,
    rec: RemoteRecord,
    canon: dict[str, Any],
    problems: list[FieldProblem],
    unparsed: dict[str, set[str]],
) -> list[str]:
    """Put each refused value of a one-field rule into ``canon`` as written, noting the
    field in ``unparsed[rec.id]``; returns the run's messages about them."""
    where = rec.where or f"record {rec.id}"
    messages: list[str] = []
    for problem in problems:
        field = problem.field
        kept = "," not in field and problem.value is not None and field not in canon
        if kept:
            canon[field] = problem.value
            unparsed.setdefault(rec.id, set()).add(field)
        note = "; kept as written (flagged), not replaced" if kept else ""
        messages.append(f"{connection} {stream} {where}: {problem}{note}")
    return messages
