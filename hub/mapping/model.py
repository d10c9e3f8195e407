"""A loaded mapping: remote record <-> canonical fields of one entity.

Contract of the two directions:

- ``to_canonical`` returns only fields whose remote path the record carries. A missing key
  is unknown and does not appear; a present key holding ``None`` or blank text is an emptied
  field and appears as ``None``. Only pull-direction fields are returned.
- ``to_remote`` returns a nested remote dict of push-direction fields, computed from the
  canonical values given; a field none of whose canonical inputs is given is left out.

A value that a field's transforms cannot convert fails that field only. The problems are
appended to ``errors`` when the caller passes a list; otherwise a
:class:`~hub.mapping.rules.RecordMappingError` is raised carrying both the fields that did
map (``values``) and one :class:`~hub.mapping.rules.FieldProblem` per failed field.
"""

from __future__ import annotations

from collections import abc
from collections.abc import Collection
from pathlib import Path
from typing import Any

from hub.errors import MappingError
from hub.mapping.compile import compile_mapping
from hub.mapping.paths import MISSING
from hub.mapping.rules import FieldProblem, RecordMappingError, Rule
from hub.relations.model import Reference


class Mapping:
    """Maps one remote record shape to the canonical fields of ``entity`` and back."""

    def __init__(self, entity: str, rules: abc.Sequence[Rule], source: Path | str) -> None:
        self.entity = entity
        self.source = Path(source)
        self.rules: tuple[Rule, ...] = tuple(rules)
        pulling = [rule for rule in self.rules if rule.pulls]
        pushing = [rule for rule in self.rules if rule.pushes]
        self.pull_fields = frozenset(name for rule in pulling for name in rule.canonical)
        self.push_fields = frozenset(name for rule in pushing for name in rule.canonical)
        self.fields = self.pull_fields | self.push_fields
        """Every canonical field the mapping covers, in either direction."""
        self.remote_paths: dict[str, str] = {}
        """Canonical field -> the (first) remote path it comes from (or goes to, push-only)."""
        self._canon: dict[str, Rule] = {}
        for rule in pulling + pushing:
            for name in rule.canonical:
                self.remote_paths.setdefault(name, rule.paths[0].text)
                self._canon.setdefault(name, rule)
        self.references: dict[str, Reference] = {
            rule.canonical[0]: rule.reference for rule in self.rules if rule.reference is not None
        }
        """Reference fields -> how this remote names their targets."""
        self.remote_fields = frozenset(path.text for rule in pulling for path in rule.paths)
        """Every remote path read on pull (to ask an API for just these fields)."""
        # Flat tuples keep the per-record loops free of attribute look-ups.
        self._pull_plan = tuple(
            (rule.read, rule.pull, rule.canonical[0] if len(rule.canonical) == 1 else None, rule)
            for rule in pulling
        )
        self._push_plan = tuple((rule.inputs, rule) for rule in pushing)

    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any],
        source: Path | str = "<inline>",
        *,
        phone_region: str | None = None,
    ) -> Mapping:
        """Build a mapping from data shaped like the TOML file; raises ``MappingError``."""
        compiled = compile_mapping(data, str(source), phone_region=phone_region)
        if compiled.problems or compiled.entity is None:
            raise MappingError(compiled.problems)
        return cls(compiled.entity, compiled.rules, source)

    # -- pull ------------------------------------------------------------------------------

    def to_canonical(
        self, remote: abc.Mapping[str, Any], errors: list[FieldProblem] | None = None
    ) -> dict[str, Any]:
        """Canonical fields of one remote record (see the module docstring for the contract).

        With ``errors`` given, field problems are appended to it and the mapped fields are
        returned; without it, any field problem raises ``RecordMappingError``.
        """
        out: dict[str, Any] = {}
        problems: list[FieldProblem] | None = None
        for read, pull, target, rule in self._pull_plan:
            value: Any = MISSING
            try:
                value = read(remote)
                if value is MISSING:
                    continue
                value = pull(value)
            except Exception as exc:  # a bad value fails its field, never the record
                if problems is None:
                    problems = []
                problems.append(_problem(rule, value, exc))
                continue
            if target is not None:
                out[target] = value
            else:
                out.update(zip(rule.canonical, value, strict=True))
        if problems:
            if errors is None:
                raise RecordMappingError(out, problems)
            errors.extend(problems)
        return out

    # -- push ------------------------------------------------------------------------------

    def to_remote(
        self,
        canonical: abc.Mapping[str, Any],
        only: Collection[str] | None = None,
        errors: list[FieldProblem] | None = None,
    ) -> dict[str, Any]:
        """Nested remote dict of the push-direction fields computed from ``canonical``.

        With ``only``, just the remote fields whose canonical inputs intersect ``only`` are
        written, each still computed from all of ``canonical`` (``name`` from both
        ``first_name`` and ``last_name`` even when only one changed). Inputs absent from
        ``canonical`` count as ``None`` when at least one input of the field is present.
        Errors are handled as in :meth:`to_canonical`.
        """
        wanted = None if only is None else frozenset(only)
        out: dict[str, Any] = {}
        problems: list[FieldProblem] | None = None
        for inputs, rule in self._push_plan:
            if wanted is not None and inputs.isdisjoint(wanted):
                continue
            names = rule.canonical
            if len(names) == 1:
                value = canonical.get(names[0], MISSING)
                if value is MISSING:
                    continue
            else:
                if all(name not in canonical for name in names):
                    continue
                value = tuple(canonical.get(name) for name in names)
            try:
                rule.write(out, rule.push(value))
            except Exception as exc:
                if problems is None:
                    problems = []
                problems.append(_problem(rule, value, exc))
        if problems:
            if errors is None:
                raise RecordMappingError(out, problems)
            errors.extend(problems)
        return out

    # -- hub-side values -------------------------------------------------------------------

    def normalize(self, field: str, value: Any) -> Any:
        """Normalise a hub-side value of ``field`` the way pulled values are normalised.

        Applies the transforms that act on the hub side of the field (``+1 415 555 0100`` ->
        ``+14155550100``, ``" Ada "`` -> ``"Ada"``); value maps are left alone, blank text
        becomes ``None``. Fields this mapping does not cover are returned unchanged. A value
        the transforms refuse raises ``TransformError`` (a ``ValueError``).
        """
        rule = self._canon.get(field)
        return value if rule is None else rule.canon(value)

    def __repr__(self) -> str:
        return f"<Mapping {self.entity} from {self.source} ({len(self.rules)} fields)>"


def _problem(rule: Rule, value: Any, exc: Exception) -> FieldProblem:
    shown = None if value is MISSING else value
    return FieldProblem(rule.label, rule.remote_label, shown, str(exc) or type(exc).__name__)
