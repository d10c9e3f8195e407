"""Connector ``slack``: who is who in a Slack workspace, customer conversations of chosen
channels as activities, the Events API, and notifications to the team.

Streams, pulled in this order: ``users`` (contact, pull only: :mod:`connectors.slack.users`)
and ``messages`` (activity, pull only, per followed channel: :mod:`connectors.slack.messages`).

Credentials: the app's bot token from OAuth v2 (``crmhub connect``: ``oauth.v2.access``);
with token rotation switched on for the app, 12-hour access tokens refreshed through the
vault. Events (``signing_secret`` set): :class:`~connectors.slack.webhook.SlackReceiver`.
Notifications: rules in ``[[connections.NAME.notify]]``, posted by the daemon's upkeep turn
(:meth:`SlackConnector.renew`, :mod:`connectors.slack.notify`).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import Any, ClassVar

from pydantic import BaseModel

from connectors.slack.client import SlackApi, require_credentials
from connectors.slack.messages import ChannelPull, Directory
from connectors.slack.settings import SlackSettings
from connectors.slack.users import Person, UserPull
from connectors.slack.webhook import SlackReceiver
from hub.authspec import AuthKind, OAuthSettings
from hub.connector import Connector, ConnectorContext, Cursor, Page, Stream
from hub.webhooks import WebhookReceiver

__all__ = ["BOT_SCOPES", "SlackConnector"]

USERS = Stream("users", "contact", incremental=True, webhooks=True)
MESSAGES = Stream("messages", "activity", incremental=True, webhooks=True)

BOT_SCOPES = [
    "users:read",
    "users:read.email",
    "channels:history",
    "groups:history",
    "chat:write",
]
"""The bot scopes crmhub asks for (the README says what each is for)."""


class SlackConnector(Connector):
    """People as contacts, followed channels' messages as activities, events, notifications."""

    name = "slack"
    description = "Slack: people as contacts, shared channels' messages as activities."
    Settings = SlackSettings
    settings: SlackSettings
    auth_kind: ClassVar[AuthKind] = "oauth2"
    oauth: ClassVar[OAuthSettings | None] = OAuthSettings(
        authorize_url="https://slack.com/oauth/v2/authorize",
        token_url="https://slack.com/api/oauth.v2.access",
        scopes=BOT_SCOPES,
        # Slack reads the bot scopes as one comma-separated list
        authorize_params={"scope": ",".join(BOT_SCOPES)},
        pkce=False,
        rotates_refresh_tokens=True,
    )
    webhook: ClassVar[type[WebhookReceiver] | None] = SlackReceiver
    # a little under the daemon's one-minute upkeep turn, so that every turn is due
    renew_every: ClassVar[timedelta | None] = timedelta(seconds=50)

    def __init__(self, settings: BaseModel, context: ConnectorContext) -> None:
        super().__init__(settings, context)
        self._api: SlackApi | None = None
        self._team: str | None = self.settings.own_team
        self.people: dict[str, Person] = {}

    def streams(self) -> list[Stream]:
        # people without an address are matched to a contact by name when asked to
        users = replace(USERS, match_by_name=self.settings.match_by_name)
        return [users, MESSAGES] if self.settings.channels else [users]

    def api(self) -> SlackApi:
        if self._api is None:
            s = self.settings
            workspace = s.own_team or hashlib.sha256(self.connection.encode()).hexdigest()[:12]
            self._api = SlackApi(
                self.context,
                require_credentials(self.context),
                api_url=s.api_url,
                workspace=workspace,
                per_minute={2: s.tier2_per_minute, 3: s.tier3_per_minute, 4: s.tier4_per_minute},
            )
        return self._api

    async def team(self) -> str:
        """The workspace's team id (``own_team``, else ``auth.test`` once per run)."""
        if self._team is None:
            body = await self.api().call("auth.test")
            self._team = str(body.get("team_id") or "")
        return self._team

    async def pull(self, stream: Stream, cursor: Cursor | None) -> AsyncIterator[Page]:
        api = self.api()
        s = self.settings
        if stream.name == USERS.name:
            people = UserPull(
                api,
                page_size=s.page_size,
                with_email_only=not s.match_by_name,
                directory=self.people,
            )
            async for page in people.pages(cursor):
                yield page
            return
        team = await self.team()
        directory = Directory(api, self.people)
        channels: dict[str, Any] = dict((cursor or {}).get("channels") or {})
        for channel in s.channels:
            puller = ChannelPull(
                api,
                channel,
                team,
                directory,
                page_size=s.page_size,
                history_days=s.history_days,
                thread_days=s.thread_days,
            )
            async for step in puller.steps(channels.get(channel)):
                channels[channel] = step.state
                yield Page(records=step.records, cursor={"channels": dict(channels)})

    async def renew(self, state: dict[str, Any]) -> dict[str, Any]:
        """The daemon's upkeep turn: post the notifications whose events happened since."""
        from connectors.slack.notify import Notifier

        services = self.context.services
        if not self.settings.notify or services is None:
            return state
        return await Notifier(self, services).run(state)

    async def aclose(self) -> None:
        if self._api is not None:
            api, self._api = self._api, None
            await api.aclose()
