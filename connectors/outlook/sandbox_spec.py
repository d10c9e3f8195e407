"""Microsoft Graph's description as the Outlook sandbox holds its traffic to it.

``spec/graph_subset.json`` is Microsoft's published Graph v1.0 OpenAPI description cut
down to the operations the sandbox serves (``spec/README.md`` has the source and the
command). ``GRAPH_API`` names it once, with its known defects (each with its reason),
Graph's answer to a request it refuses, and the documented notification format.
"""

from __future__ import annotations

from pathlib import Path

from starlette.responses import JSONResponse, Response

from connectors.outlook import notification_format
from hub.sandbox import ApiDescription, Defect, Violation

__all__ = ["GRAPH_API", "OPERATIONS", "SPEC_DIR", "graph_error"]

SPEC_DIR = Path(__file__).with_name("spec")
OPERATIONS = (
    *(
        f"{method} {base}{path}"
        for base in ("/me", "/users/{user-id}")
        for method, path in (
            ("GET", "/mailFolders/{mailFolder-id}/messages/microsoft.graph.delta()"),
            ("GET", "/contacts/microsoft.graph.delta()"),
            ("GET", "/contacts"),
            ("POST", "/contacts"),
            ("GET", "/contacts/{contact-id}"),
            ("PATCH", "/contacts/{contact-id}"),
            ("DELETE", "/contacts/{contact-id}"),
        )
    ),
    "POST /subscriptions",
    "PATCH /subscriptions/{subscription-id}",
    "DELETE /subscriptions/{subscription-id}",
)
"""The operations the sandbox serves (``spec/graph_subset.json`` holds exactly these)."""


def graph_error(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    """Graph's JSON error answer."""
    body = {"error": {"code": code, "message": message, "innerError": {"request-id": "sbx"}}}
    return JSONResponse(body, status_code=status, headers=headers)


def _refusal(violation: Violation) -> Response:
    return graph_error(400, "BadRequest", "; ".join(violation.errors)[:500])


GRAPH_API = ApiDescription(
    SPEC_DIR / "graph_subset.json",
    defects=(
        # The description, generated from Graph's CSDL, makes "@odata.type" a required
        # property of every entity and complex type, request bodies included; Graph needs
        # it only to tell derived types apart, and the request examples of its own
        # documentation ("Create contact", "Update contact") leave it out.
        Defect(
            "request",
            "*",
            r"'@odata\.type' is a required property",
            why="@odata.type is optional in request bodies",
        ),
    ),
    refuse=_refusal,
    webhooks=notification_format.problems,
    outside=("/v1.0/$batch",),  # JSON batching: each request inside is checked on its own
)
"""Microsoft Graph v1.0 (mail and contacts operations), with its known defects."""
