"""One compiled ``[[field]]``: its paths and transform chains as plain functions.

Everything here runs per record, so the chains are composed once at load time and the
per-value work is a few function calls.
"""

from __future__ import annotations

from collections import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from hub.errors import CrmhubError
from hub.mapping.paths import MISSING, RemotePath
from hub.mapping.registry import Fn, Step, TransformError
from hub.relations.model import Reference

Direction = Literal["both", "pull", "push"]
DIRECTIONS: tuple[str, ...] = ("both", "pull", "push")


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """A value of one record that a field's transforms could not convert."""

    field: str
    """Canonical field name(s), comma-separated for a field that feeds several."""
    remote: str
    """Remote path(s), comma-separated."""
    value: Any
    message: str

    def __str__(self) -> str:
        return f"field {self.field!r} (remote {self.remote!r}): {self.message}"


class RecordMappingError(CrmhubError):
    """Some fields of one record could not be mapped; the others could.

    ``values`` holds what did map, ``problems`` one :class:`FieldProblem` per failed field.
    The caller names the record: ``record 42: field 'birthday' (remote 'dob'): bad date``.
    """

    def __init__(self, values: dict[str, Any], problems: list[FieldProblem]) -> None:
        self.values = values
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


# -- chain composition -----------------------------------------------------------------


def _lift(fn: Fn, takes: int, gives: int, arity: int, handles_none: bool) -> Fn:
    """Wrap one step function for a chain position that carries ``arity`` values."""
    if takes == 1 and gives == 1 and arity > 1:
        if handles_none:
            return lambda values: tuple(fn(v) for v in values)
        return lambda values: tuple(None if v is None else fn(v) for v in values)
    if handles_none or takes > 1:
        return fn
    if gives > 1:
        blank = (None,) * gives
        return lambda value: blank if value is None else fn(value)
    return lambda value: None if value is None else fn(value)


def compose(functions: Sequence[Fn]) -> Fn | None:
    """One function running ``functions`` in order; ``None`` for an empty chain."""
    if not functions:
        return None
    if len(functions) == 1:
        return functions[0]
    chain = tuple(functions)

    def run(value: Any) -> Any:
        for fn in chain:
            value = fn(value)
        return value

    return run


def pull_chain(steps: Sequence[Step], arity: int) -> list[Fn]:
    """Pull functions of ``steps`` lifted for the values they see, starting at ``arity``."""
    lifted = []
    for step in steps:
        lifted.append(_lift(step.pull, step.takes, step.gives, arity, step.handles_none))
        arity = arity if step.takes == step.gives == 1 else step.gives
    return lifted


def push_chain(steps: Sequence[Step], arity: int) -> list[Fn]:
    """Push functions of ``steps`` in reverse order, starting from ``arity`` hub values."""
    lifted = []
    for step in reversed(steps):
        lifted.append(_lift(step.push, step.gives, step.takes, arity, step.handles_none))
        arity = arity if step.takes == step.gives == 1 else step.takes
    return lifted


def canon_chain(steps: Sequence[Step]) -> list[Fn]:
    """Hub-side normalisers of the steps that act on a single hub field.

    That is every step after the last fan step; a fan-out step's own ``canon`` applies to
    each of its outputs, a fan-in step's to its single output.
    """
    start = 0
    for index, step in enumerate(steps):
        if step.takes != 1 or step.gives != 1:
            start = index
    functions = []
    for step in steps[start:]:
        fan = step.takes != 1 or step.gives != 1
        fn = step.canon if fan else (step.canon or step.pull)
        if fn is not None:
            functions.append(_lift(fn, 1, 1, 1, step.handles_none and not fan))
    return functions


# -- values ----------------------------------------------------------------------------

_SCALARS = frozenset({str, int, float, bool, type(None)})


def blank_to_none(value: Any) -> Any:
    """Blank text is an empty field."""
    if type(value) is str and (not value or value.isspace()):
        return None
    return value


def finish(value: Any) -> Any:
    """Check a hub value is a JSON scalar or a list of text; ``""`` and ``[]`` become None."""
    kind = type(value)
    if kind in _SCALARS:
        return None if value == "" and kind is str else value
    if kind is list:
        if not value:
            return None
        if all(type(item) is str for item in value):
            return value
        raise TransformError("list holds non-text items; add the 'split' transform")
    raise TransformError(
        f"a {kind.__name__} is not a field value; map a path inside it or add a transform"
    )


# -- rules -----------------------------------------------------------------------------


class Rule:
    """A compiled ``[[field]]``.

    ``read(record)`` gives the remote value (a tuple for several remote paths) or
    ``MISSING``; ``pull(value)`` gives the hub value (a tuple for several canonical fields);
    ``push(values)`` the reverse. Transform failures raise; the mapping collects them.
    """

    __slots__ = (
        "canon", "canonical", "direction", "index", "inputs", "label", "line", "paths",
        "pull", "push", "read", "reference", "remote_label", "steps",
    )  # fmt: skip

    def __init__(
        self,
        *,
        index: int,
        canonical: tuple[str, ...],
        paths: tuple[RemotePath, ...],
        steps: Sequence[Step],
        direction: Direction,
        line: int | None = None,
        reference: Reference | None = None,
    ) -> None:
        self.index = index
        self.reference = reference
        """How the field names another record, when it is a reference field."""
        self.canonical = canonical
        self.inputs = frozenset(canonical)
        self.paths = paths
        self.steps = tuple(steps)
        self.direction = direction
        self.line = line
        self.label = ",".join(canonical)
        self.remote_label = ",".join(p.text for p in paths)
        fills = any(step.fills_missing for step in steps)
        self.read = _reader(paths, fills)
        self.pull = _puller(pull_chain(steps, len(paths)), len(paths), len(canonical))
        self.push = _pusher(push_chain(steps, len(canonical)))
        self.canon = _canonizer(canon_chain(steps))

    @property
    def pulls(self) -> bool:
        return self.direction != "push"

    @property
    def pushes(self) -> bool:
        return self.direction != "pull"

    def write(self, target: dict[str, Any], value: Any) -> None:
        """Put the pushed ``value`` (a tuple for several remote paths) into ``target``."""
        if len(self.paths) == 1:
            self.paths[0].put(target, value)
        else:
            for path, part in zip(self.paths, value, strict=True):
                path.put(target, part)


def _reader(paths: tuple[RemotePath, ...], fills: bool) -> Callable[[abc.Mapping[str, Any]], Any]:
    readers = [path.reader() for path in paths]
    if len(readers) == 1:
        only = readers[0]
        if not fills:
            return only

        def read_filled(record: abc.Mapping[str, Any]) -> Any:
            value = only(record)
            return None if value is MISSING else value

        return read_filled

    def read_many(record: abc.Mapping[str, Any]) -> Any:
        values = [read(record) for read in readers]
        if not fills and all(v is MISSING for v in values):
            return MISSING
        return tuple(None if v is MISSING else v for v in values)

    return read_many


def plain(value: Any) -> Any:
    """``finish(blank_to_none(value))`` in one call: the whole pull of an untransformed
    field, the most common rule there is."""
    if type(value) is str:
        return None if not value or value.isspace() else value
    return finish(value)


def _puller(functions: list[Fn], inputs: int, outputs: int) -> Fn:
    chain = compose(functions)
    if chain is None:
        return plain
    run = chain
    if inputs > 1:
        return lambda values: finish(run(tuple(blank_to_none(v) for v in values)))
    if outputs > 1:
        return lambda value: tuple(finish(v) for v in run(blank_to_none(value)))
    return lambda value: finish(run(blank_to_none(value)))


def _pusher(functions: list[Fn]) -> Fn:
    chain = compose(functions)
    return chain if chain is not None else (lambda value: value)


def _canonizer(functions: list[Fn]) -> Fn:
    chain = compose(functions)
    if chain is None:
        return plain
    run = chain
    return lambda value: finish(run(blank_to_none(value)))
