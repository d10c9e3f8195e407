"""Remote paths: where a mapped value lives inside a remote record.

A path is dotted: ``email_address``, ``merge_fields.FNAME``, ``addresses.0.city``. A segment
of digits is a list index (on pull it is also tried as a key when the node is an object); a
segment in double quotes is always a key and may hold dots or digits: ``meta."a.b"``,
``fields."360001"``.

Reading follows the hub's rule that a missing value is unknown, not empty: a key absent from
an object gives :data:`MISSING`; an explicit ``null`` on the way or a list too short gives
``None`` (the remote record says there is nothing there).
"""

from __future__ import annotations

from collections import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hub.records import MISSING

Segment = str | int


class PathError(ValueError):
    """A path that cannot be parsed, or a record whose shape does not fit the path."""


def parse_segments(text: str) -> tuple[Segment, ...]:
    """Split a path into segments; raises :class:`PathError` saying what is wrong."""
    if not isinstance(text, str) or not text:
        raise PathError("the remote path is empty")
    segments: list[Segment] = []
    i, n = 0, len(text)
    while True:
        if i < n and text[i] == '"':
            end = text.find('"', i + 1)
            if end < 0:
                raise PathError(f"unterminated quote in remote path {text!r}")
            if end == i + 1:
                raise PathError(f"empty quoted key in remote path {text!r}")
            segments.append(text[i + 1 : end])
            i = end + 1
        else:
            end = text.find(".", i)
            end = n if end < 0 else end
            bare = text[i:end]
            if not bare:
                raise PathError(f"empty segment in remote path {text!r} (check the dots)")
            if '"' in bare:
                raise PathError(f"quote inside a segment of remote path {text!r}")
            if bare != bare.strip():
                raise PathError(
                    f"segment {bare!r} of remote path {text!r} has surrounding spaces; "
                    'quote it ("...") if they are meant'
                )
            segments.append(int(bare) if bare.isdigit() else bare)
            i = end
        if i == n:
            return tuple(segments)
        if text[i] != ".":
            raise PathError(f"expected '.' after a quoted key in remote path {text!r}")
        i += 1
        if i == n:
            raise PathError(f"remote path {text!r} ends with a dot")


def _shape_error(segments: tuple[Segment, ...], depth: int, node: Any) -> PathError:
    where = ".".join(str(s) for s in segments[:depth]) or "the record"
    return PathError(
        f"{where} holds a {type(node).__name__}, not an object or list, "
        f"so path {'.'.join(str(s) for s in segments)!r} cannot be followed"
    )


@dataclass(frozen=True)
class RemotePath:
    """A parsed path with a compiled reader and a writer."""

    text: str
    segments: tuple[Segment, ...]

    @classmethod
    def parse(cls, text: str) -> RemotePath:
        return cls(text, parse_segments(text))

    def reader(self) -> Callable[[abc.Mapping[str, Any]], Any]:
        """A function ``record -> value | None | MISSING`` for this path."""
        segments = self.segments
        if len(segments) == 1 and isinstance(segments[0], str):
            key = segments[0]

            def read_key(record: abc.Mapping[str, Any]) -> Any:
                return record.get(key, MISSING)

            return read_key

        def read_nested(record: abc.Mapping[str, Any]) -> Any:
            node: Any = record
            for depth, seg in enumerate(segments):
                if node is None:
                    return None
                if isinstance(node, abc.Mapping):
                    node = node.get(seg if isinstance(seg, str) else str(seg), MISSING)
                    if node is MISSING:
                        return MISSING
                elif isinstance(node, list) and isinstance(seg, int):
                    node = node[seg] if seg < len(node) else None
                else:
                    raise _shape_error(segments, depth, node)
            return node

        return read_nested

    def put(self, target: dict[str, Any], value: Any) -> None:
        """Write ``value`` at this path in ``target``, creating objects and lists on the way.

        A digit segment creates a list (padded with ``None``) unless the node is an object.
        """
        node: Any = target
        last = len(self.segments) - 1
        for depth, seg in enumerate(self.segments):
            if depth == last:
                _assign(node, seg, value)
                return
            child = _fetch(node, seg)
            if not isinstance(child, dict | list):
                child = [] if isinstance(self.segments[depth + 1], int) else {}
                _assign(node, seg, child)
            node = child

    def overlaps(self, other: RemotePath) -> bool:
        """True when writing both paths would clash (equal, or one inside the other)."""
        n = min(len(self.segments), len(other.segments))
        return self.segments[:n] == other.segments[:n]

    def __str__(self) -> str:
        return self.text


def _fetch(node: Any, seg: Segment) -> Any:
    if isinstance(node, list):
        assert isinstance(seg, int)
        return node[seg] if seg < len(node) else None
    return node.get(seg if isinstance(seg, str) else str(seg))


def _assign(node: Any, seg: Segment, value: Any) -> None:
    if isinstance(node, list):
        assert isinstance(seg, int)
        if seg >= len(node):
            node.extend([None] * (seg + 1 - len(node)))
        node[seg] = value
    else:
        node[seg if isinstance(seg, str) else str(seg)] = value
