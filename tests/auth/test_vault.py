"""The token vault and its keys: encryption at rest, versions, rotation, key file safety."""

from __future__ import annotations

import os
import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from auth.keys import (
    KEY_ENV,
    KEY_FILE_ENV,
    Keyring,
    SecretKeyError,
    create_key_file,
    generate_key,
    load_keyring,
    read_key_file,
    rotate_key_file,
)
from auth.vault import TokenVault
from hub.store import Store
from hub.store.schema import tokens

SECRET = {"access_token": "at-PLAINTEXT-7f3a9c", "refresh_token": "rt-PLAINTEXT-44b1e0"}


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.generate()


async def test_round_trip_versions_and_status(store: Store, keyring: Keyring) -> None:
    vault = TokenVault(store, keyring)
    expires = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert await vault.get("gmail") is None
    assert await vault.put("gmail", "oauth2", SECRET, expires) == 1
    token = await vault.get("gmail")
    assert token is not None
    assert (token.data, token.kind, token.version, token.status) == (SECRET, "oauth2", 1, "ok")
    assert token.expires_at == expires
    assert token.refreshed_at is not None and token.refreshed_at.tzinfo is not None

    # Replacing bumps the version and clears an earlier failure.
    assert await vault.mark_needs_reauth("gmail", "refused") is True
    assert (await vault.status("gmail")).status == "needs_reauth"  # type: ignore[union-attr]
    assert await vault.put("gmail", "oauth2", {"access_token": "second"}) == 3
    status = await vault.status("gmail")
    assert status is not None
    assert (status.status, status.last_error, status.expires_at) == ("ok", None, None)

    await vault.put("xero", "api_key", {"api_key": "k-123456789"})
    listed = await vault.list_status()
    assert [s.connection for s in listed] == ["gmail", "xero"]
    assert "PLAINTEXT" not in repr(listed) and "k-123456789" not in repr(listed)

    assert await vault.delete("gmail") is True
    assert await vault.delete("gmail") is False
    assert await vault.get("gmail") is None


async def test_repr_hides_the_secret(store: Store, keyring: Keyring) -> None:
    vault = TokenVault(store, keyring)
    await vault.put("gmail", "oauth2", SECRET)
    token = await vault.get("gmail")
    for text in (repr(token), str(token), repr(vault), repr(keyring), f"{token}"):
        assert "PLAINTEXT" not in text
    assert "data=<hidden>" in repr(token)


async def test_ciphertext_does_not_contain_plaintext(store: Store, keyring: Keyring) -> None:
    vault = TokenVault(store, keyring)
    await vault.put("gmail", "oauth2", SECRET)
    async with store.connect() as conn:
        row = (await conn.execute(select(tokens).where(tokens.c.connection == "gmail"))).one()
    blob = bytes(row.ciphertext)
    assert row.key_id == keyring.current_id
    assert b"PLAINTEXT" not in blob and b"access_token" not in blob
    assert Keyring.key_id_in(blob) == keyring.current_id


async def test_compare_and_swap_only_from_the_expected_version(
    store: Store, keyring: Keyring
) -> None:
    vault = TokenVault(store, keyring)
    v1 = await vault.put("gmail", "oauth2", SECRET)
    assert await vault.compare_and_swap("gmail", v1, {"access_token": "new"}, None) is True
    assert await vault.compare_and_swap("gmail", v1, {"access_token": "lost"}, None) is False
    token = await vault.get("gmail")
    assert token is not None and token.data == {"access_token": "new"} and token.version == 2
    assert await vault.compare_and_swap("nobody", 1, {}, None) is False

    claim = await vault.claim_refresh("gmail", 2)
    assert claim == 3
    assert await vault.claim_refresh("gmail", 2) is None  # one claimer only
    assert (await vault.status("gmail")).status == "refreshing"  # type: ignore[union-attr]
    assert await vault.release_claim("gmail", claim, "timed out") is True
    status = await vault.status("gmail")
    assert status is not None and (status.status, status.last_error) == ("ok", "timed out")


async def test_ciphertext_is_bound_to_its_row(store: Store, keyring: Keyring) -> None:
    vault = TokenVault(store, keyring)
    await vault.put("a", "oauth2", SECRET)
    await vault.put("b", "oauth2", {"access_token": "other"})
    async with store.begin() as conn:
        blob = await conn.execute(select(tokens.c.ciphertext).where(tokens.c.connection == "a"))
        await conn.execute(
            update(tokens).where(tokens.c.connection == "b").values(ciphertext=blob.scalar_one())
        )
    with pytest.raises(SecretKeyError, match="'b'"):
        await vault.get("b")


async def test_wrong_key_is_a_clear_error(store: Store, keyring: Keyring) -> None:
    await TokenVault(store, keyring).put("gmail", "oauth2", SECRET)
    other = Keyring.generate()
    with pytest.raises(SecretKeyError) as caught:
        await TokenVault(store, other).get("gmail")
    message = str(caught.value)
    assert "'gmail'" in message and keyring.current_id in message and "crmhub connect" in message
    assert "PLAINTEXT" not in message


async def test_rotate_key_file_then_reencrypt(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "crmhub.key"
    first_id = create_key_file(path)
    old = load_keyring(tmp_path, env={})
    assert old.key_ids == [first_id]
    await TokenVault(store, old).put("a", "oauth2", SECRET)
    await TokenVault(store, old).put("b", "api_key", {"api_key": "k-secret-1234"})

    new_id = rotate_key_file(path)
    rotated = load_keyring(tmp_path, env={})
    assert rotated.key_ids == [new_id, first_id]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    vault = TokenVault(store, rotated)
    assert (await vault.get("a")).data == SECRET  # type: ignore[union-attr]  # old key decrypts

    assert await vault.reencrypt_all() == 2
    assert await vault.reencrypt_all() == 0
    assert {s.version for s in await vault.list_status()} == {1}  # secrets unchanged
    only_new = Keyring.from_text(path.read_text().splitlines()[2], source="test")
    assert only_new.key_ids == [new_id]
    assert (await TokenVault(store, only_new).get("b")).data == {  # type: ignore[union-attr]
        "api_key": "k-secret-1234"
    }
    with pytest.raises(SecretKeyError):
        await TokenVault(store, Keyring.generate()).get("a")


async def test_reencrypt_names_rows_no_key_opens(store: Store, keyring: Keyring) -> None:
    await TokenVault(store, Keyring.generate()).put("lost", "oauth2", SECRET)
    await TokenVault(store, Keyring.generate()).put("fine", "oauth2", SECRET)
    vault = TokenVault(store, keyring)
    with pytest.raises(SecretKeyError, match=r"'lost'.*'fine'|'fine'.*'lost'"):
        await vault.reencrypt_all()


def test_key_file_is_created_private_and_unsafe_modes_refused(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "crmhub.key"
    kid = create_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_key_file(path).current_id == kid
    with pytest.raises(SecretKeyError, match="already exists"):
        create_key_file(path)
    key_text = path.read_text().splitlines()[-1]
    for mode in (0o640, 0o604, 0o644):
        os.chmod(path, mode)
        with pytest.raises(SecretKeyError) as caught:
            load_keyring(path.parent, env={})
        assert f"chmod 600 {path}" in str(caught.value)
        assert key_text not in str(caught.value)
    os.chmod(path, 0o400)
    assert load_keyring(path.parent, env={}).current_id == kid


def test_key_from_environment(tmp_path: Path) -> None:
    new, old = generate_key(), generate_key()
    ring = load_keyring(tmp_path, env={KEY_ENV: f"{new}, {old}"})
    ids = [Keyring.from_text(k, source="test").current_id for k in (new, old)]
    assert ring.key_ids == ids and ring.current_id == ids[0]
    # The environment wins over a key file; a file elsewhere is found through the env too.
    create_key_file(tmp_path / "crmhub.key")
    assert load_keyring(tmp_path, env={KEY_ENV: new}).key_ids == ring.key_ids[:1]
    other = tmp_path / "elsewhere.key"
    other_id = create_key_file(other)
    assert load_keyring(Path("/nonexistent"), env={KEY_FILE_ENV: str(other)}).key_ids == [other_id]


def test_bad_or_missing_keys_are_clear_errors(tmp_path: Path) -> None:
    bad = "not-a-key-but-secretish"
    with pytest.raises(SecretKeyError) as caught:
        load_keyring(tmp_path, env={KEY_ENV: bad})
    assert KEY_ENV in str(caught.value) and bad not in str(caught.value)
    with pytest.raises(SecretKeyError, match="crmhub keys init"):
        load_keyring(tmp_path, env={})
    ring = load_keyring(tmp_path, env={}, create=True)
    assert stat.S_IMODE((tmp_path / "crmhub.key").stat().st_mode) == 0o600
    assert load_keyring(tmp_path, env={}).key_ids == ring.key_ids


def test_keyring_rejects_tampering() -> None:
    ring = Keyring.generate()
    kid, blob = ring.encrypt(b"hello", context=b"x")
    assert kid == ring.current_id and ring.decrypt(blob, context=b"x") == b"hello"
    flipped = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(SecretKeyError, match="damaged"):
        ring.decrypt(flipped, context=b"x")
    with pytest.raises(SecretKeyError, match="not a crmhub ciphertext"):
        ring.decrypt(b"plain bytes", context=b"x")


async def test_no_secret_in_sqlite_file_bytes(sqlite_url: str, tmp_path: Path) -> None:
    store = await Store.open(sqlite_url)
    keyring = Keyring.generate()
    # An open reader keeps the WAL file from being folded back and deleted, so it is scanned too.
    reader = sqlite3.connect(tmp_path / "crmhub.db")
    reader.execute("SELECT count(*) FROM tokens").fetchall()
    try:
        vault = TokenVault(store, keyring)
        version = await vault.put("gmail", "oauth2", SECRET, datetime.now(UTC))
        later = {**SECRET, "access_token": "at-PLAINTEXT-second"}
        await vault.compare_and_swap("gmail", version, later, datetime.now(UTC) + timedelta(1))
        files = {f.name: f.read_bytes() for f in tmp_path.glob("crmhub.db*")}
        assert files.get("crmhub.db-wal")
        # The scan does see the rows: the plain key id column is there.
        assert keyring.current_id.encode() in b"".join(files.values())
        for name, content in files.items():
            assert b"PLAINTEXT" not in content, name
    finally:
        reader.close()
        await store.close()
