"""Slack's published descriptions as the sandbox holds its traffic to them.

``SLACK_API`` names the Web API description (``spec/web_subset.json``, cut from the
APIs.guru build of Slack's OpenAPI description; see ``spec/README.md``), its known
defects, each with the reason, Slack's answer to a request the description refuses, and
the Events API payload check (:mod:`connectors.slack.events_format`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from starlette.responses import JSONResponse, Response

from connectors.slack import events_format
from hub.sandbox import ApiDescription, Defect, Violation

__all__ = ["OPERATIONS", "SLACK_API", "SPEC_DIR"]

OPERATIONS = (
    "GET /users.list",
    "GET /users.info",
    "GET /conversations.history",
    "GET /conversations.replies",
    "POST /chat.postMessage",
    "GET /oauth.v2.access",
    "GET /auth.test",
)
"""The operations ``spec/web_subset.json`` keeps (``spec/README.md`` has the command)."""
SPEC_DIR = Path(__file__).with_name("spec")


def _refusal(violation: Violation) -> Response:
    """Slack's answer to arguments it cannot use: HTTP 200, ``ok: false``."""
    return JSONResponse({"ok": False, "error": "invalid_arguments"})


ERROR_STATUS = 599
"""A status no operation declares: openapi-core then checks the answer against "default"."""


class SlackDescription(ApiDescription):
    """Slack answers a failed call with HTTP 200 and ``{"ok": false, "error": ...}``; its
    description keeps that shape under each operation's ``default`` answer and the success
    shape under ``200``. An ``ok: false`` answer is therefore held to ``default``."""

    def check_response(
        self,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        body: bytes,
        status: int,
        response_headers: Mapping[str, str],
        response_body: bytes,
    ) -> Violation | None:
        if status == 200 and _failed(response_body):
            status = ERROR_STATUS
        return super().check_response(
            method, path, query, headers, body, status, response_headers, response_body
        )


def _failed(body: bytes) -> bool:
    try:
        answer = json.loads(body)
    except ValueError:
        return False
    return isinstance(answer, dict) and answer.get("ok") is False


SLACK_API = SlackDescription(
    SPEC_DIR / "web_subset.json",
    defects=(
        # Slack takes the token as "Authorization: Bearer" (its recommended way, and the one
        # crmhub uses); the description declares a required "token" query or header
        # parameter on some methods and no bearer scheme.
        Defect(
            "request",
            "*",
            r"^MissingRequiredParameter 'token'",
            why="the bearer token in the Authorization header is Slack's recommended way",
        ),
        # oauth.v2.access is called with a form POST (as Slack's OAuth guide and every
        # OAuth client do: the code and client secret stay out of URLs); the description
        # lists GET with query parameters only.
        Defect(
            "request",
            "POST /oauth.v2.access",
            r"^OperationNotFound",
            why="Slack's token endpoint takes a form POST; the description lists GET only",
        ),
        # conversations.history answers an empty "messages" list when nothing is newer than
        # "oldest" (the incremental read crmhub does); the description says minItems 1.
        Defect(
            "response",
            "GET /conversations.history",
            r"messages: \[\] should be non-empty",
            why="a quiet channel answers an empty list",
        ),
        # conversations.history's and conversations.replies' success schemas forbid
        # properties they do not list and do not list response_metadata, which carries the
        # next page's cursor (the description's own example answers have it).
        Defect(
            "response",
            "GET /conversations.history",
            r"Additional properties are not allowed \('response_metadata' was unexpected\)",
            why="the paging cursor is missing from the success schema, not from its example",
        ),
        Defect(
            "response",
            "GET /conversations.replies",
            r"Additional properties are not allowed \('response_metadata' was unexpected\)",
            why="the paging cursor is missing from the success schema, not from its example",
        ),
        # Slack's 429 answer carries {"ok": false, "error": "ratelimited"}; the methods'
        # error lists leave it out (rate limits are described on a page of their own).
        Defect(
            "response",
            "*",
            r"^InvalidData: error: 'ratelimited' is not one of",
            why="the throttle answer's error is not in the methods' error lists",
        ),
        # token_expired came with token rotation, after this description was made: its
        # error lists do not have it.
        Defect(
            "response",
            "*",
            r"^InvalidData: error: 'token_expired' is not one of",
            why="token rotation's error is newer than the description",
        ),
        # The Events API description's "message" topic was generated from one
        # message_deleted example: it requires that subtype's keys of every message event.
        Defect(
            "webhook",
            "webhook",
            r"^event: '(deleted_ts|subtype|hidden|previous_message)' is a required property$",
            why="the message topic requires the keys of the message_deleted subtype",
        ),
        Defect(
            "response",
            "POST /oauth.v2.access",
            r"^OperationNotFound",
            why="Slack's token endpoint takes a form POST; the description lists GET only",
        ),
    ),
    refuse=_refusal,
    webhooks=events_format.problems,
)
"""Slack's published Web API description, with its known defects."""
