"""Connector ``mailchimp``: the members of one Mailchimp audience, both ways.

Settings (``[connections.NAME]`` in ``crmhub.toml``)::

    connector = "mailchimp"
    list_id = "a1b2c3d4e5"            # the audience
    webhook_secret = "..."            # optional: the secret in the webhook URL
    # api_base = "http://127.0.0.1:8801/3.0/"   # optional: default from the key's data centre

Credentials: an API key (``crmhub connect NAME``; its ``-us6`` suffix names the data centre)
or OAuth2 (set ``[connections.NAME.oauth] kind = "oauth2"`` with ``client_id``; tokens never
expire and the API endpoint comes from Mailchimp's metadata). How pulls and pushes work is
told in :mod:`connectors.mailchimp.pull` and :mod:`connectors.mailchimp.push`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from connectors.mailchimp.client import MailchimpApi, open_client
from connectors.mailchimp.members import to_record
from connectors.mailchimp.pull import MemberPull
from connectors.mailchimp.push import MemberPush
from connectors.mailchimp.webhook import MailchimpReceiver
from hub.authspec import AuthKind, OAuthSettings
from hub.connector import (
    Change,
    Connector,
    ConnectorContext,
    Cursor,
    Page,
    PushResult,
    RemoteRecord,
    Stream,
)
from hub.errors import ConnectorError
from hub.webhooks import WebhookReceiver

MEMBERS = Stream(
    name="members",
    entity="contact",
    incremental=True,
    can_create=True,
    can_update=True,
    can_delete=True,
    webhooks=True,
)


class MailchimpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    list_id: str = Field(min_length=1)
    """The audience (Audience > Settings > Audience name and defaults > Audience ID)."""
    api_base: str | None = None
    """The API's base URL; default ``https://<dc>.api.mailchimp.com/3.0/``."""
    webhook_secret: SecretStr | None = None
    """The ``secret`` query parameter of the webhook URL given to Mailchimp."""
    batch_threshold: int = Field(20, ge=0)
    """Pushes of more upserts than this use batch subscribe."""
    overlap_seconds: int = Field(300, ge=0)
    """How far back each incremental pull looks again, for changes that showed up late."""
    page_size: int = Field(1000, ge=10, le=1000)

    @field_validator("api_base")
    @classmethod
    def _base(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(
                "api_base must be an http(s) URL, like https://us6.api.mailchimp.com/3.0/"
            )
        return value


class MailchimpConnector(Connector):
    """Members of one audience: full and incremental pulls, upserts, archiving, webhooks."""

    name = "mailchimp"
    description = "Members of a Mailchimp audience (Marketing API v3)."
    Settings = MailchimpSettings
    settings: MailchimpSettings
    push_batch_size = 2000
    auth_kind: ClassVar[AuthKind] = "api_key"
    oauth: ClassVar[OAuthSettings | None] = OAuthSettings(
        authorize_url="https://login.mailchimp.com/oauth2/authorize",
        token_url="https://login.mailchimp.com/oauth2/token",
        metadata_url="https://login.mailchimp.com/oauth2/metadata",
        metadata_auth_scheme="OAuth",
        pkce=False,
    )
    webhook: ClassVar[type[WebhookReceiver] | None] = MailchimpReceiver

    def __init__(self, settings: BaseModel, context: ConnectorContext) -> None:
        super().__init__(settings, context)
        self._api: MailchimpApi | None = None

    async def api(self) -> MailchimpApi:
        if self._api is None:
            client = await open_client(self.context, self.settings.api_base)
            self._api = MailchimpApi(client, self.settings.list_id)
        return self._api

    def streams(self) -> list[Stream]:
        return [MEMBERS]

    async def pull(self, stream: Stream, cursor: Cursor | None) -> AsyncIterator[Page]:
        puller = MemberPull(
            await self.api(),
            page_size=self.settings.page_size,
            overlap=timedelta(seconds=self.settings.overlap_seconds),
        )
        async for page in puller.pages(cursor):
            yield page

    async def push(self, stream: Stream, changes: list[Change]) -> list[PushResult]:
        if not changes:
            return []
        pusher = MemberPush(await self.api(), self.settings.batch_threshold)
        return await pusher.push(changes)

    async def fetch(self, stream: Stream, remote_ids: list[str]) -> list[RemoteRecord]:
        api = await self.api()

        async def one(member_id: str) -> RemoteRecord | None:
            try:
                member = await api.get_member(member_id)
            except ConnectorError:
                return None  # fetch is best effort; the next pull reads it anyway
            return to_record(member) if member and member.get("status") != "archived" else None

        found = await asyncio.gather(*(one(i) for i in remote_ids))
        return [r for r in found if r is not None]

    async def aclose(self) -> None:
        if self._api is not None:
            api, self._api = self._api, None
            await api.aclose()
