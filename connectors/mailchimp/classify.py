"""What Mailchimp's answers mean, in one place.

Mailchimp limits each account to 10 simultaneous connections and answers 429 beyond, with
no ``Retry-After`` (so the hub backs off with jitter). Under very high volume its edge may
refuse with a bare 403: a 403 without Mailchimp's JSON problem body, or one whose text says
it is a throttle, is rate limited; a 403 problem from the API itself (a disabled account, a
forbidden resource) is permanent. Error messages carry the problem's ``title`` and
``detail`` with e-mail addresses masked, so dead letters say why without personal data.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from hub.errors import ErrorKind
from hub.http import ResponseClassifier

_THROTTLE_WORDS = re.compile(r"too many|rate limit|throttl|simultaneous|slow down", re.I)
_EMAIL = re.compile(r"[^\s@\"'<>]+@[^\s@\"'<>]+\.[A-Za-z]{2,}")


def mask_emails(text: str) -> str:
    """The text with every e-mail address replaced by ``<email>``."""
    return _EMAIL.sub("<email>", text)


def problem(response: httpx.Response) -> dict[str, Any] | None:
    """Mailchimp's JSON problem body (``type``, ``title``, ``status``, ``detail``), if any."""
    if "json" not in response.headers.get("content-type", ""):
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and ("title" in body or "detail" in body):
        return body
    return None


class MailchimpClassifier(ResponseClassifier):
    """429 and throttling 403s are rate limited, 401 needs re-auth, 5xx transient, other 4xx
    permanent for the item."""

    def classify(self, response: httpx.Response) -> ErrorKind | None:
        if response.status_code == 403:
            body = problem(response)
            if body is None:
                return ErrorKind.RATE_LIMITED  # not the API's own answer: the edge throttling
            text = f"{body.get('title', '')} {body.get('detail', '')}"
            return ErrorKind.RATE_LIMITED if _THROTTLE_WORDS.search(text) else ErrorKind.PERMANENT
        return super().classify(response)

    def describe(self, response: httpx.Response) -> str:
        head = super().describe(response)
        body = problem(response)
        if body is None:
            return head
        parts = [str(body[k]) for k in ("title", "detail") if body.get(k)]
        errors = body.get("errors")
        if isinstance(errors, list):
            parts += [
                f"{e.get('field')}: {e.get('message')}"
                for e in errors[:5]
                if isinstance(e, dict) and e.get("message")
            ]
        return mask_emails(f"{head}: {'; '.join(parts)}") if parts else head
