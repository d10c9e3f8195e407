"""Spreadsheet formula injection: cells crmhub writes cannot start a formula.

A spreadsheet opening a CSV file runs a cell that starts with ``=``, ``+``, ``-`` or ``@``
(and some also after a leading tab or carriage return) as a formula: a web-form visitor's
``=HYPERLINK("http://evil")`` would become a live link. As OWASP recommends, such a value is
written with a single quote in front (``'=HYPERLINK(...)``), which spreadsheets show as text.

The exact rule, on the value with any leading single quotes set aside:

- it starts with ``=``, ``@``, tab or carriage return: escaped;
- it starts with ``+`` or ``-``: escaped, unless the rest holds only digits, spaces and
  ``( ) . , / -`` with at least one digit (a phone number such as ``+44 20 7946 0958`` or a
  number such as ``-12.50``: no letters, so no function or link can hide in it).

A value that already starts with quotes before such a character gets one more, so reading
is the exact inverse of writing: :func:`restore` removes the one quote :func:`neutralise`
added and nothing else, and a value read back equals the value written (no write loops).
"""

from __future__ import annotations

import re

TRIGGERS = "=+-@\t\r"
_NUMBER = re.compile(r"[+-][0-9 ().,/-]*[0-9][0-9 ().,/-]*")


def _risky(text: str) -> bool:
    rest = text.lstrip("'")
    return bool(rest) and rest[0] in TRIGGERS and _NUMBER.fullmatch(rest) is None


def neutralise(text: str) -> str:
    """The cell to write for ``text``: with a leading ``'`` when it could run as a formula."""
    return "'" + text if _risky(text) else text


def restore(cell: str) -> str:
    """The value a cell written by :func:`neutralise` stands for."""
    return cell[1:] if cell.startswith("'") and _risky(cell[1:]) else cell


def row_data(header: list[str], row: list[str], escaped: bool) -> dict[str, str]:
    """A row as record data ``{column: value}``; ``escaped``: the file's cells are escaped."""
    if not escaped:
        return dict(zip(header, row, strict=True))
    return {name: restore(cell) for name, cell in zip(header, row, strict=True)}
