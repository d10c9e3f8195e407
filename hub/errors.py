"""crmhub's one error tree.

Every error says what the caller should do next::

    CrmhubError
    ├── ConfigError            fix the configuration (file, line, key are named)
    │   └── MappingError       a mapping file is wrong; carries every problem found
    ├── StoreError             the database refused or is at an unexpected revision
    ├── LeaseHeld              another run of this connection is going; try later
    ├── LeaseLost              this run stalled past its lease and another took over; it stops
    └── ConnectorError         a call to a remote system failed (connection and request named)
        ├── TransientError     retry later (5xx, timeouts, dropped connections)
        │   └── RateLimited    retry after ``retry_after`` seconds
        ├── NeedsReauth        credentials were refused; a person must reconnect
        └── PermanentError     this item will never succeed as it is; skip it

Library exceptions (httpx, sqlalchemy, csv, ...) never leave a connector or the store:
they are wrapped into one of these, with the original as ``__cause__``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ErrorKind(StrEnum):
    """What a failed remote call means for the caller."""

    TRANSIENT = "transient"
    RATE_LIMITED = "rate_limited"
    NEEDS_REAUTH = "needs_reauth"
    PERMANENT = "permanent"
    CONFIG = "config"

    @property
    def retryable(self) -> bool:
        return self in (ErrorKind.TRANSIENT, ErrorKind.RATE_LIMITED)


class CrmhubError(Exception):
    """Base of every error crmhub raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a file: where it is and what is wrong."""

    file: str
    message: str
    line: int | None = None
    key: str | None = None

    def __str__(self) -> str:
        where = self.file
        if where and self.line is not None:
            where += f":{self.line}"
        if self.key:
            where = f"{where} [{self.key}]" if where else f"[{self.key}]"
        return f"{where}: {self.message}" if where else self.message


class ConfigError(CrmhubError):
    """A person must fix something: the configuration (every problem found, each naming
    file, line and key) or what a command was asked (a plain message, shown as it is)."""

    def __init__(self, problems: list[Problem] | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(file="", message=problems)]
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class MappingError(ConfigError):
    """A mapping file is wrong."""


class StoreError(CrmhubError):
    """The database could not do what was asked."""


class LeaseHeld(CrmhubError):
    """Another run of the same connection holds the lease."""

    def __init__(self, connection: str, holder: str) -> None:
        self.connection = connection
        self.holder = holder
        super().__init__(f"connection {connection!r} is already being synced by {holder}")


class LeaseLost(CrmhubError):
    """The run's lease passed to another run (this one stalled past its expiry): the run
    stops before its next write, so two runs of one connection never write at once."""

    def __init__(self, connection: str, holder: str | None) -> None:
        self.connection = connection
        self.holder = holder
        taken = f"to {holder}" if holder else "when it expired"
        super().__init__(
            f"this run of connection {connection!r} stalled past the lease's expiry and lost "
            f"its lease {taken}; it stopped before writing anything more, and the run that "
            "holds the lease now carries on"
        )


class ConnectorError(CrmhubError):
    """A call to a remote system failed. ``kind`` tells the caller what to do.

    ``str()`` is ``reason (connection 'x', request METHOD URL)``. ``reason`` is the bare
    text: build other messages from it, never from ``str()``, so context is never repeated
    or nested. Passing another ``ConnectorError`` as ``message`` keeps its reason and fills
    in the context it lacks (its own request stays: that is the call that failed).
    """

    kind: ErrorKind = ErrorKind.PERMANENT
    reason: str
    connection: str | None
    request: str | None
    retry_after: float | None

    def __init__(
        self,
        message: str | ConnectorError,
        *,
        connection: str | None = None,
        request: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        if isinstance(message, ConnectorError):
            connection = message.connection or connection
            request = message.request or request
            retry_after = message.retry_after if retry_after is None else retry_after
            reason = message.reason
        else:
            reason = message
        self.reason = reason
        self.connection = connection
        self.request = request
        self.retry_after = retry_after
        context = ", ".join(
            part
            for part in (
                f"connection {connection!r}" if connection else "",
                f"request {request}" if request else "",
            )
            if part
        )
        super().__init__(f"{reason} ({context})" if context else reason)


class TransientError(ConnectorError):
    kind = ErrorKind.TRANSIENT


class RateLimited(TransientError):
    kind = ErrorKind.RATE_LIMITED


class NeedsReauth(ConnectorError):
    kind = ErrorKind.NEEDS_REAUTH


class PermanentError(ConnectorError):
    kind = ErrorKind.PERMANENT


class ConnectorConfigError(ConnectorError):
    kind = ErrorKind.CONFIG


ERROR_FOR_KIND: dict[ErrorKind, type[ConnectorError]] = {
    ErrorKind.TRANSIENT: TransientError,
    ErrorKind.RATE_LIMITED: RateLimited,
    ErrorKind.NEEDS_REAUTH: NeedsReauth,
    ErrorKind.PERMANENT: PermanentError,
    ErrorKind.CONFIG: ConnectorConfigError,
}
