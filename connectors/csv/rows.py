"""Stable ids and versions of CSV rows.

A row's id is, in order of preference:

1. the value of the ``key`` column, when the connection names one and the cell is not empty;
2. a natural id from the row's match key: ``email:<normalised email>``, else
   ``phone:<E.164>`` for contacts; ``domain:<normalised domain>``, else
   ``name:<lower-cased name>`` for companies (columns are found by name: ``email``,
   ``E-mail``, ``Email Address``, ``phone``, ``website``, ``Company Name``, ...);
3. ``row:<sha1 of the row's content>`` for a row with neither: it is still synced, but its
   id changes whenever the row changes (which the hub sees as a delete and a create).

Rows that share an id get ``#2``, ``#3``, ... in file order. A row's version is a hash of its
cells; empty cells at the end do not count, so appending a column changes no version.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from functools import lru_cache

from hub.records import normalize_domain, normalize_email, normalize_phone

# Column names (lower-cased, letters and digits only) that hold each kind of match key.
MATCH_COLUMNS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "contact": (
        ("email", ("email", "emailaddress", "mail")),
        ("phone", ("phone", "phonenumber", "telephone", "tel", "mobile")),
    ),
    "company": (
        ("domain", ("domain", "website", "web", "url")),
        ("name", ("name", "companyname", "company")),
    ),
}
_SPACES = re.compile(r"\s+")


def row_text(row: list[str]) -> str:
    """The row's content as one string, trailing empty cells left out."""
    return "\x1f".join(row).rstrip("\x1f")


def row_version(row: list[str]) -> str:
    return hashlib.blake2b(
        row_text(row).encode("utf-8", "surrogatepass"), digest_size=8
    ).hexdigest()


def content_id(row: list[str]) -> str:
    return "row:" + hashlib.sha1(row_text(row).encode("utf-8", "surrogatepass")).hexdigest()


@lru_cache(maxsize=4096)
def _email_domain(domain: str) -> str | None:
    # IDNA-encoding is the slow part of normalising an email; domains repeat a lot.
    address = normalize_email(f"x@{domain}")
    return address.split("@", 1)[1] if address else None


def email_key(value: str) -> str | None:
    """``normalize_email`` with the domain part cached."""
    local, at, domain = value.strip().lower().partition("@")
    if not at or not local or not domain or "@" in domain:
        return None
    normal = _email_domain(domain)
    return f"{local}@{normal}" if normal else None


def _squash(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _name_key(value: str) -> str | None:
    return _SPACES.sub(" ", value.strip().lower()) or None


class RowIdentity:
    """Works out ids of rows under one header."""

    def __init__(self, entity: str, header: list[str], key: str | None, region: str | None) -> None:
        self.key_index = header.index(key) if key is not None else None
        squashed = [_squash(name) for name in header]
        normalisers: dict[str, Callable[[str], str | None]] = {
            "email": email_key,
            "phone": lambda value: normalize_phone(value, region),
            "domain": normalize_domain,
            "name": _name_key,
        }
        self.columns: list[tuple[int, str, Callable[[str], str | None]]] = []
        for kind, names in MATCH_COLUMNS[entity]:
            for name in names:
                if name in squashed:
                    self.columns.append((squashed.index(name), f"{kind}:", normalisers[kind]))
                    break

    def natural(self, row: list[str]) -> str | None:
        """``kind:value`` of the row's strongest match key, or ``None``."""
        for index, prefix, normalise in self.columns:
            value = row[index]
            if value and not value.isspace():
                normal = normalise(value)
                if normal:
                    return prefix + normal
        return None

    def base_id(self, row: list[str], natural: str | None) -> str:
        """The row's id before duplicates are numbered; ``natural`` is :meth:`natural`'s."""
        if self.key_index is not None:
            value = row[self.key_index].strip()
            if value:
                return value
        return natural or content_id(row)

    def identify(self, rows: list[list[str]]) -> tuple[list[str], list[str | None]]:
        """Ids of ``rows`` (duplicates numbered) and their natural ids."""
        naturals = [self.natural(row) for row in rows]
        bases = [self.base_id(row, nat) for row, nat in zip(rows, naturals, strict=True)]
        return number_duplicates(bases), naturals


def number_duplicates(base_ids: list[str]) -> list[str]:
    """Ids made unique in order: the second ``email:a@b.c`` becomes ``email:a@b.c#2``."""
    if len(set(base_ids)) == len(base_ids):
        return base_ids
    seen: dict[str, int] = {}
    ids = []
    for base in base_ids:
        count = seen.get(base, 0) + 1
        seen[base] = count
        ids.append(base if count == 1 else f"{base}#{count}")
    return ids
