"""Deciding about one post to a form: read it within the form's limits, check it, make it a
:class:`Submission` or refuse it.

Order of the checks for browser forms (cheapest and least revealing first): rate limit,
origin, body size, reading the body, honeypot, issue token, required fields. Provider
webhooks: body size, then the provider's own checks (``connectors.webforms.providers``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from connectors.webforms import providers
from connectors.webforms.guard import (
    TOKEN_FIELD,
    FormRefused,
    RateLimiter,
    check_honeypot,
    check_token,
)
from connectors.webforms.settings import WebFormsSettings
from connectors.webforms.submission import Submission, content_id
from hub.records import normalize_email
from hub.web.limits import BodyTooLarge
from hub.webhooks import body_id


def body_read(request: Request) -> bytes:
    """The body read so far by :func:`accept` (empty when it was never read)."""
    return getattr(request.state, "form_body", b"")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise FormRefused(413, "too_large", f"the submission is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise FormRefused(413, "too_large", f"the submission is larger than {limit} bytes")
            chunks.append(chunk)
    except BodyTooLarge:  # the hub-wide limit, lower than this form's
        raise FormRefused(413, "too_large", "the submission is too large") from None
    body = b"".join(chunks)
    request.state.form_body = body
    return body


def _text(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[-1] if value else None
    return None if value is None else str(value)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == []


async def accept(
    settings: WebFormsSettings, connection: str, limiter: RateLimiter, request: Request
) -> Submission:
    """The submission a post carries; raises ``FormRefused``/``WebhookRejected`` (refused,
    nothing stored) or ``MalformedDelivery`` (kept as malformed)."""
    headers = request.headers
    if settings.browser:
        limiter.hit(request.client.host if request.client else "unknown")
        origin = headers.get("origin")
        if origin and settings.allowed_origins and origin.lower() not in settings.allowed_origins:
            raise FormRefused(403, "origin", f"posts from {origin} are not accepted by this form")
    body = await read_body(request, settings.body_limit)
    received = datetime.now(UTC)
    if settings.provider == "typeform":
        return providers.typeform(settings, headers, body, received)
    if settings.provider == "tally":
        return providers.tally(settings, headers, body, received)
    if settings.provider == "jotform":
        return await providers.jotform(settings, headers, body, received)
    posted = await providers.browser_fields(settings, headers, body, body_id(body))
    values = posted.values
    check_honeypot(values.pop(settings.honeypot_field, None))
    token = _text(values.pop(TOKEN_FIELD, None))
    if settings.require_token and settings.form_secret is not None:
        check_token(
            token,
            settings.form_secret.get_secret_value(),
            connection,
            min_seconds=settings.min_seconds,
            max_age=settings.max_age_seconds,
        )
    missing = [name for name in settings.required_fields if _blank(values.get(name))]
    if missing:
        raise FormRefused(400, "missing_field", f"please fill in: {', '.join(missing)}")
    email = values.get("email")
    if not _blank(email) and normalize_email(_text(email)) is None:
        raise FormRefused(400, "invalid_email", f"{_text(email)!r} is not an email address")
    return Submission(
        submission_id=content_id(values, token or ""),
        submitted_at=received,
        fields=values,
        provider=settings.provider,
        files=posted.files,
    )
