"""The settings of a Gmail connection (``[connections.NAME]`` with ``connector = "gmail"``)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from hub.mail import CreateContacts
from hub.records import normalize_email

__all__ = ["GmailSettings"]

_TOPIC = re.compile(r"^projects/[^/]+/topics/[^/]+$")


class GmailSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mailboxes: list[str] = []
    """The mailboxes read. With ``service_account_file``: every one listed, through
    domain-wide delegation. With a user's OAuth token: the user's own address (optional;
    pushes naming another address are refused)."""
    service_account_file: str | None = None
    """A Workspace service account's JSON key (relative paths start at crmhub.toml)."""
    window_days: int = Field(90, ge=1, le=3650)
    """How far back the first sync reads mail."""
    query: str = ""
    """Gmail search terms for the first sync's listing, e.g. ``-category:promotions``
    (needs the ``gmail.readonly`` scope)."""
    exclude_labels: list[str] = ["SPAM", "TRASH", "DRAFT"]
    """Messages with any of these labels are never read (first sync and later)."""
    body: Literal["none", "text"] = "none"
    """``text``: keep the text body (``format=full``, needs ``gmail.readonly``)."""
    max_body_bytes: int = Field(20_000, ge=0)
    create_contacts: CreateContacts = "outgoing"
    """Which unknown correspondents become contacts: ``never``, ``outgoing`` (people the
    mailbox wrote to) or ``all``."""
    contacts: bool = True
    """Sync the mailbox's Google contacts both ways (one mailbox per connection)."""
    own_addresses: list[str] = []
    """Aliases of the mailbox besides its address (mail from them is outgoing)."""
    api_root: str | None = None
    """Another root for Google's APIs and discovery documents (a sandbox:
    ``http://127.0.0.1:8802``); default Google's."""
    units_per_second: float = Field(250, gt=0)
    """Gmail quota units a second per mailbox (Google: 15,000 a minute per user)."""
    people_per_minute: float = Field(90, gt=0)
    """People API requests a minute."""
    batch_size: int = Field(50, ge=1, le=100)
    page_size: int = Field(500, ge=1, le=500)
    pubsub_topic: str | None = None
    """``projects/<project>/topics/<topic>`` that ``users.watch`` publishes to; enables push."""
    watch_labels: list[str] = []
    """Only changes to messages with these labels are pushed (default: all)."""
    push_token: SecretStr | None = None
    """The ``token`` in the push endpoint URL: ``https://<hub>/hooks/<name>?token=...``."""
    push_audience: str | None = None
    """When set, a push must carry Pub/Sub's OIDC token for this audience."""
    push_service_account: str | None = None
    """The service account the push subscription authenticates as (checked when set)."""
    push_subscription: str | None = None
    """``projects/<project>/subscriptions/<name>``: pushes from another are refused."""
    push_certs_url: str = "https://www.googleapis.com/oauth2/v1/certs"

    @field_validator("mailboxes", "own_addresses")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        found = []
        for item in value:
            email = normalize_email(item)
            if email is None:
                raise ValueError(f"{item!r} is not an email address")
            found.append(email)
        return found

    @field_validator("pubsub_topic")
    @classmethod
    def _topic(cls, value: str | None) -> str | None:
        if value is not None and not _TOPIC.match(value):
            raise ValueError("pubsub_topic is projects/<project>/topics/<topic>")
        return value

    @field_validator("api_root")
    @classmethod
    def _root(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("api_root must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> GmailSettings:
        if self.service_account_file and not self.mailboxes:
            raise ValueError("a service account reads the mailboxes listed in 'mailboxes'")
        if self.pubsub_topic and not self.push_token:
            raise ValueError("push (pubsub_topic) needs a push_token for the endpoint URL")
        return self
