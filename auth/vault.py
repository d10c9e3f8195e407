"""``TokenVault``: credentials in the store's ``tokens`` table, encrypted at rest.

One row per connection. ``data`` (the token response, API key, ...) is JSON encrypted with
the keyring's current key; the other columns are plain so ``crmhub connections`` can show
status without a key. ``version`` goes up on every write that changes the row's meaning, so
concurrent writers (refreshes in several processes) compare-and-swap instead of overwriting
each other. Secrets never appear in reprs, logs or error messages.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import and_, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from auth.keys import Keyring, SecretKeyError
from hub.errors import StoreError
from hub.store import Store, as_utc, utcnow
from hub.store.schema import tokens

Status = Literal["ok", "refreshing", "needs_reauth"]
OK: Status = "ok"
REFRESHING: Status = "refreshing"
NEEDS_REAUTH: Status = "needs_reauth"


@dataclass(frozen=True)
class TokenStatus:
    """What ``crmhub connections`` may show about a credential: never the secret."""

    connection: str
    kind: str
    status: str
    version: int
    expires_at: datetime | None
    last_error: str | None
    refreshed_at: datetime | None
    updated_at: datetime
    claimed_by: str | None = None
    key_id: str = ""


@dataclass(frozen=True)
class KeyCheck:
    """Under which key one stored credential is, and whether the keyring opens it."""

    connection: str
    key_id: str
    current: bool
    """Encrypted under the keyring's current key."""
    problem: str | None
    """Why the keyring cannot decrypt it; None when it can."""


@dataclass(frozen=True, repr=False)
class StoredToken:
    """A decrypted credential row. ``data`` holds secrets; ``repr`` hides it."""

    connection: str
    kind: str
    data: dict[str, Any]
    version: int
    expires_at: datetime | None
    status: str
    last_error: str | None
    refreshed_at: datetime | None
    updated_at: datetime
    claimed_by: str | None = None
    """``host:pid:tag`` of the process holding the refresh claim (status ``refreshing``)."""

    def __repr__(self) -> str:
        return (
            f"StoredToken(connection={self.connection!r}, kind={self.kind!r}, "
            f"version={self.version}, status={self.status!r}, expires_at={self.expires_at!r}, "
            "data=<hidden>)"
        )

    __str__ = __repr__


def _context(connection: str) -> bytes:
    return b"token:" + connection.encode("utf-8")


def _status(row: Any) -> TokenStatus:
    return TokenStatus(
        connection=row.connection,
        kind=row.kind,
        status=row.status,
        version=row.version,
        expires_at=as_utc(row.expires_at),
        last_error=row.last_error,
        refreshed_at=as_utc(row.refreshed_at),
        updated_at=as_utc(row.updated_at) or row.updated_at,
        claimed_by=row.claimed_by,
        key_id=row.key_id,
    )


class TokenVault:
    """Encrypted credentials per connection. Every method is one short transaction."""

    def __init__(
        self, store: Store, keyring: Keyring, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.store = store
        self.keyring = keyring
        self.clock = clock

    def __repr__(self) -> str:
        return f"TokenVault(store={self.store.url!r}, keyring={self.keyring!r})"

    @asynccontextmanager
    async def _tx(self, doing: str) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.store.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            # Only the driver's own message: SQLAlchemy's text would list bound parameters.
            reason = getattr(exc, "orig", None) or type(exc).__name__
            raise StoreError(f"cannot {doing} in {self.store.url}: {reason}") from None

    def _seal(self, connection: str, data: dict[str, Any]) -> tuple[str, bytes]:
        plain = json.dumps(data, separators=(",", ":"), sort_keys=True).encode("utf-8")
        return self.keyring.encrypt(plain, context=_context(connection))

    def _open(self, connection: str, ciphertext: bytes) -> dict[str, Any]:
        plain = self.keyring.decrypt(
            bytes(ciphertext),
            context=_context(connection),
            what=f"the credentials of connection {connection!r}",
        )
        data = json.loads(plain)
        if not isinstance(data, dict):
            raise SecretKeyError(self.keyring.source, f"credentials of {connection!r} are damaged")
        return data

    async def put(
        self, connection: str, kind: str, data: dict[str, Any], expires_at: datetime | None = None
    ) -> int:
        """Store (or replace) the credentials of ``connection``; status becomes ``ok``.

        Returns the row's new version.
        """
        key_id, ciphertext = self._seal(connection, data)
        now = self.clock()
        values = {
            "connection": connection,
            "version": 1,
            "kind": kind,
            "ciphertext": ciphertext,
            "key_id": key_id,
            "expires_at": as_utc(expires_at),
            "status": OK,
            "last_error": None,
            "refreshed_at": now,
            "updated_at": now,
            "claimed_by": None,
        }
        async with self._tx(f"save credentials of {connection!r}") as conn:
            insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            new = insert(tokens).values(**values)
            changed = {k: v for k, v in values.items() if k not in ("connection", "version")}
            upsert = new.on_conflict_do_update(
                index_elements=[tokens.c.connection],
                set_={**changed, "version": tokens.c.version + 1},
            ).returning(tokens.c.version)
            return int((await conn.execute(upsert)).scalar_one())

    async def get(self, connection: str) -> StoredToken | None:
        """The decrypted credentials, or None when none are stored."""
        async with self._tx(f"read credentials of {connection!r}") as conn:
            row = (
                await conn.execute(select(tokens).where(tokens.c.connection == connection))
            ).first()
        if row is None:
            return None
        meta = _status(row)
        return StoredToken(
            connection=connection,
            kind=meta.kind,
            data=self._open(connection, row.ciphertext),
            version=meta.version,
            expires_at=meta.expires_at,
            status=meta.status,
            last_error=meta.last_error,
            refreshed_at=meta.refreshed_at,
            updated_at=meta.updated_at,
            claimed_by=meta.claimed_by,
        )

    async def _update(
        self,
        connection: str,
        expected_version: int | None,
        claimed_by: str | None = None,
        **values: Any,
    ) -> bool:
        """Every write that changes the row's meaning: version + 1, and the claim ends
        unless this write takes it (``claimed_by``)."""
        where = tokens.c.connection == connection
        if expected_version is not None:
            where = and_(where, tokens.c.version == expected_version)
        stmt = (
            update(tokens)
            .where(where)
            .values(
                version=tokens.c.version + 1,
                updated_at=self.clock(),
                claimed_by=claimed_by,
                **values,
            )
        )
        async with self._tx(f"update credentials of {connection!r}") as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def compare_and_swap(
        self,
        connection: str,
        expected_version: int,
        data: dict[str, Any],
        expires_at: datetime | None,
    ) -> bool:
        """Replace the credentials only if the row is still at ``expected_version``.

        On success the version goes up by one, status becomes ``ok`` and ``refreshed_at`` is
        now. False means someone else wrote first: re-read and decide again.
        """
        key_id, ciphertext = self._seal(connection, data)
        return await self._update(
            connection,
            expected_version,
            ciphertext=ciphertext,
            key_id=key_id,
            expires_at=as_utc(expires_at),
            status=OK,
            last_error=None,
            refreshed_at=self.clock(),
        )

    async def claim_refresh(
        self, connection: str, expected_version: int, holder: str | None = None
    ) -> int | None:
        """Mark the row ``refreshing`` by ``holder`` if it is still at ``expected_version``.

        Returns the claim's version (the caller's ticket to save the result), or None when
        another writer got there first. ``updated_at`` records when the claim was taken and
        ``claimed_by`` who took it, so a claim whose holder died can be recognised and taken
        over (at once when the holder's process is gone from this host, else when stale).
        """
        taken = await self._update(
            connection, expected_version, claimed_by=holder, status=REFRESHING
        )
        return expected_version + 1 if taken else None

    async def release_claim(self, connection: str, claim_version: int, error: str) -> bool:
        """Give a refresh claim back after a failed attempt; credentials stay as they were."""
        return await self._update(connection, claim_version, status=OK, last_error=error)

    async def mark_needs_reauth(
        self, connection: str, error: str, *, expected_version: int | None = None
    ) -> bool:
        """Flag the credentials as refused: nothing refreshes them until a person reconnects."""
        return await self._update(
            connection, expected_version, status=NEEDS_REAUTH, last_error=error
        )

    async def status(self, connection: str) -> TokenStatus | None:
        async with self._tx(f"read credential status of {connection!r}") as conn:
            row = (
                await conn.execute(select(tokens).where(tokens.c.connection == connection))
            ).first()
        return None if row is None else _status(row)

    async def list_status(self) -> list[TokenStatus]:
        """Every connection's credential status, by name; no key needed, no secret shown."""
        async with self._tx("list credentials") as conn:
            rows = (await conn.execute(select(tokens).order_by(tokens.c.connection))).all()
        return [_status(row) for row in rows]

    async def delete(self, connection: str) -> bool:
        async with self._tx(f"delete credentials of {connection!r}") as conn:
            result = await conn.execute(delete(tokens).where(tokens.c.connection == connection))
            return result.rowcount == 1

    async def check_keys(self) -> list[KeyCheck]:
        """Every stored credential, by connection: its key, and whether it decrypts (each
        row is decrypted and the result thrown away). Changes nothing."""
        async with self._tx("list credentials") as conn:
            rows = (
                await conn.execute(
                    select(tokens.c.connection, tokens.c.ciphertext, tokens.c.key_id).order_by(
                        tokens.c.connection
                    )
                )
            ).all()
        checks = []
        for row in rows:
            problem = None
            try:
                self._open(row.connection, row.ciphertext)
            except SecretKeyError as exc:
                problem = exc.problems[0].message
            current = row.key_id == self.keyring.current_id
            checks.append(KeyCheck(row.connection, row.key_id, current, problem))
        return checks

    async def reencrypt_all(self) -> int:
        """Rewrite every row not under the current key; returns how many were rewritten.

        The version is left alone (the secret did not change), and each row is written only
        if no one changed it meanwhile. Rows that cannot be decrypted are named in one error
        after the others are done.
        """
        current = self.keyring.current_id
        async with self._tx("list credentials") as conn:
            rows = (
                await conn.execute(
                    select(tokens.c.connection, tokens.c.ciphertext, tokens.c.key_id).where(
                        tokens.c.key_id != current
                    )
                )
            ).all()
        rewritten, failed = 0, []
        for row in rows:
            try:
                data = self._open(row.connection, row.ciphertext)
            except SecretKeyError:
                failed.append(row.connection)
                continue
            key_id, ciphertext = self._seal(row.connection, data)
            stmt = (
                update(tokens)
                .where(
                    and_(
                        tokens.c.connection == row.connection,
                        tokens.c.ciphertext == row.ciphertext,
                    )
                )
                .values(ciphertext=ciphertext, key_id=key_id)
            )
            async with self._tx(f"re-encrypt credentials of {row.connection!r}") as conn:
                # Not written when the row changed meanwhile; a later run picks it up.
                rewritten += (await conn.execute(stmt)).rowcount
        if failed:
            raise SecretKeyError(
                self.keyring.source,
                f"credentials of {', '.join(map(repr, failed))} do not decrypt with any loaded "
                "key; add the old key to the keyring or reconnect those connections",
            )
        return rewritten
