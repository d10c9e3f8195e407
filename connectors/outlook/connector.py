"""Connector ``outlook``: an Outlook mailbox's mail as activities, its contacts both ways,
through Microsoft Graph with msal.

Streams, pulled in this order: ``contacts`` (contact, both ways:
:mod:`connectors.outlook.contacts`), ``participants`` (contact, pull only: the people
``create_contacts`` chooses, from Sent Items for ``outgoing``) and ``messages`` (activity,
pull only: :mod:`connectors.outlook.pull`, per folder).

Credentials: a user signs in (``crmhub connect``: msal's authorization code flow, its
token cache kept encrypted in the vault), or the application acts for itself with
administrator-consented application permissions (``oauth.client_credentials = true``; the
mailbox is then read as ``/users/<mailbox>``). Change notifications, when
``notification_url`` is set: a subscription per folder and for contacts, created and
renewed by the daemon (:meth:`OutlookConnector.renew`), received by
:class:`~connectors.outlook.webhook.GraphReceiver`.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from pydantic import BaseModel

from connectors.outlook.client import GraphApi, user_path
from connectors.outlook.contacts import ContactPull
from connectors.outlook.contacts_push import ContactPush
from connectors.outlook.messages import MESSAGE_FIELDS, PEOPLE_FIELDS
from connectors.outlook.pull import FolderPull
from connectors.outlook.settings import OutlookSettings
from connectors.outlook.webhook import GraphReceiver
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
from hub.errors import NeedsReauth
from hub.mail import MailMessage, activity_record, people_to_create, person_record
from hub.webhooks import WebhookReceiver

__all__ = ["OutlookConnector"]

CONTACTS = Stream(
    "contacts", "contact", incremental=True, can_create=True, can_update=True, can_delete=True
)
PARTICIPANTS = Stream("participants", "contact", incremental=True)
MESSAGES = Stream("messages", "activity", incremental=True, webhooks=True)


class OutlookConnector(Connector):
    """Messages as activities, contacts both ways, change notifications."""

    name = "outlook"
    description = "Outlook (Microsoft Graph): messages as activities, contacts both ways."
    Settings = OutlookSettings
    settings: OutlookSettings
    push_batch_size = 1000
    auth_kind: ClassVar[AuthKind] = "msal"
    oauth: ClassVar[OAuthSettings | None] = OAuthSettings(
        authority="https://login.microsoftonline.com/common",
        scopes=["Mail.Read", "Contacts.ReadWrite", "offline_access"],
    )
    webhook: ClassVar[type[WebhookReceiver] | None] = GraphReceiver
    renew_every: ClassVar[timedelta | None] = timedelta(hours=12)

    def __init__(self, settings: BaseModel, context: ConnectorContext) -> None:
        super().__init__(settings, context)
        self._api: GraphApi | None = None

    def streams(self) -> list[Stream]:
        found = [CONTACTS] if self.settings.contacts else []
        if self.settings.create_contacts != "never":
            found.append(PARTICIPANTS)
        return [*found, MESSAGES]

    async def api(self) -> GraphApi:
        if self._api is None:
            if self.context.credentials is None:
                raise NeedsReauth(
                    f"not connected; run `crmhub connect {self.connection}`",
                    connection=self.connection,
                )
            auth = self.context.credentials.auth()
            adapter = getattr(auth, "adapter", None)
            resolved = getattr(adapter, "resolved", None)
            application = bool(resolved and resolved.settings.client_credentials)
            self._api = GraphApi(
                self.context,
                auth,
                graph_url=self.settings.graph_url,
                user=user_path(self.settings.mailbox, application),
                limit_key=self.settings.mailbox,
                per_10_minutes=self.settings.requests_per_10_minutes,
                verify=self._verify(resolved),
            )
        return self._api

    def _verify(self, resolved: Any) -> Any:
        if self.settings.ca_bundle:
            path = self.context.base_dir / self.settings.ca_bundle
            return ssl.create_default_context(cafile=str(path))
        return resolved.ssl_context() if resolved is not None else True

    @property
    def own(self) -> frozenset[str]:
        return frozenset({self.settings.mailbox, *self.settings.own_addresses})

    # -- pull -----------------------------------------------------------------------------

    async def pull(self, stream: Stream, cursor: Cursor | None) -> AsyncIterator[Page]:
        api = await self.api()
        if stream.name == CONTACTS.name:
            async for page in ContactPull(api, self.settings.page_size).pages(cursor):
                yield page
            return
        folders = dict((cursor or {}).get("folders") or {}) if isinstance(cursor, dict) else {}
        for folder_pull in self._folders(api, stream):
            async for step in folder_pull.steps(folders.get(folder_pull.folder)):
                folders[folder_pull.folder] = step.state
                yield Page(step.records, step.deleted, {"folders": dict(folders)})

    def _folders(self, api: GraphApi, stream: Stream) -> list[FolderPull]:
        settings, own = self.settings, self.own
        if stream.name == MESSAGES.name:
            folders = settings.folders
            fields = MESSAGE_FIELDS
            body_limit = settings.max_body_bytes if settings.body == "text" else None

            def records(messages: list[MailMessage]) -> list[RemoteRecord]:
                return [activity_record(m, "outlook", own) for m in messages]
        else:
            folders = ["sentitems"] if settings.create_contacts == "outgoing" else settings.folders
            fields, body_limit = PEOPLE_FIELDS, None

            def records(messages: list[MailMessage]) -> list[RemoteRecord]:
                people = people_to_create(messages, own, settings.create_contacts)
                return [person_record(email, name) for email, name in people.items()]

        return [
            FolderPull(
                api,
                folder,
                fields,
                records,
                window_days=settings.window_days,
                page_size=settings.page_size,
                body_limit=body_limit,
                deletes=stream.name == MESSAGES.name,
            )
            for folder in folders
        ]

    # -- push -----------------------------------------------------------------------------

    async def push(self, stream: Stream, changes: list[Change]) -> list[PushResult]:
        if not changes:
            return []
        if stream.name != CONTACTS.name:
            return await super().push(stream, changes)
        return await ContactPush(await self.api()).push(changes)

    async def fetch(self, stream: Stream, remote_ids: list[str]) -> list[RemoteRecord]:
        if stream.name != CONTACTS.name:
            return []
        return await ContactPull(await self.api()).fetch(remote_ids)

    # -- change notifications -------------------------------------------------------------

    def resources(self) -> dict[str, str]:
        """What the connection subscribes to: each folder's messages, and contacts."""
        path = f"users/{self.settings.mailbox}"
        found = {f: f"{path}/mailFolders('{f}')/messages" for f in self.settings.folders}
        if self.settings.contacts:
            found["contacts"] = f"{path}/contacts"
        return found

    async def renew(self, state: dict[str, Any]) -> dict[str, Any]:
        """Extend each subscription to its longest life; make the missing ones (Graph then
        calls the hub to validate the notification URL)."""
        url = self.settings.notification_url
        if not url or self.settings.client_state is None:
            return {}
        api = await self.api()
        expires = datetime.now(UTC) + timedelta(minutes=self.settings.subscription_minutes - 5)
        stamp = expires.strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
        held: dict[str, Any] = dict(state.get("subscriptions") or {})
        kept: dict[str, Any] = {}
        for key, resource in self.resources().items():
            old = held.get(key)
            if old and old.get("resource") == resource:
                answer = await api.call(
                    "PATCH",
                    f"{api.base}/subscriptions/{old['id']}",
                    "subscription renewal",
                    json={"expirationDateTime": stamp},
                    missing_ok=True,
                )
                if answer is not None:
                    kept[key] = {**old, "expires": stamp}
                    continue
            created = await api.call(
                "POST",
                f"{api.base}/subscriptions",
                "subscription",
                json={
                    "changeType": "created,updated,deleted",
                    "notificationUrl": url,
                    "lifecycleNotificationUrl": url.rstrip("/") + "/lifecycle",
                    "resource": resource,
                    "expirationDateTime": stamp,
                    "clientState": self.settings.client_state.get_secret_value(),
                },
            )
            kept[key] = {"id": created["id"], "resource": resource, "expires": stamp}
        return {"subscriptions": kept}

    async def aclose(self) -> None:
        if self._api is not None:
            api, self._api = self._api, None
            await api.aclose()
