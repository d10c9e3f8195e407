"""The small JSON path dialect of declarations: where records, ids and cursors sit in a body.

Supported: ``$`` (the whole body), ``$.a.b`` (keys), ``$['a b']`` (a quoted key),
``$.a[0]`` (a list index) and ``$.a[*]`` (every item of a list). The ``$.`` prefix may be
left out for record fields (``id``, ``meta.updated_at``). Anything else (filters, slices,
recursive descent) is refused when the declaration loads, naming the supported forms.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["SUPPORTED", "JsonPath", "JsonPathError", "Unlisted"]

SUPPORTED = "$, $.key.key, $['key'], $.list[0], $.list[*]"

_STEP = re.compile(
    r"""\.(?P<key>[A-Za-z_@$][\w@$-]*)       # .key
      | \[\s*'(?P<sq>[^']*)'\s*\]            # ['key']
      | \[\s*"(?P<dq>[^"]*)"\s*\]            # ["key"]
      | \[\s*(?P<index>-?\d+)\s*\]           # [0]
      | \[\s*(?P<all>\*)\s*\]                # [*]
    """,
    re.VERBOSE,
)
_ALL = object()  # the step that fans out over a list
_MISSING = object()


class JsonPathError(ValueError):
    """A path outside the supported dialect."""


class Unlisted(ValueError):
    """An answer without records where its path says they are."""


class JsonPath:
    """A compiled path. ``find`` lists every match; ``first`` the first or a default."""

    __slots__ = ("_key", "fans_out", "steps", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.steps = _parse(text)
        self.fans_out = any(step is _ALL for step in self.steps)
        # the common case, one key (``id``, ``updated_at``), is read without the walk
        single = len(self.steps) == 1 and isinstance(self.steps[0], str)
        self._key: str | None = self.steps[0] if single else None

    def __repr__(self) -> str:
        return f"JsonPath({self.text!r})"

    @property
    def is_root(self) -> bool:
        return not self.steps

    def find(self, document: Any) -> list[Any]:
        """Every value the path reaches (a missing key or index reaches nothing)."""
        if not self.fans_out:
            found = self.first(document, _MISSING)
            return [] if found is _MISSING else [found]
        current = [document]
        for step in self.steps:
            following: list[Any] = []
            for value in current:
                if step is _ALL:
                    if isinstance(value, list):
                        following.extend(value)
                else:
                    got = _step(value, step)
                    if got is not _MISSING:
                        following.append(got)
            current = following
        return current

    def first(self, document: Any, default: Any = None) -> Any:
        """The value at the path, or ``default`` when it reaches nothing."""
        key = self._key
        if key is not None:
            return document.get(key, default) if type(document) is dict else default
        value = document
        for step in self.steps:
            if step is _ALL:
                matches = self.find(document)
                return matches[0] if matches else default
            value = _step(value, step)
            if value is _MISSING:
                return default
        return value

    def records(self, document: Any) -> list[Any]:
        """A list the path names (``$.data``) or the items it fans out to (``$.data[*]``)."""
        if self.fans_out:
            return self.find(document)
        found = self.first(document, None)
        if found is None:
            return []
        return found if isinstance(found, list) else [found]

    def listed(self, document: Any) -> list[Any]:
        """:meth:`records`, for an answer that must list them: ``null`` lists none; a path
        that reaches nothing, or text or a number, raises :class:`Unlisted` saying what the
        answer holds instead (an error page answered 200, a records path that does not fit
        the API), so that it is never taken for an empty listing."""
        steps = self.steps[: self.steps.index(_ALL)] if self.fans_out else self.steps
        value = document
        for step in steps:
            got = _step(value, step)
            if got is _MISSING:
                raise Unlisted(f"no records at {self.text} ({_holds(value)})")
            value = got
        if self.fans_out:
            return self.find(document)
        if value is None:
            return []
        if isinstance(value, list):
            return value
        if isinstance(value, dict):
            return [value]
        raise Unlisted(f"{self.text} is {kind_of(value)}, not records")

    def set(self, document: dict[str, Any], value: Any) -> dict[str, Any]:
        """Write ``value`` where the path points, creating objects on the way (sandboxes
        build answers this way). A trailing ``[*]`` takes a list; indices are refused."""
        steps = list(self.steps)
        if steps and steps[-1] is _ALL:
            steps.pop()
        if not steps:
            if not isinstance(value, dict):
                raise JsonPathError(f"{self.text}: only an object can be the whole body")
            document.update(value)
            return document
        target: Any = document
        for step in steps[:-1]:
            if not isinstance(step, str):
                raise JsonPathError(f"{self.text}: cannot build a body through {step!r}")
            target = target.setdefault(step, {})
        last = steps[-1]
        if not isinstance(last, str):
            raise JsonPathError(f"{self.text}: cannot build a body through {last!r}")
        target[last] = value
        return document


def _step(value: Any, step: Any) -> Any:
    if isinstance(step, str):
        if isinstance(value, dict):
            return value.get(step, _MISSING)
        return _MISSING
    if isinstance(value, list) and -len(value) <= step < len(value):
        return value[step]
    return _MISSING


def _parse(text: str) -> list[Any]:
    if not isinstance(text, str) or not text.strip():
        raise JsonPathError(f"empty JSON path (supported: {SUPPORTED})")
    rest = text.strip()
    if rest.startswith("$"):
        rest = rest[1:]
    elif not rest.startswith(("[", ".")):
        rest = "." + rest  # a bare field path: ``id``, ``meta.updated_at``
    steps: list[Any] = []
    position = 0
    while position < len(rest):
        match = _STEP.match(rest, position)
        if match is None:
            raise JsonPathError(
                f"{text!r} is not a supported JSON path near {rest[position:]!r} "
                f"(supported: {SUPPORTED})"
            )
        if match.group("key") is not None:
            steps.append(match.group("key"))
        elif match.group("sq") is not None:
            steps.append(match.group("sq"))
        elif match.group("dq") is not None:
            steps.append(match.group("dq"))
        elif match.group("index") is not None:
            steps.append(int(match.group("index")))
        else:
            steps.append(_ALL)
        position = match.end()
    return steps


def kind_of(value: Any) -> str:
    """``a string``, ``a number``...: what a JSON value is, for messages."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "null" if value is None else type(value).__name__


def _holds(value: Any) -> str:
    if isinstance(value, dict):
        keys = sorted(map(str, value))
        shown = ", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "")
        return f"it has: {shown}" if keys else "it is an empty object"
    return f"it is {kind_of(value)}"
