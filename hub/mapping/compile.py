"""Turn a mapping's raw data (parsed TOML or a dict) into rules, collecting every problem.

Nothing stops at the first problem: each ``[[field]]`` is checked on its own, and the
problems name the file, the line (when the TOML text is known) and the key, e.g.
``field[3].transforms`` for the third ``[[field]]`` table (counted from 1).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, cast

from pydantic import ValidationError

from hub.errors import Problem
from hub.mapping import formats, transforms  # noqa: F401  (registers the built-ins)
from hub.mapping.paths import PathError, RemotePath
from hub.mapping.registry import BuildContext, Step, get_transform, transform_names
from hub.mapping.rules import DIRECTIONS, Direction, Rule
from hub.records import ENTITY_TYPES, core_fields, is_known_field
from hub.relations.check import check_reference
from hub.tomlfile import locate

TOP_KEYS = ("entity", "description", "field")
FIELD_KEYS = (
    "canonical",
    "remote",
    "transforms",
    "direction",
    "description",
    "reference",
    "by",
    "via",
    "create_missing",
)


@dataclass
class Compiled:
    entity: str | None
    rules: list[Rule] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def _hint(word: str, choices: list[str] | tuple[str, ...] | frozenset[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _names(value: Any) -> list[Any] | None:
    """A non-empty list from a string or a list of strings; ``None`` when it is neither."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    return None


@dataclass
class _Field:
    """What was understood of one [[field]] table, for the checks across fields."""

    index: int
    canonical: list[str]
    paths: list[RemotePath]
    direction: str
    line: int | None
    rule: Rule | None = None


class _Compiler:
    def __init__(self, source: str, text: str | None, ctx: BuildContext) -> None:
        self.source = source
        self.text = text
        self.ctx = ctx
        self.problems: list[Problem] = []
        self.entity: str | None = None

    def line(self, index: int | None, key: str | None) -> int | None:
        if self.text is None:
            return None
        if index is None:
            return locate(self.text, [], key)
        return locate(self.text, ["field"], key, index)

    def problem(self, index: int | None, key: str | None, message: str) -> None:
        label = key if index is None else f"field[{index + 1}]" + (f".{key}" if key else "")
        self.problems.append(Problem(self.source, message, self.line(index, key), label))

    # -- top level -----------------------------------------------------------------------

    def run(self, data: dict[str, Any]) -> list[Rule]:
        for key in data:
            if key not in TOP_KEYS:
                self.problem(None, key, f"unknown key {key!r} (valid: {', '.join(TOP_KEYS)})")
        entity = data.get("entity")
        if entity is None:
            self.problem(None, "entity", f"entity is missing (one of {', '.join(ENTITY_TYPES)})")
        elif entity not in ENTITY_TYPES:
            self.problem(
                None,
                "entity",
                f"unknown entity {entity!r} (valid: {', '.join(ENTITY_TYPES)})",
            )
        else:
            self.entity = entity
        tables = data.get("field")
        if tables is None or tables == []:
            self.problem(None, "field", "the mapping has no [[field]] tables")
            return []
        if not isinstance(tables, list):
            self.problem(None, "field", "field must be [[field]] tables")
            return []
        parsed = [self.field(index, table) for index, table in enumerate(tables)]
        self.check_overlaps([entry for entry in parsed if entry is not None])
        return [entry.rule for entry in parsed if entry is not None and entry.rule is not None]

    # -- one [[field]] ---------------------------------------------------------------------

    def field(self, index: int, table: Any) -> _Field | None:
        if not isinstance(table, dict):
            self.problem(index, None, "each field must be a table")
            return None
        before = len(self.problems)
        for key in table:
            if key not in FIELD_KEYS:
                self.problem(
                    index,
                    key,
                    f"unknown key {key!r} (valid: {', '.join(FIELD_KEYS)}){_hint(key, FIELD_KEYS)}",
                )
        canonical = self.canonical(index, table.get("canonical"))
        paths = self.remote(index, table.get("remote"))
        direction = table.get("direction", "both")
        if direction not in DIRECTIONS:
            self.problem(
                index,
                "direction",
                f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}",
            )
        steps = self.steps(index, table.get("transforms", []))
        if canonical and paths and len(canonical) > 1 and len(paths) > 1:
            self.problem(
                index,
                "remote",
                "one side must be a single field: map several remote paths to one canonical "
                "field, or one remote path to several canonical fields",
            )
        elif canonical and paths and steps is not None:
            self.arity(index, steps, len(paths), len(canonical))
        reference = None
        if canonical and self.entity is not None:
            reference = check_reference(
                self.entity,
                canonical,
                table,
                lambda key, message: self.problem(index, key, message),
            )
        entry = _Field(index, canonical, paths, direction, self.line(index, None))
        if len(self.problems) == before and canonical and paths and steps is not None:
            entry.rule = Rule(
                reference=reference,
                index=index,
                canonical=tuple(canonical),
                paths=tuple(paths),
                steps=steps,
                direction=cast(Direction, direction),
                line=entry.line,
            )
        return entry

    def canonical(self, index: int, value: Any) -> list[str]:
        names = _names(value)
        if value is None:
            self.problem(index, "canonical", "canonical is missing (the hub field to fill)")
            return []
        if names is None:
            self.problem(index, "canonical", "canonical must be a field name or a list of them")
            return []
        known = True
        for name in names:
            if self.entity is not None and not is_known_field(self.entity, name):
                valid = sorted(core_fields(self.entity))
                self.problem(
                    index,
                    "canonical",
                    f"{name!r} is not a field of {self.entity} (core fields: {', '.join(valid)}; "
                    f"custom fields are named custom.<name>){_hint(name, valid)}",
                )
                known = False
        if len(set(names)) != len(names):
            self.problem(index, "canonical", "canonical names a field twice")
            known = False
        return names if known else []

    def remote(self, index: int, value: Any) -> list[RemotePath]:
        names = _names(value)
        if value is None:
            self.problem(index, "remote", "remote is missing (the path in the remote record)")
            return []
        if names is None:
            self.problem(index, "remote", "remote must be a path or a list of paths")
            return []
        paths = []
        for name in names:
            try:
                paths.append(RemotePath.parse(name))
            except PathError as exc:
                self.problem(index, "remote", str(exc))
        return paths if len(paths) == len(names) else []

    def steps(self, index: int, value: Any) -> list[Step] | None:
        items = [value] if isinstance(value, str | dict) else value
        if not isinstance(items, list):
            self.problem(index, "transforms", "transforms must be a list of names or tables")
            return None
        steps: list[Step] | None = []
        for item in items:
            step = self.step(index, item)
            if step is None or steps is None:
                steps = None
            else:
                steps.append(step)
        return steps

    def step(self, index: int, item: Any) -> Step | None:
        if isinstance(item, str):
            name, args = item, {}
        elif isinstance(item, dict) and isinstance(item.get("name"), str):
            name, args = item["name"], {k: v for k, v in item.items() if k != "name"}
        else:
            self.problem(
                index,
                "transforms",
                f"{item!r} is not a transform: use a name or a table like "
                '{ name = "phone", region = "GB" }',
            )
            return None
        spec = get_transform(name)
        if spec is None:
            valid = transform_names()
            self.problem(
                index,
                "transforms",
                f"unknown transform {name!r}{_hint(name, valid)} (valid: {', '.join(valid)})",
            )
            return None
        try:
            params = spec.params.model_validate(args)
            return spec.build(params, self.ctx)
        except ValidationError as exc:
            for error in exc.errors():
                self.problem(index, "transforms", _argument_message(name, spec.params, error))
        except ValueError as exc:
            self.problem(index, "transforms", f"transform {name!r}: {exc}")
        return None

    def arity(self, index: int, steps: list[Step], inputs: int, outputs: int) -> None:
        count = inputs
        for step in steps:
            if step.takes == step.gives == 1:
                continue
            if step.takes != count:
                self.problem(
                    index,
                    "transforms",
                    f"a transform takes {step.takes} values but gets {count} here; "
                    "check remote and the order of transforms",
                )
                return
            count = step.gives
        if count != outputs:
            where = f"{inputs} remote path(s)"
            self.problem(
                index,
                "canonical",
                f"the transforms turn {where} into {count} value(s) but canonical names "
                f"{outputs} field(s); several canonical fields need a transform that "
                "splits (split_name), several remote paths one that joins (join_name)",
            )

    # -- across fields ---------------------------------------------------------------------

    def check_overlaps(self, entries: list[_Field]) -> None:
        """One source per hub field on pull; no two push writes to the same remote place."""
        pulled: dict[str, _Field] = {}
        pushed: list[tuple[RemotePath, _Field]] = []
        for entry in entries:
            if entry.direction != "push":
                for name in entry.canonical:
                    first = pulled.setdefault(name, entry)
                    if first is not entry:
                        self.problem(
                            entry.index,
                            "canonical",
                            f"{name!r} is already filled by field[{first.index + 1}]"
                            f"{_at(first)}; a hub field takes one source per mapping, so "
                            'give one of them direction = "push"',
                        )
            if entry.direction != "pull":
                for path in entry.paths:
                    for other_path, other in pushed:
                        if other is not entry and path.overlaps(other_path):
                            self.problem(
                                entry.index,
                                "remote",
                                f"push would write {path.text!r} and {other_path.text!r} "
                                f"(field[{other.index + 1}]{_at(other)}) over each other; "
                                'give one of them direction = "pull"',
                            )
                    pushed.append((path, entry))


def _at(entry: _Field) -> str:
    return f", line {entry.line}" if entry.line is not None else ""


def _argument_message(name: str, model: type, error: Any) -> str:
    loc = ".".join(str(part) for part in error["loc"])
    valid = ", ".join(getattr(model, "model_fields", {})) or "none"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"transform {name!r} has no argument {loc!r} (valid: {valid})"
    if kind == "missing":
        return f"transform {name!r} needs argument {loc!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"transform {name!r} argument {loc!r}: {message}"


def compile_mapping(
    data: dict[str, Any], source: str, text: str | None = None, *, phone_region: str | None = None
) -> Compiled:
    """Check ``data`` and build its rules; ``problems`` is empty when the mapping is sound."""
    compiler = _Compiler(source, text, BuildContext(phone_region=phone_region))
    rules = compiler.run(data)
    problems = sorted(compiler.problems, key=lambda p: p.line or 0)  # stable: file order
    return Compiled(compiler.entity, rules, problems)
