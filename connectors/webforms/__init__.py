"""The ``webforms`` connector: web forms (HTML, JSON, Typeform, Tally, Jotform) posting to
the hub; each submission becomes a contact and an activity."""

from connectors.webforms.connector import WebFormsConnector
from connectors.webforms.guard import (
    TOKEN_FIELD,
    FormRefused,
    RateLimiter,
    check_token,
    issue_token,
)
from connectors.webforms.routes import FormTable, form_routes
from connectors.webforms.settings import WebFormsSettings
from connectors.webforms.snippet import render_snippet
from connectors.webforms.submission import Submission

__all__ = [
    "TOKEN_FIELD",
    "FormRefused",
    "FormTable",
    "RateLimiter",
    "Submission",
    "WebFormsConnector",
    "WebFormsSettings",
    "check_token",
    "form_routes",
    "issue_token",
    "render_snippet",
]
