"""Checking the ``reference``, ``by`` and ``create_missing`` keys of a mapping field."""

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
    wanted = "reference" in table or "by" in table or "create_missing" in table
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
    by = table.get("by")
    if by is None:
        report("by", f"by is missing: how this remote names the {target} ({_ways(target)})")
        ok = False
    elif by not in BY_KINDS or (by != "id" and by not in KEY_KINDS.get(target, ())):
        report("by", f"a {target} is not named by {by!r} (valid: {_ways(target)})")
        ok = False
    create = table.get("create_missing", False)
    if not isinstance(create, bool):
        report("create_missing", f"create_missing must be true or false, not {create!r}")
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
    return Reference(target=target, by=by, create_missing=bool(create), many=ref.many)
