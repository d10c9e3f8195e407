"""Reading TOML files with errors that name file, line and key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from hub.errors import ConfigError, Problem

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"'. ]+?)\s*=")


def load_toml(path: Path, error: type[ConfigError] = ConfigError) -> tuple[dict[str, Any], str]:
    """Parse ``path``; a missing, unreadable or malformed file raises ``error`` naming it."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise error([Problem(str(path), "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error([Problem(str(path), f"cannot read file: {exc}")]) from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        message = getattr(exc, "msg", str(exc))
        raise error([Problem(str(path), f"not valid TOML: {message}", line=line)]) from None


def _clean(part: str) -> str:
    return part.strip().strip("\"'")


def locate(text: str, table: list[str], key: str | None = None, index: int | None = None) -> int:
    """Best line number (1-based) of ``key`` inside ``[table]`` (or the ``index``-th ``[[table]]``).

    Falls back to the table's header line, then to line 1: a hint for people, never used for
    logic.
    """
    found, header_line = _find(text, table, key, index)
    return found or header_line


def line_of(text: str, path: list[str]) -> int:
    """Best line number of the dotted ``path`` (``connections.crm.oauth.client_id``): its own
    ``[table]`` header, else the key in the deepest table that holds it, else the nearest
    table header, else line 1."""
    own, _ = _find(text, path, None)
    if own:
        return own
    best = 1
    for cut in range(len(path) - 1, -1, -1):
        found, header_line = _find(text, path[:cut], path[cut])
        if found:
            return found
        if cut and header_line > 1 and best == 1:
            best = header_line
    return best


def _find(
    text: str, table: list[str], key: str | None, index: int | None = None
) -> tuple[int | None, int]:
    """``(line of key or table, or None; the table's header line, or 1)``."""
    want = [_clean(p) for p in table]
    header_line = 1
    seen = -1
    inside = False
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            parts = [_clean(p) for p in header.group(1).split(".")]
            if parts == want:
                seen += 1
                if index is None or seen == index:
                    inside, header_line = True, number
                    if key is None:
                        return number, number
                    continue
            inside = False
            continue
        if inside and key is not None:
            found = _KEY.match(line)
            if found and _clean(found.group(1).split(".")[0]) == key:
                return number, header_line
    if not table and key is not None:
        for number, line in enumerate(text.splitlines(), start=1):
            if _HEADER.match(line):
                break
            found = _KEY.match(line)
            if found and _clean(found.group(1)) == key:
                return number, header_line
    return None, header_line
