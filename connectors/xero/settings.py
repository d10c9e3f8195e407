"""Settings of a ``xero`` connection (``[connections.NAME]`` in ``crmhub.toml``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

__all__ = ["XeroSettings"]


class XeroSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: str | None = None
    """The organisation: its tenant id or its name, as ``GET /connections`` lists them.
    Needed only when the grant reaches more than one organisation."""
    api_base: str = "https://api.xero.com"
    """Xero's API host: the Accounting API is under ``/api.xro/2.0``, the organisations the
    grant reaches under ``/connections``. A sandbox or a proxy replaces it."""
    overlap_seconds: int = Field(300, ge=0)
    """How far back each incremental pull looks again (``If-Modified-Since``), for changes
    that show up late."""
    reconcile_minutes: int = Field(60, ge=0)
    """A pull started by webhooks reads only the records they name while the last full
    (incremental) listing is younger than this; then it lists again."""
    push_invoices: bool = False
    """Invoices made in the hub are created in Xero as DRAFT invoices."""
    webhook_key: SecretStr | None = None
    """The webhook key of the Xero app (``x-xero-signature`` is made with it)."""
    batch_size: int = Field(50, ge=1, le=50)
    """Contacts per ``POST /Contacts`` (Xero's recommended maximum is 50)."""

    @field_validator("api_base")
    @classmethod
    def _base(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("api_base must be an http(s) URL, like https://api.xero.com")
        return value.rstrip("/")
