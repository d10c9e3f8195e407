"""A CSV file shared with other programs: the lock, the stamp and the atomic replace.

- **Real file.** A symlinked path is followed (:func:`real_path`): the new file is made in
  the real file's folder and renamed over the real file, so the link stays a link. The new
  file gets the old one's permission bits, and its owner and group where the process may.
- **Lock.** crmhub takes an advisory ``flock`` on ``<real file>.lock`` beside the real file
  (:class:`FileLock`): exclusive for a push's whole read-change-replace, shared while a pull
  reads. A program that takes the same lock (``flock people.csv.lock -c '...'``) never
  interleaves with crmhub.
- **Stamp.** What was read is remembered by size, modification time (ns), inode and SHA-256
  (:class:`Stamp`). Just before the rename the file is compared with it; a difference means
  another program wrote meanwhile and :meth:`Replacement.commit` refuses (the caller reads
  again and re-applies its changes).
- **Appends in flight.** A program that opened the old file before the rename and appends
  to it after the check writes into the replaced file: what it appends until it closes
  the file (Linux; elsewhere: in the next few milliseconds) is carried over to the new
  file. Only the lock closes that window entirely.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import signal
import stat
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from hub.errors import ConnectorConfigError, TransientError

log = logging.getLogger("crmhub.csv")

LOCK_SUFFIX = ".lock"
LOCK_WAIT = 10.0
"""Seconds to wait for another program's lock before giving up (the write stays owed)."""
_READ_TRIES = 5
CARRY_OVER_CHECKS = (0.005, 0.025)
"""Pauses (s) between looks at the replaced file where the system cannot tell whether a
program still has it open for writing: it may write a moment after the rename."""
WRITER_WAIT = 1.0
"""Most seconds to wait for programs that have the replaced file open for writing."""


def real_path(path: Path) -> Path:
    """The file behind ``path`` once every symlink is followed: where writes go."""
    return Path(os.path.realpath(path))


def lock_path(path: Path) -> Path:
    real = real_path(path)
    return real.with_name(real.name + LOCK_SUFFIX)


@dataclass(frozen=True)
class Stamp:
    """The file as read: byte count, modification time (ns), inode and SHA-256."""

    size: int
    mtime_ns: int
    inode: int
    digest: str

    def same_stat(self, st: os.stat_result) -> bool:
        return (st.st_size, st.st_mtime_ns, st.st_ino) == (self.size, self.mtime_ns, self.inode)


def read_bytes(path: Path) -> tuple[bytes, Stamp]:
    """The file's bytes and their stamp; read again when a write lands during the read."""
    with path.open("rb") as handle:
        for _ in range(_READ_TRIES):
            before = os.fstat(handle.fileno())
            handle.seek(0)
            raw = handle.read()
            after = os.fstat(handle.fileno())
            if before.st_mtime_ns == after.st_mtime_ns and len(raw) == after.st_size:
                break
        digest = hashlib.sha256(raw).hexdigest()
        return raw, Stamp(len(raw), after.st_mtime_ns, after.st_ino, digest)


def _digest_of(fd: int) -> str:
    hasher = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        hasher.update(chunk)
        offset += len(chunk)
    return hasher.hexdigest()


class FileLock:
    """``with FileLock(path, exclusive=True):`` holds crmhub's lock on ``path``'s real file.

    Waits up to ``wait`` seconds, then raises :class:`TransientError`. A shared lock is
    skipped when the lock file cannot be made (a read-only folder: nothing writes there).
    """

    def __init__(
        self, path: Path, *, exclusive: bool, wait: float | None = None, connection: str | None
    ) -> None:
        self.path, self.exclusive, self.connection = path, exclusive, connection
        self.wait = LOCK_WAIT if wait is None else wait
        self._fd: int | None = None

    def acquire(self) -> FileLock:
        where = lock_path(self.path)
        if not self.exclusive and not real_path(self.path).is_file():
            return self  # nothing to read: the read says why, no lock file is left behind
        try:
            fd = os.open(where, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            if not self.exclusive:
                return self
            raise _write_error(self.path, exc, self.connection) from exc
        mode = fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise TransientError(
                        f"{self.path} stayed locked by another program for {self.wait:g} s "
                        f"({where}); crmhub tries again later",
                        connection=self.connection,
                    ) from None
                time.sleep(0.005)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


class Replacement:
    """New bytes for a file, written and synced beside its real file until :meth:`commit`.

    Call :meth:`discard` in every case; after a commit it does nothing.
    """

    def __init__(self, path: Path, data: bytes, read: Stamp, connection: str | None) -> None:
        self.path, self.read, self.connection = path, read, connection
        self.target = real_path(path)
        self.digest = hashlib.sha256(data).hexdigest()
        self.rescued = 0
        """Bytes another program appended to the old file during the rename, carried over."""
        self._tmp: str | None = None
        try:
            current = self.target.stat()
            fd, self._tmp = tempfile.mkstemp(
                dir=self.target.parent, prefix=f".{self.target.name}.", suffix=".tmp"
            )
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                _keep_owner(handle.fileno(), current)
                os.fchmod(handle.fileno(), stat.S_IMODE(current.st_mode))
                os.fsync(handle.fileno())
        except BaseException as exc:
            self.discard()
            if isinstance(exc, OSError):
                raise _write_error(path, exc, connection) from exc
            raise

    def commit(self) -> bool:
        """Rename the new file over the real one unless that changed since it was read
        (then ``False``, nothing replaced)."""
        assert self._tmp is not None, "already committed or discarded"
        try:
            fd = os.open(self.target, os.O_RDONLY | os.O_CLOEXEC)
            try:
                # Digest first, then the cheap stat as the last check before the rename.
                if _digest_of(fd) != self.read.digest or not self.read.same_stat(os.fstat(fd)):
                    return False
                os.replace(self._tmp, self.target)
                self._tmp = None
                self._carry_over(fd)
            finally:
                os.close(fd)
            _fsync_dir(self.target.parent)
        except OSError as exc:
            raise _write_error(self.path, exc, self.connection) from exc
        return True

    def discard(self) -> None:
        if self._tmp is not None:
            with suppress(OSError):
                os.unlink(self._tmp)
            self._tmp = None

    def _carry_over(self, old: int) -> None:
        """Bytes appended to the old file after the check went to the replaced file:
        append them to the new one (only a pure append; anything else is reported).

        Where the system tells (Linux), this waits until no program has the replaced file
        open for writing (at most :data:`WRITER_WAIT`); elsewhere it looks a few times over
        :data:`CARRY_OVER_CHECKS`."""
        done = self.read.size
        deadline = time.monotonic() + WRITER_WAIT
        pauses = iter(CARRY_OVER_CHECKS)
        while True:
            closed = _no_writers(old)  # before the size: once true, the size is final
            size = os.fstat(old).st_size
            if size > done:
                if done == self.read.size and not self._appended_only(old):
                    return
                tail = os.pread(old, size - done, done)
                with open(self.target, "ab") as handle:
                    handle.write(tail)
                    handle.flush()
                    os.fsync(handle.fileno())
                done += len(tail)
                self.rescued += len(tail)
            if closed:
                return
            if closed is None:
                pause = next(pauses, None)
                if pause is None:
                    return
                time.sleep(pause)
            elif time.monotonic() > deadline:
                log.warning(
                    "a program keeps %s open for writing: what it writes now goes to the "
                    "replaced file; have it reopen the file for each write, or take the lock %s",
                    self.path,
                    lock_path(self.path).name,
                )
                return
            else:
                time.sleep(0.001)

    def _appended_only(self, old: int) -> bool:
        if hashlib.sha256(os.pread(old, self.read.size, 0)).hexdigest() == self.read.digest:
            return True
        log.warning(
            "%s was rewritten by another program while crmhub replaced it; take the lock %s "
            "when writing it",
            self.path,
            lock_path(self.path).name,
        )
        return False


def _no_writers(fd: int) -> bool | None:
    """Whether no process has the replaced file ``fd`` open for writing; ``None``: unknown.

    A read lease is granted only when nobody has the file open for writing (Linux). Only
    asked of a file no longer reachable by any name, so no one can break the lease; the
    break signal is set to one that is ignored anyway."""
    setlease, setsig = getattr(fcntl, "F_SETLEASE", None), getattr(fcntl, "F_SETSIG", None)
    if setlease is None or setsig is None or os.fstat(fd).st_nlink != 0:
        return None
    try:
        fcntl.fcntl(fd, setsig, signal.SIGURG)
        fcntl.fcntl(fd, setlease, fcntl.F_RDLCK)
    except BlockingIOError:
        return False
    except OSError:  # not the file's owner, or a file system without leases
        return None
    fcntl.fcntl(fd, setlease, fcntl.F_UNLCK)
    return True


def _keep_owner(fd: int, current: os.stat_result) -> None:
    """Give the new file the old one's owner and group, or at least its group."""
    for uid in (current.st_uid, -1):
        try:
            os.fchown(fd, uid, current.st_gid)
            return
        except PermissionError:
            continue


def _write_error(path: Path, exc: OSError, connection: str | None) -> Exception:
    if isinstance(exc, PermissionError):
        return ConnectorConfigError(
            f"cannot write {path}: permission denied ({exc.strerror}); "
            "give crmhub write access to the file and its folder",
            connection=connection,
        )
    return TransientError(
        f"cannot write {path}: {exc.strerror or exc}; the push will be retried",
        connection=connection,
    )


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    with suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
