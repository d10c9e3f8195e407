"""Gmail's and People's descriptions as the sandbox holds its traffic to them.

Google publishes discovery documents (``spec/gmail.v1.json``, ``spec/people.v1.json``, as
shipped inside google-api-python-client); the sandbox is held to their OpenAPI conversions
(``spec/*_openapi.json``, made by :mod:`hub.sandbox.google_discovery`: ``spec/README.md``
has the commands). ``GMAIL_API`` and ``PEOPLE_API`` name them once, with the known defects
(each with its reason), Google's answer to a request the description refuses, and the
documented format of Pub/Sub push deliveries.
"""

from __future__ import annotations

from pathlib import Path

from starlette.responses import JSONResponse, Response

from connectors.gmail import pubsub_format
from hub.sandbox import ApiDescription, Defect, Violation

__all__ = ["GMAIL_API", "GMAIL_METHODS", "PEOPLE_API", "PEOPLE_METHODS", "SPEC_DIR", "google_error"]

SPEC_DIR = Path(__file__).with_name("spec")
GMAIL_METHODS = (
    "gmail.users.getProfile",
    "gmail.users.watch",
    "gmail.users.stop",
    "gmail.users.messages.list",
    "gmail.users.messages.get",
    "gmail.users.history.list",
)
PEOPLE_METHODS = (
    "people.people.connections.list",
    "people.people.getBatchGet",
    "people.people.createContact",
    "people.people.updateContact",
    "people.people.deleteContact",
    "people.people.batchCreateContacts",
    "people.people.batchUpdateContacts",
    "people.people.batchDeleteContacts",
)
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    410: "FAILED_PRECONDITION",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def google_error(
    code: int,
    message: str,
    reason: str = "",
    *,
    status: str | None = None,
    details: list[dict[str, object]] | None = None,
    domain: str = "global",
) -> JSONResponse:
    """Google's JSON error answer."""
    error: dict[str, object] = {
        "code": code,
        "message": message,
        "status": status or STATUS_NAMES.get(code, "UNKNOWN"),
    }
    if reason:
        error["errors"] = [{"message": message, "domain": domain, "reason": reason}]
    if details:
        error["details"] = details
    return JSONResponse({"error": error}, status_code=code)


def _refusal(violation: Violation) -> Response:
    return google_error(400, "; ".join(violation.errors)[:500], "invalidArgument")


DEFECTS: tuple[Defect, ...] = ()
"""None found: the traffic of crmhub's tests follows both conversions (the conversion's
own choices, where the formats differ, are stated in hub.sandbox.google_discovery)."""

GMAIL_API = ApiDescription(
    SPEC_DIR / "gmail_openapi.json",
    defects=DEFECTS,
    refuse=_refusal,
    webhooks=pubsub_format.problems,
)
"""Gmail API v1, converted from Google's discovery document."""
PEOPLE_API = ApiDescription(SPEC_DIR / "people_openapi.json", defects=DEFECTS, refuse=_refusal)
"""People API v1, converted from Google's discovery document."""
