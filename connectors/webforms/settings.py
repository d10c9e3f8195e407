"""The settings of one web form (one ``[connections.NAME]`` table with ``connector = "webforms"``).

Every form has its own unguessable path ``/forms/<key>``. Browser forms (``provider = "html"``
or ``"json"``) are guarded by a honeypot field, a signed issue time (too fast or too old is
refused) and a per-address rate limit; provider webhooks (Typeform, Tally, Jotform) by their
signature or by the key in the URL.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

Provider = Literal["html", "json", "typeform", "tally", "jotform"]
BROWSER_PROVIDERS: frozenset[str] = frozenset({"html", "json"})
"""Forms posted by people's browsers: spam checks apply."""

_KEY = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
_NAME = re.compile(r"^[A-Za-z0-9_.\[\]-]{1,64}$")
MAKE_SECRET = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def _origin(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ValueError(
            f"{value!r} is not an origin; write scheme and host only, "
            "like https://www.example.com or http://localhost:8000"
        )
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f"{value!r} is not an origin (no query, fragment or user part)")
    return f"{parts.scheme}://{parts.netloc.lower()}"


class WebFormsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: SecretStr
    """The secret part of the form's URL ``/forms/<key>``: at least 16 URL-safe characters."""
    provider: Provider = "html"
    """html (browser posts: urlencoded, multipart or JSON), json (JSON only), typeform,
    tally or jotform (their webhooks)."""
    form_name: str | None = None
    """The subject of each submission's activity; default: the connection name."""
    thank_you_url: str | None = None
    """Where a browser goes after an accepted post (303); default: a plain thank-you page."""
    allowed_origins: list[str] = []
    """Origins (``https://www.example.com``) allowed to post from scripts and fetch tokens:
    only these get CORS headers; a browser post from any other origin is refused."""
    signing_secret: SecretStr | None = None
    """Typeform (required) and Tally (optional): the webhook's signing secret."""
    form_id: str | None = None
    """Typeform form id / Tally form id / Jotform formID: when set, other forms are refused."""
    form_secret: SecretStr | None = None
    """Signs the issue time handed out with the form (browser forms; required there)."""
    require_token: bool = True
    """Browser forms: refuse posts without a valid signed issue time."""
    honeypot_field: str = Field("website", pattern=_NAME.pattern)
    """A CSS-hidden field people leave empty; a post that fills it is refused."""
    min_seconds: float = Field(3.0, ge=0)
    """Browser forms: a post sooner than this after the form was issued is refused."""
    max_age_seconds: float = Field(86400.0, gt=0)
    """Browser forms: a post later than this after the form was issued is refused."""
    rate_limit: int = Field(10, ge=0)
    """Browser forms: most posts per client address per ``rate_window`` (0: no limit)."""
    rate_window: float = Field(60.0, gt=0)
    required_fields: list[str] = ["email"]
    """Browser forms: fields that must be filled for a post to be accepted."""
    max_body: int = Field(64 * 1024, ge=1024)
    """Largest post without files, in bytes (413 beyond)."""
    max_file_bytes: int = Field(0, ge=0)
    """Largest uploaded file, in bytes; 0 refuses file uploads (413)."""
    hub_url: str | None = None
    """The hub's public base URL for the snippet's action; default http://127.0.0.1:8750."""
    labels: dict[str, str] = {}
    """Snippet labels by form field name (default: derived from the mapped hub field)."""
    consent_label: str = "I agree to be contacted about my enquiry."
    submit_label: str = "Send"

    @field_validator("key")
    @classmethod
    def _key(cls, value: SecretStr) -> SecretStr:
        if not _KEY.match(value.get_secret_value()):
            raise ValueError(
                "key must be 16 to 128 URL-safe characters (letters, digits, '-', '_'); "
                f"make one with {MAKE_SECRET}"
            )
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        return [_origin(v) for v in value]

    @field_validator("thank_you_url", "hub_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError(f"{value!r} must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _secrets(self) -> WebFormsSettings:
        if self.provider == "typeform" and not self.signing_secret:
            raise ValueError(
                "provider 'typeform' needs signing_secret: the secret set on the Typeform "
                "webhook (Connect > Webhooks > Edit > Secret)"
            )
        if self.browser and self.require_token:
            secret = self.form_secret.get_secret_value() if self.form_secret else ""
            if len(secret) < 16:
                raise ValueError(
                    f"provider {self.provider!r} needs form_secret (at least 16 characters) to "
                    f"sign form issue times; make one with {MAKE_SECRET}, "
                    "or set require_token = false"
                )
        return self

    @property
    def browser(self) -> bool:
        return self.provider in BROWSER_PROVIDERS

    @property
    def body_limit(self) -> int:
        return self.max_body + self.max_file_bytes
