"""Mailchimp's published API description as the sandbox holds its traffic to it.

``MAILCHIMP_API`` is the one place that names the description (``spec/``, see its README),
the description's known defects, each with its reason, Mailchimp's answer to a request the
description refuses, and the documented webhook format
(:mod:`connectors.mailchimp.webhook_format`).
"""

from __future__ import annotations

from pathlib import Path

from starlette.responses import JSONResponse, Response

from connectors.mailchimp import webhook_format
from connectors.mailchimp.sandbox_audience import ApiError
from hub.sandbox import ApiDescription, Defect, Violation

__all__ = ["MAILCHIMP_API", "OPERATIONS", "SPEC_DIR"]

OPERATIONS = (
    "GET /lists/{list_id}",
    "POST /lists/{list_id}",
    "GET /lists/{list_id}/members",
    "GET /lists/{list_id}/members/{subscriber_hash}",
    "PUT /lists/{list_id}/members/{subscriber_hash}",
    "PATCH /lists/{list_id}/members/{subscriber_hash}",
    "DELETE /lists/{list_id}/members/{subscriber_hash}",
    "POST /lists/{list_id}/members/{subscriber_hash}/tags",
)
"""The operations the sandbox serves: ``spec/marketing_subset.json`` is the published
description cut down to these (``spec/README.md`` has the command)."""
SPEC_DIR = Path(__file__).with_name("spec")


def _refusal(violation: Violation) -> Response:
    """Mailchimp's answer to a request its schema refuses: 400 Invalid Resource."""
    errors = [{"field": "schema", "message": e} for e in violation.errors]
    detail = "The resource submitted could not be validated. For field-specific details, "
    detail += "see the 'errors' array."
    error = ApiError(400, "Invalid Resource", detail, errors=errors)
    return JSONResponse(error.body(), status_code=400, media_type="application/problem+json")


MAILCHIMP_API = ApiDescription(
    SPEC_DIR / "marketing_subset.json",
    defects=(
        # The description's own mistakes (openapi-spec-validator): boolean defaults given
        # to the string fields notify_on_subscribe and notify_on_unsubscribe of a list.
        Defect(
            "description",
            "*",
            r"False is not of type 'string'",
            why="list notify_on_subscribe/notify_on_unsubscribe: default false on a string",
        ),
        # Mailchimp answers "" for a time it does not have (timestamp_opt of a member who
        # never opted in, timestamp_signup of an imported one); the description says
        # date-time without allowing an empty value.
        Defect(
            "response",
            "*",
            r"(timestamp_opt|timestamp_signup): '' is not a 'date-time'",
            why="empty timestamps are answered as ''",
        ),
        # OAuth2 access tokens ("Authorization: OAuth <token>" or Bearer) are accepted by
        # the API; the description declares HTTP Basic only.
        Defect(
            "request",
            "*",
            r"^SecurityValidationError: .* \(Authorization: (OAuth|Bearer)\)$",
            why="OAuth2 tokens are not among the description's security schemes",
        ),
    ),
    refuse=_refusal,
    webhooks=webhook_format.problems,
)
"""Mailchimp's published Marketing API description, with its known defects."""
