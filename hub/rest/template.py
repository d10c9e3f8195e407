"""Text with placeholders: ``"https://{settings.subdomain}.example.com/api/contacts/{id}"``.

A placeholder names a value by a dotted path from a root: ``settings`` (the connection's
settings), ``secret`` (the stored credential: ``api_key``, ``username``, ...), ``id`` (the
remote id of the record written), ``data`` (the record written, remote shape). Which roots a
place may use is checked when the declaration loads. Values are URL-quoted in paths.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

__all__ = ["Template", "TemplateError"]

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r"^[A-Za-z_][\w-]*(\.[A-Za-z_0-9][\w-]*)*$")


class TemplateError(ValueError):
    """A placeholder that is malformed, or names something the place cannot know."""


class Template:
    """A parsed template. ``render(values)`` fills it; ``names`` are its placeholders."""

    __slots__ = ("names", "parts", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.parts: list[str | tuple[str, ...]] = []
        position = 0
        for match in _PLACEHOLDER.finditer(text):
            self.parts.append(text[position : match.start()])
            name = match.group(1).strip()
            if not _NAME.match(name):
                raise TemplateError(
                    f"{{{match.group(1)}}} is not a placeholder like {{settings.x}}"
                )
            self.parts.append(tuple(name.split(".")))
            position = match.end()
        self.parts.append(text[position:])
        stray = "".join(p for p in self.parts if isinstance(p, str))
        if "{" in stray or "}" in stray:
            raise TemplateError(f"unbalanced braces in {text!r}")
        self.names = [".".join(p) for p in self.parts if isinstance(p, tuple)]

    @property
    def constant(self) -> bool:
        return not self.names

    def check(self, roots: Mapping[str, set[str] | None]) -> None:
        """Raise ``TemplateError`` for a placeholder whose root is not in ``roots`` or, for
        roots with a known set of names (``settings``), whose name is not declared."""
        for name in self.names:
            root, _, rest = name.partition(".")
            if root not in roots:
                allowed = ", ".join(f"{{{r}...}}" for r in sorted(roots)) or "none"
                raise TemplateError(f"{{{name}}}: unknown placeholder here (allowed: {allowed})")
            known = roots[root]
            if known is not None:
                key = rest.partition(".")[0]
                if key not in known:
                    valid = ", ".join(sorted(known)) or "none declared"
                    raise TemplateError(f"{{{name}}}: no {root} {key!r} (declared: {valid})")

    def render(self, values: dict[str, Any], *, quote_values: bool = False) -> str:
        """The text with every placeholder filled; a missing value raises ``KeyError``."""
        if len(self.parts) == 1:
            return str(self.parts[0])
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value: Any = values
            for key in part:
                if isinstance(value, dict) and key in value:
                    value = value[key]
                else:
                    value = getattr(value, key, None) if not isinstance(value, dict) else None
                if value is None:
                    raise KeyError(".".join(part))
            text = _text(value)
            out.append(quote(text, safe="") if quote_values else text)
        return "".join(out)


def _text(value: Any) -> str:
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
