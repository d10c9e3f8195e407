"""Xero's published API descriptions as the sandbox holds its traffic to them.

``XERO_API`` names the Accounting API description cut down to the operations served
(``spec/accounting_subset.json``, see ``spec/README.md``), its known defects, each with
its reason, Xero's answer to a request the description refuses, and the documented
webhook format (``spec/xero-webhooks.yaml``, :mod:`connectors.xero.webhook_format`).
``GET /connections`` belongs to Xero's identity API, whose description is not kept here:
the sandbox answers it in the documented shape without a check.
"""

from __future__ import annotations

import json
from pathlib import Path

from starlette.responses import Response

from connectors.xero import webhook_format
from hub.sandbox import ApiDescription, Defect, Violation

__all__ = ["OPERATIONS", "SPEC_DIR", "XERO_API"]

OPERATIONS = (
    "GET /Contacts",
    "POST /Contacts",
    "GET /Contacts/{ContactID}",
    "GET /Invoices",
    "POST /Invoices",
    "GET /Invoices/{InvoiceID}",
    "GET /CreditNotes/{CreditNoteID}",
)
SPEC_DIR = Path(__file__).with_name("spec")


def _refusal(violation: Violation) -> Response:
    """Xero's answer to a request it cannot read: 400 with its error body."""
    body = {
        "ErrorNumber": 14,
        "Type": "PostDataInvalidException",
        "Message": "; ".join(violation.errors),
    }
    return Response(json.dumps(body), status_code=400, media_type="application/json")


XERO_API = ApiDescription(
    SPEC_DIR / "accounting_subset.json",
    defects=(
        # The description's own mistakes (openapi-spec-validator): boolean properties such
        # as HasAttachments and HasErrors given the text "false" as default and example.
        Defect(
            "description",
            "*",
            r"^\.: 'false' is not of type 'boolean'$",
            why='boolean properties with default/example "false" written as text',
        ),
        # Xero answers 429 over its limits (developer.xero.com/faq/limits, with
        # Retry-After and X-Rate-Limit-Problem); the description lists no 429 answer.
        Defect(
            "response",
            "*",
            r"Unknown response http status: 429",
            why="the rate-limit answer is documented on Xero's limits page, not in the description",
        ),
    ),
    refuse=_refusal,
    webhooks=webhook_format.problems,
)
"""Xero's published Accounting API description, with its known defects."""
