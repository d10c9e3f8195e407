"""Built-in text and structure transforms: trim, lower, upper, title, split_name, join_name,
map, default, split, join.

Pull functions take the remote-side value, push functions the hub-side one. Text transforms
accept numbers (turned into text) and lists of text (applied to each item).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hub.mapping.registry import BuildContext, NoParams, Step, TransformError, identity
from hub.mapping.registry import register_transform as transform

Scalar = str | int | float | bool


def text_of(value: Any) -> str:
    """``value`` as text; numbers are written out, anything else is refused."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise TransformError(f"expected text, got {type(value).__name__} {value!r}")


def _on_text(fn: Callable[[str], str]) -> Callable[[Any], Any]:
    def apply(value: Any) -> Any:
        if isinstance(value, list):
            return [fn(text_of(item)) for item in value]
        return fn(text_of(value))

    return apply


def _text_step(fn: Callable[[str], str]) -> Step:
    return Step(pull=_on_text(fn), push=identity)


@transform("trim", NoParams)
def trim(params: NoParams, ctx: BuildContext) -> Step:
    """Remove surrounding whitespace; blank becomes empty (None)."""
    return _text_step(str.strip)


@transform("lower", NoParams)
def lower(params: NoParams, ctx: BuildContext) -> Step:
    """Lower-case the text."""
    return _text_step(str.lower)


@transform("upper", NoParams)
def upper(params: NoParams, ctx: BuildContext) -> Step:
    """Upper-case the text."""
    return _text_step(str.upper)


@transform("title", NoParams)
def title(params: NoParams, ctx: BuildContext) -> Step:
    """Capitalise each word ("ada lovelace" -> "Ada Lovelace")."""
    return _text_step(str.title)


# -- names -----------------------------------------------------------------------------


def _squash(value: Any) -> str | None:
    text = " ".join(text_of(value).split())
    return text or None


def _split_name(value: Any) -> tuple[str | None, str | None]:
    text = _squash(value)
    if text is None:
        return (None, None)
    if "," in text:  # "Lovelace, Ada"
        last, _, first = text.partition(",")
        return (first.strip() or None, last.strip() or None)
    first, _, last = text.partition(" ")
    return (first, last or None)


def _join_name(parts: tuple[Any, ...]) -> str | None:
    words = [text for part in parts if part is not None and (text := _squash(part))]
    return " ".join(words) or None


@transform("split_name", NoParams)
def split_name(params: NoParams, ctx: BuildContext) -> Step:
    """Full name -> (first, last): first word, then the rest; "Last, First" is understood."""
    return Step(
        pull=_split_name,
        push=_join_name,
        canon=_squash,
        takes=1,
        gives=2,
    )


@transform("join_name", NoParams)
def join_name(params: NoParams, ctx: BuildContext) -> Step:
    """(first, last) -> full name; push splits it again. The reverse of split_name."""
    return Step(
        pull=_join_name,
        push=_split_name,
        canon=_squash,
        takes=2,
        gives=1,
    )


# -- value maps ------------------------------------------------------------------------


def _key(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return text_of(value)


class MapParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    values: dict[str, Scalar] = Field(min_length=1)
    """Remote value -> hub value. Push uses the first remote value listed for a hub value."""
    default: Scalar | None = None
    """Hub value for remote values not listed (otherwise they are an error)."""
    push_default: Scalar | None = None
    """Remote value for hub values not listed (otherwise they are an error)."""
    ignore_case: bool = False


@transform("map", MapParams)
def value_map(params: MapParams, ctx: BuildContext) -> Step:
    """Translate values through a table (`values`), with optional `default`; push reverses it."""
    fold: Callable[[str], str] = str.casefold if params.ignore_case else identity
    forward = {fold(k): v for k, v in params.values.items()}
    reverse: dict[Any, str] = {}
    for remote, hub in params.values.items():
        reverse.setdefault((type(hub), hub), remote)
    known = ", ".join(repr(k) for k in params.values)
    default, push_default = params.default, params.push_default

    def pull(value: Any) -> Any:
        found = forward.get(fold(_key(value)), forward)  # the dict itself marks "absent"
        if found is not forward:
            return found
        if default is not None:
            return default
        raise TransformError(f"value {value!r} is not in the map (known: {known})")

    def push(value: Any) -> Any:
        found = reverse.get((type(value), value))
        if found is not None:
            return found
        if push_default is not None:
            return push_default
        raise TransformError(f"hub value {value!r} has no remote value in the map")

    return Step(pull=pull, push=push, canon=identity)


class DefaultParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: Scalar | list[str]
    missing: bool = False
    """Also use the value when the remote record does not carry the path at all."""


@transform("default", DefaultParams)
def default(params: DefaultParams, ctx: BuildContext) -> Step:
    """Use `value` when the remote value is blank (or, with missing = true, absent)."""
    fallback = params.value

    def pull(value: Any) -> Any:
        return fallback if value is None else value

    return Step(
        pull=pull,
        push=identity,
        canon=identity,
        handles_none=True,
        fills_missing=params.missing,
    )


# -- lists -----------------------------------------------------------------------------


class SepParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sep: str = ","

    @field_validator("sep")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value:
            raise ValueError("sep must not be empty")
        return value


def _splitter(sep: str) -> Callable[[Any], Any]:
    def split(value: Any) -> list[str]:
        items = value if isinstance(value, list) else text_of(value).split(sep)
        return [text for item in items if (text := text_of(item).strip())]

    return split


def _joiner(sep: str) -> Callable[[Any], Any]:
    def join(value: Any) -> str:
        if isinstance(value, list):
            return sep.join(text_of(item) for item in value)
        return text_of(value)

    return join


@transform("split", SepParams)
def split(params: SepParams, ctx: BuildContext) -> Step:
    """Delimited text -> list of text (`sep`, default ","); push joins with `sep`."""
    return Step(pull=_splitter(params.sep), push=_joiner(params.sep))


@transform("join", SepParams)
def join(params: SepParams, ctx: BuildContext) -> Step:
    """List -> delimited text (`sep`, default ","); push splits it. The reverse of split."""
    return Step(pull=_joiner(params.sep), push=_splitter(params.sep))
