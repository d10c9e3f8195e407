"""Counters of HTTP traffic, one set per run, reported in the run record."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class HttpCounters:
    """What a run's HTTP traffic amounted to.

    ``calls`` counts requests put on the wire (token refreshes and the auth flow's replays
    included); ``bytes_sent``/``bytes_received`` count body bytes as they pass the transport
    (compressed size when the server compresses). ``retries`` counts re-sends after a failed
    attempt, ``throttled`` the answers classified as rate limited, ``errors`` every failed
    attempt, whatever its kind. The transport updates the first three, the retry loop the rest.
    """

    calls: int = 0
    retries: int = 0
    throttled: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a JSON-ready mapping for the run record."""
        return asdict(self)

    def add(self, other: HttpCounters) -> None:
        """Fold another set of counters into this one (e.g. one per stream into the run's)."""
        for name, value in other.as_dict().items():
            setattr(self, name, getattr(self, name) + value)
