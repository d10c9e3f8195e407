"""Checking the ``reference``, ``by``, ``via`` and ``create_missing`` keys of a mapping
field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hub.relations.model import (
    BY_KINDS,
    KEY_KINDS,
    REFERENCE_FIELDS,
    Reference,
    reference_field,
)

Report = Callable[[str, str], None]
"""``report(key, message)``: one problem of the field being checked."""


def _ways(target: str) -> str:
    return ", ".join(f'"{k}"' for k in ("id", *KEY_KINDS.get(target, ())))


def check_reference(
    entity: str, canonical: list[str], table: dict[str, Any], report: Report
) -> Reference | None:
    """The field's :class:`Reference` when it maps a reference field soundly; every problem
    goes to ``report``. ``None`` for an ordinary field (or one with problems)."""
    declared = [reference_field(entity, name) for name in canonical]
    wanted = any(key in table for key in ("reference", "by", "via", "create_missing"))
    fields = ", ".join(sorted(REFERENCE_FIELDS.get(entity, {}))) or "none"
    if not any(declared):
        if wanted:
            report(
                "reference",
                f"{', '.join(map(repr, canonical))} is not a reference field of {entity} "
                f"(reference fields: {fields})",
            )
        return None
    if len(canonical) > 1:
        report("canonical", "a reference field is mapped on its own, not with other fields")
        return None
    ref = declared[0]
    assert ref is not None
    targets = " or ".join(ref.targets)
    if not wanted:
        report(
            "canonical",
            f"{ref.field!r} of {entity} points at a {targets}: say how this remote names it, "
            f'e.g. reference = "{ref.targets[0]}" and by = one of {_ways(ref.targets[0])}',
        )
        return None
    target = table.get("reference")
    ok = True
    if target not in ref.targets:
        report(
            "reference",
            f"{ref.field!r} of {entity} points at a {targets}, not {target!r}"
            if target is not None
            else f'reference is missing: reference = "{ref.targets[0]}"',
        )
        return None
    via = table.get("via")
    named = target if via is None else _check_via(via, target, table, report)
    by = table.get("by")
    if named is None:
        ok = False
    elif by is None:
        report("by", f"by is missing: how this remote names the {named} ({_ways(named)})")
        ok = False
    elif by not in BY_KINDS or (by != "id" and by not in KEY_KINDS.get(named, ())):
        report("by", f"a {named} is not named by {by!r} (valid: {_ways(named)})")
        ok = False
    create = table.get("create_missing", False)
    if not isinstance(create, bool):
        report("create_missing", f"create_missing must be true or false, not {create!r}")
        ok = False
    elif create and via is not None:
        report(
            "create_missing",
            f"a {target} read through {via} cannot be created from here "
            "(set create_missing = false)",
        )
        ok = False
    elif create and by == "id":
        report(
            "create_missing",
            f"a {target} named by this remote's id cannot be created from here: it arrives "
            "with the remote's own records (set create_missing = false)",
        )
        ok = False
    if not ok or by is None:
        return None
    return Reference(target=target, by=by, create_missing=bool(create), many=ref.many, via=via)


def _check_via(via: Any, target: str, table: dict[str, Any], report: Report) -> str | None:
    """The type ``via`` names (``"ticket"`` of ``"ticket.requester"``) when it reads a
    single reference that points at ``target`` only, and the field is pulled only; problems
    to ``report``."""
    kind, _, name = via.partition(".") if isinstance(via, str) else ("", "", "")
    read = reference_field(kind, name)
    choices = ", ".join(
        f'"{r.entity}.{r.field}"'
        for fields in REFERENCE_FIELDS.values()
        for r in fields.values()
        if r.targets == (target,) and not r.many
    )
    if read is None or read.many or read.targets != (target,):
        report(
            "via",
            f"via names the reference field of another record that points at a {target} "
            f"(valid: {choices}), not {via!r}",
        )
        return None
    if table.get("direction", "both") != "pull":
        report(
            "direction",
            f'a reference read through a {kind} is pulled only: set direction = "pull"',
        )
        return None
    return kind
