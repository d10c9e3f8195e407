"""Loading a declaration from a TOML file or a dict, with every problem named at once.

Problems carry the file, the line and the dotted key, like ``crmhub.toml``'s: unknown keys
list the valid ones, an unknown ``kind`` lists the valid kinds, and placeholders, JSON
paths, time formats, hooks and stream names are checked before anything runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from hub.errors import ConfigError, Problem
from hub.rest.check import check, settings_used
from hub.rest.model import Declaration
from hub.tomlfile import load_toml, locate

__all__ = ["DeclarationError", "Loaded", "line_of", "load_declaration"]

Loc = tuple[str | int, ...]


class DeclarationError(ConfigError):
    """A declaration is wrong; every problem is named with its file, line and key."""


@dataclass(frozen=True)
class Loaded:
    """A checked declaration, where it came from, and the hooks it names (resolved)."""

    spec: Declaration
    source: Path | None = None
    """The declaration file; ``None`` for a dict."""
    hooks: dict[str, Any] = field(default_factory=dict)
    unfilled: dict[str, list[tuple[Loc, str]]] = field(default_factory=dict)
    """Settings with neither a default nor ``required`` that a run fills into templates:
    where each is used (the key, and ``file:line [key]`` to name it). A connection must
    set them (``hub.rest.connector.settings_model`` says so when it is configured)."""

    @property
    def base_dir(self) -> Path | None:
        return self.source.parent if self.source is not None else None


def load_declaration(source: str | Path | dict[str, Any], *, label: str | None = None) -> Loaded:
    """Read, validate and check a declaration; raises ``DeclarationError`` listing problems.

    ``source`` is a TOML file or a dict of the same structure (``label`` then names it in
    messages, e.g. the entry point that gave it).
    """
    if isinstance(source, dict):
        path, text, data = None, "", source
        file = label or "declaration"
    else:
        path = Path(source).resolve()
        data, text = load_toml(path, error=DeclarationError)
        file = str(path)
    try:
        spec = Declaration.model_validate(data)
    except ValidationError as exc:
        raise DeclarationError(_by_line([_problem(file, text, e) for e in exc.errors()])) from None
    hooks: dict[str, Any] = {}
    found = check(spec, path.parent if path else None, hooks)
    if found:
        raise DeclarationError(
            _by_line([Problem(file, m, line_of(text, loc), _dotted(loc)) for loc, m in found])
        )
    return Loaded(spec, path, hooks, _unfilled(spec, file, text))


def _unfilled(spec: Declaration, file: str, text: str) -> dict[str, list[tuple[Loc, str]]]:
    out: dict[str, list[tuple[Loc, str]]] = {}
    for name, locs in settings_used(spec).items():
        setting = spec.settings.get(name)
        if setting is None or setting.required or setting.default is not None:
            continue
        for loc in locs:
            line = line_of(text, loc) if text else None
            where = f"{file}:{line}" if line is not None else file
            out.setdefault(name, []).append((loc, f"{where} [{_dotted(loc)}]"))
    return out


def _by_line(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: p.line or 0)


def _dotted(loc: Loc) -> str | None:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or None


def _problem(file: str, text: str, err: Any) -> Problem:
    loc: Loc = tuple(err["loc"])
    kind = err["type"]
    message = err["msg"]
    if kind == "extra_forbidden":
        model = _model_at(Declaration, loc[:-1])
        valid = ", ".join(sorted(model.model_fields)) if model else ""
        message = f"unknown key {loc[-1]!r}" + (f" (valid: {valid})" if valid else "")
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        what = next((p for p in reversed(loc) if isinstance(p, str)), "part")
        expected = (err.get("ctx") or {}).get("expected_tags", "").replace("'", "")
        if kind == "union_tag_invalid":
            message = f"unknown {what} kind {err['ctx']['tag']!r} (valid: {expected})"
        else:
            message = f"{what} needs a 'kind' (valid: {expected})"
    elif kind == "value_error":
        message = message.removeprefix("Value error, ")
    # a discriminated union puts the tag into the location: drop it from the key shown
    shown = _without_tags(loc)
    line = line_of(text, shown) if text else None
    if kind == "union_tag_invalid" and text:  # the line of the wrong kind itself
        line = line_of(text, (*shown, "kind")) or line
    return Problem(file, message, line, _dotted(shown))


def _without_tags(loc: Loc) -> Loc:
    out: list[str | int] = []
    model: Any = Declaration
    for part in loc:
        nxt = _step(model, part)
        if nxt is _TAG:
            model = _member(model, part)
            continue
        out.append(part)
        model = nxt
    return tuple(out)


_TAG = object()


def _members(union: Any) -> list[type[BaseModel]]:
    return [m for m in get_args(union) if isinstance(m, type) and issubclass(m, BaseModel)]


def _member(union: Any, tag: str | int) -> type[BaseModel] | None:
    for member in _members(union):
        kind = member.model_fields.get("kind")
        if kind is not None and tag in get_args(kind.annotation):
            return member
    return None


def _step(current: Any, part: str | int) -> Any:
    """One step down the type tree from ``current`` (a model, dict or list type, or a
    union of models) along ``part``; ``_TAG`` when ``part`` names a union member."""
    if current is None:
        return None
    if isinstance(current, type) and issubclass(current, BaseModel):
        info = current.model_fields.get(str(part))
        return _unwrap(info.annotation) if info else None
    origin = get_origin(current)
    if origin is dict:
        return _unwrap(get_args(current)[1])
    if origin is list:
        return _unwrap(get_args(current)[0])
    if _member(current, part) is not None:
        return _TAG
    members = _members(current)
    return _step(members[0], part) if len(members) == 1 else None


def _unwrap(annotation: Any) -> Any:
    while True:
        args = get_args(annotation)
        origin = get_origin(annotation)
        if origin is not None and str(origin).endswith("Annotated"):
            annotation = args[0]
            continue
        models = [a for a in args if a is not type(None)]
        if origin is not None and origin not in (dict, list) and len(models) == 1:
            annotation = models[0]
            continue
        return annotation


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    current: Any = root
    for part in loc:
        nxt = _step(current, part)
        current = _member(current, part) if nxt is _TAG else nxt
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


_KEY_LINE = r'^\s*["\']?{}["\']?\s*='


def line_of(text: str, loc: Loc) -> int | None:
    """The line of the innermost part of ``loc`` that the file shows (a key, a table
    header, or the n-th ``[[table]]``); ``None`` when none of it is written."""
    lines = text.splitlines()
    parts = list(loc)
    for end in range(len(parts), 0, -1):
        key = parts[end - 1]
        table = parts[: end - 1]
        names = [str(p) for p in table if not isinstance(p, int)]
        indexes = [p for p in table if isinstance(p, int)]
        if isinstance(key, int):
            line = locate(text, names, None, index=key)
            if _is_header(lines, line, names):
                return line
            continue
        index = indexes[-1] if indexes and isinstance(table[-1], int) else None
        line = locate(text, names, key, index=index)
        if 0 < line <= len(lines) and re.match(_KEY_LINE.format(re.escape(key)), lines[line - 1]):
            return line
        line = locate(text, [*names, key])
        if _is_header(lines, line, [*names, key]):
            return line
    return None


def _is_header(lines: list[str], line: int, names: list[str]) -> bool:
    if not 0 < line <= len(lines):
        return False
    text = lines[line - 1].strip().lstrip("[").split("]")[0]
    return [p.strip().strip("\"'") for p in text.split(".")] == names
