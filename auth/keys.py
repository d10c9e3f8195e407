"""The secret keys that encrypt stored credentials, and where they come from.

Keys are never stored in the database. They come from ``CRMHUB_SECRET_KEY`` (one or more
url-safe base64 keys of 32 bytes, separated by commas; the first encrypts) or from a key file
(default ``crmhub.key`` next to ``crmhub.toml``, overridable with ``CRMHUB_SECRET_KEY_FILE``),
which must not be readable by group or others.

Encryption is AES-256-GCM. Every ciphertext starts with the id of the key that made it, so a
keyring holding the current key and older ones can read rows written before a rotation, and
the caller's ``context`` (e.g. the connection name) is bound in as associated data, so a
ciphertext copied to another row does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hub.errors import ConfigError, Problem

KEY_ENV = "CRMHUB_SECRET_KEY"
KEY_FILE_ENV = "CRMHUB_SECRET_KEY_FILE"
KEY_FILE_NAME = "crmhub.key"
_MAGIC = b"CH1"
_NONCE = 12
_KEY_FILE_HEADER = (
    "# crmhub secret keys: keep this file private (mode 0600) and out of version control.\n"
    "# The first key encrypts; the others only decrypt rows written before a rotation.\n"
)


class SecretKeyError(ConfigError):
    """The secret key is missing, malformed, unsafe, or does not open a stored secret."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__([Problem(file=where, message=message)])


def generate_key() -> str:
    """A new random key, url-safe base64 (what ``CRMHUB_SECRET_KEY`` and key files hold)."""
    return base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)).decode("ascii")


def key_id_of(key: bytes) -> str:
    """A short, stable id for ``key`` that reveals nothing about it."""
    return hashlib.sha256(b"crmhub key id\x00" + key).hexdigest()[:16]


def _decode_key(text: str, where: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(text.strip().encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raw = b""
    if len(raw) != 32:
        # Never echo the value: it may be a real key with a typo.
        raise SecretKeyError(
            where,
            "a secret key is not 32 bytes of url-safe base64; generate one with "
            "`crmhub keys init` (or replace the bad entry)",
        )
    return raw


def _entries(text: str) -> list[str]:
    entries: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        entries += [part.strip() for part in line.split(",") if part.strip()]
    return entries


class Keyring:
    """The current key plus older ones kept for decryption. ``repr`` never shows a key."""

    def __init__(self, keys: Sequence[bytes], *, source: str = "keyring") -> None:
        if not keys:
            raise SecretKeyError(source, "no secret key given")
        for key in keys:
            if len(key) != 32:
                raise SecretKeyError(source, "a secret key must be 32 bytes")
        self.source = source
        self._keys: dict[str, AESGCM] = {}
        self._order: list[str] = []
        for key in keys:
            kid = key_id_of(key)
            if kid not in self._keys:
                self._keys[kid] = AESGCM(key)
                self._order.append(kid)

    @classmethod
    def generate(cls) -> Keyring:
        """A keyring with one fresh random key (tests, first start)."""
        return cls([AESGCM.generate_key(bit_length=256)], source="generated")

    @classmethod
    def from_text(cls, text: str, *, source: str) -> Keyring:
        """Keys separated by commas or lines (``#`` starts a comment); the first is current."""
        return cls([_decode_key(entry, source) for entry in _entries(text)], source=source)

    @property
    def current_id(self) -> str:
        return self._order[0]

    @property
    def key_ids(self) -> list[str]:
        """Every key id, the current one first."""
        return list(self._order)

    def __repr__(self) -> str:
        return (
            f"Keyring(current={self.current_id!r}, keys={len(self._order)}, source={self.source!r})"
        )

    def encrypt(self, plaintext: bytes, *, context: bytes) -> tuple[str, bytes]:
        """Encrypt under the current key; returns ``(key_id, ciphertext)``."""
        kid = self.current_id
        nonce = os.urandom(_NONCE)
        header = _MAGIC + bytes([len(kid)]) + kid.encode("ascii")
        sealed = self._keys[kid].encrypt(nonce, plaintext, header + context)
        return kid, header + nonce + sealed

    @staticmethod
    def key_id_in(ciphertext: bytes) -> str | None:
        """The id of the key that made ``ciphertext`` (None when it is not ours)."""
        if not ciphertext.startswith(_MAGIC) or len(ciphertext) < len(_MAGIC) + 1:
            return None
        size = ciphertext[len(_MAGIC)]
        raw = ciphertext[len(_MAGIC) + 1 : len(_MAGIC) + 1 + size]
        return raw.decode("ascii", errors="replace") if len(raw) == size else None

    def decrypt(self, ciphertext: bytes, *, context: bytes, what: str = "a stored secret") -> bytes:
        """Decrypt with whichever key made ``ciphertext``; ``what`` names it in errors."""
        kid = self.key_id_in(ciphertext)
        if kid is None:
            raise SecretKeyError(self.source, f"{what} is not a crmhub ciphertext (damaged data)")
        aead = self._keys.get(kid)
        if aead is None:
            raise SecretKeyError(
                self.source,
                f"cannot decrypt {what}: it is under key {kid}, which is not loaded "
                f"(keys loaded: {', '.join(self._order)}); add that key to {KEY_ENV} or the "
                "key file, or reconnect with `crmhub connect`",
            )
        offset = len(_MAGIC) + 1 + len(kid)
        header = ciphertext[:offset]
        nonce = ciphertext[offset : offset + _NONCE]
        try:
            return aead.decrypt(nonce, ciphertext[offset + _NONCE :], header + context)
        except InvalidTag:
            raise SecretKeyError(
                self.source,
                f"{what} does not decrypt with key {kid}: the data is damaged or belongs to "
                "another row; reconnect with `crmhub connect`",
            ) from None


def _check_private(path: Path) -> None:
    if os.name != "posix":
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SecretKeyError(
            str(path),
            f"key file is readable by group or others (mode {mode:04o}); "
            f"run `chmod 600 {path}` and start again",
        )


def read_key_file(path: Path) -> Keyring:
    """Load a key file, refusing one that group or others could read."""
    try:
        _check_private(path)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SecretKeyError(
            str(path), f"no key file; create one with `crmhub keys init` or set {KEY_ENV}"
        ) from None
    except OSError as exc:
        raise SecretKeyError(str(path), f"cannot read key file: {exc.strerror}") from None
    return Keyring.from_text(text, source=str(path))


def _write_private(path: Path, keys: Sequence[str], *, exclusive: bool) -> None:
    body = _KEY_FILE_HEADER + "".join(f"{key}\n" for key in keys)
    if exclusive:
        target, flags = path, os.O_WRONLY | os.O_CREAT | os.O_EXCL
    else:
        target, flags = path.with_name(path.name + ".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(target, flags, 0o600)
    try:
        if os.name == "posix":
            os.fchmod(fd, 0o600)
        os.write(fd, body.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    if target != path:
        os.replace(target, path)


def create_key_file(path: Path) -> str:
    """Create ``path`` (mode 0600) with one new key; returns its id. Never overwrites."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = generate_key()
    try:
        _write_private(path, [key], exclusive=True)
    except FileExistsError:
        raise SecretKeyError(
            str(path), "key file already exists; use `crmhub keys rotate` for a new key"
        ) from None
    return key_id_of(_decode_key(key, str(path)))


def rotate_key_file(path: Path) -> str:
    """Put a new current key at the top of ``path``, keeping the old ones; returns its id.

    Rows keep decrypting with the old keys until ``TokenVault.reencrypt_all()`` rewrites them.
    """
    read_key_file(path)  # refuse a missing, unsafe or malformed file before touching it
    key = generate_key()
    _write_private(path, [key, *_entries(path.read_text(encoding="utf-8"))], exclusive=False)
    return key_id_of(_decode_key(key, str(path)))


def key_file_path(config_dir: Path, env: Mapping[str, str] | None = None) -> Path:
    """Where the key file is: ``CRMHUB_SECRET_KEY_FILE``, else ``crmhub.key`` in ``config_dir``."""
    env = os.environ if env is None else env
    explicit = env.get(KEY_FILE_ENV)
    return Path(explicit).expanduser() if explicit else config_dir / KEY_FILE_NAME


def load_keyring(
    config_dir: Path, env: Mapping[str, str] | None = None, *, create: bool = False
) -> Keyring:
    """The keyring from ``CRMHUB_SECRET_KEY``, else from the key file.

    With ``create=True`` a missing key file is created (mode 0600) instead of being an error.
    """
    env = os.environ if env is None else env
    text = env.get(KEY_ENV, "").strip()
    if text:
        return Keyring.from_text(text, source=KEY_ENV)
    path = key_file_path(config_dir, env)
    if create and not path.exists():
        create_key_file(path)
    return read_key_file(path)
