"""The settings of an Outlook connection (``[connections.NAME]`` with ``connector = "outlook"``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from hub.mail import CreateContacts
from hub.records import normalize_email

__all__ = ["OutlookSettings"]


class OutlookSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mailbox: str
    """The mailbox's address. With application permissions (``oauth.client_credentials``)
    it is the mailbox read (``/users/<mailbox>``); with a user's sign-in, the user's own."""
    graph_url: str = "https://graph.microsoft.com/v1.0"
    ca_bundle: str | None = None
    """A CA file to trust for ``graph_url`` (default: the ``oauth.ca_bundle``, else the
    system's)."""
    folders: list[str] = ["inbox", "sentitems"]
    """Mail folders read, each with its own delta link (well-known names or folder ids)."""
    window_days: int = Field(90, ge=1, le=3650)
    body: Literal["none", "text"] = "none"
    max_body_bytes: int = Field(20_000, ge=0)
    create_contacts: CreateContacts = "outgoing"
    contacts: bool = True
    own_addresses: list[str] = []
    page_size: int = Field(999, ge=1, le=1000)
    """``Prefer: odata.maxpagesize`` of delta pages (sent again with every page)."""
    requests_per_10_minutes: int = Field(10_000, ge=1)
    """Outlook's limit per app and mailbox (at most 4 requests in flight, always)."""
    notification_url: str | None = None
    """The hub's public address of this connection's hook (``https://<hub>/hooks/<name>``);
    enables change notifications (subscriptions renewed by the daemon)."""
    client_state: SecretStr | None = None
    """Sent with every notification and compared in constant time (at most 128 characters)."""
    subscription_minutes: int = Field(4230, ge=45, le=4230)

    @field_validator("mailbox", "own_addresses", mode="before")
    @classmethod
    def _addresses(cls, value: str | list[str]) -> str | list[str]:
        items = [value] if isinstance(value, str) else value
        found = []
        for item in items:
            email = normalize_email(item)
            if email is None:
                raise ValueError(f"{item!r} is not an email address")
            found.append(email)
        return found[0] if isinstance(value, str) else found

    @model_validator(mode="after")
    def _consistent(self) -> OutlookSettings:
        if self.notification_url:
            if not self.client_state:
                raise ValueError("notifications (notification_url) need a client_state")
            if len(self.client_state.get_secret_value()) > 128:
                raise ValueError("client_state is at most 128 characters")
        return self
