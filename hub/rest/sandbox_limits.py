"""A generated sandbox's rate limits: the account's, told in headers, and each stream's own.

The account's limit is the declaration's ``[client] rate_limit``, counted per minute and
told in the ``[sandbox] limit_headers`` (Zendesk's ``X-Rate-Limit`` and
``X-Rate-Limit-Remaining``); a stream's ``rate_limit`` (Zendesk's incremental exports, 10 a
minute, shared by ``limit_key``) counts its listings. Either, once spent, is answered with
the throttle answer and a ``Retry-After`` of the seconds until the oldest request leaves.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque

from starlette.responses import Response

from hub.rest.model import Declaration, StreamSpec

__all__ = ["Limits"]


class Limits:
    def __init__(self, spec: Declaration) -> None:
        self.spec = spec
        self.hits: dict[str, deque[float]] = defaultdict(deque)

    def clear(self) -> None:
        self.hits.clear()

    def _window(self, key: str, per: float) -> deque[float]:
        """The times of ``key``'s requests in the last ``per`` seconds."""
        hits, now = self.hits[key], time.monotonic()
        while hits and hits[0] <= now - per:
            hits.popleft()
        return hits

    def _per_minute(self) -> int | None:
        client = self.spec.client.rate_limit
        if not self.spec.sandbox.limit_headers or client is None or client.rate is None:
            return None
        return int(client.rate * 60 / client.per_seconds)

    def spent(self, name: str, stream: StreamSpec, op: str) -> float | None:
        """Seconds to wait when a limit is spent (``None``: the request may go on)."""
        per_minute = self._per_minute()
        if per_minute is not None:
            hits = self._window("client", 60)
            if len(hits) >= per_minute:
                return max(1, math.ceil(hits[0] + 60 - time.monotonic()))
        limit = stream.rate_limit
        if op != "pull" or limit is None or limit.rate is None:
            return None
        hits = self._window("stream:" + (stream.limit_key or name), limit.per_seconds)
        if len(hits) >= limit.rate:
            return max(1, math.ceil(hits[0] + limit.per_seconds - time.monotonic()))
        hits.append(time.monotonic())
        return None

    def tell(self, response: Response) -> Response:
        """``response`` with the limit headers; an answer that is not a 429 counts."""
        per_minute = self._per_minute()
        if per_minute is None:
            return response
        names = self.spec.sandbox.limit_headers
        hits = self._window("client", 60)
        if response.status_code != 429:
            hits.append(time.monotonic())
        if "limit" in names:
            response.headers[names["limit"]] = str(per_minute)
        if "remaining" in names:
            response.headers[names["remaining"]] = str(max(0, per_minute - len(hits)))
        return response
