"""Short ids in tables, and finding a row from the short id a person typed.

Row ids are time-ordered (UUIDv7): everything made in the same minute shares its first
eight characters, so a fixed cut does not tell rows apart. A listing shows its ids cut to
the shortest length at which each names one row of its table (eight characters at least,
one length for the whole listing so the column lines up); every command that takes an id
accepts any prefix that names one row.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Column, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.errors import CrmhubError

__all__ = ["MIN_LENGTH", "find_id", "short_ids"]

MIN_LENGTH = 8


def _common(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


async def short_ids(db: AsyncConnection, column: Column[str], ids: Iterable[str]) -> dict[str, str]:
    """``{id: shortest unique prefix}`` for ``ids``, each checked against its neighbours in
    ``column`` (the ids just below and above it in the table's order)."""
    wanted = sorted(set(ids))
    length = MIN_LENGTH
    for value in wanted:
        below = select(func.max(column)).where(column < value).scalar_subquery()
        above = select(func.min(column)).where(column > value).scalar_subquery()
        for other in (await db.execute(select(below, above))).one():
            if other:
                length = max(length, _common(value, other) + 1)
    # Ids of one table share the positions of their dashes; a cut never ends on one.
    if wanted and length < len(wanted[0]) and wanted[0][length - 1] == "-":
        length += 1
    return {value: value[:length] for value in wanted}


async def find_id(
    db: AsyncConnection, column: Column[str], text: str, what: str, listing: str
) -> str:
    """The one id in ``column`` that starts with ``text``, else a clear error; ``what``
    names the rows (``entity``), ``listing`` the command that lists them."""
    prefix = text.strip().lower()
    if not prefix:
        raise CrmhubError(f"give the {what}'s id (or its start, as `{listing}` shows it)")
    matches = column.startswith(prefix, autoescape=True)
    found = list((await db.execute(select(column).where(matches).limit(2))).scalars())
    if len(found) == 1:
        return str(found[0])
    if not found:
        raise CrmhubError(f"no {what} has an id starting {prefix!r} (`{listing}` lists them)")
    count = await db.scalar(select(func.count()).where(matches))
    raise CrmhubError(
        f"{prefix!r} starts {count} {what} ids: give more of the id "
        f"(`{listing}` shows enough of each)"
    )
