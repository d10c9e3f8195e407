"""Connector ``gmail``: a Gmail mailbox's mail as activities, its contacts both ways.

Streams, pulled in this order:

- ``contacts`` (contact, both ways): the mailbox's Google contacts (People API); see
  :mod:`connectors.gmail.contacts` and :mod:`connectors.gmail.contacts_push`. Offered when
  ``contacts = true`` and the connection reads one mailbox.
- ``participants`` (contact, pull only): the people ``create_contacts`` makes contacts of
  (``outgoing``: whom the mailbox wrote to; ``all``: everyone), remote id = the address.
- ``messages`` (activity, pull only): one activity per message (:mod:`hub.mail`), read as
  :mod:`connectors.gmail.pull` tells; pushed by Pub/Sub when ``pubsub_topic`` is set.

Credentials: a user's OAuth token (``crmhub connect``, the vault refreshes it through
google-auth), or a Workspace service account with domain-wide delegation
(``service_account_file`` and ``mailboxes``). Scopes: ``gmail.metadata`` reads headers and
snippets; ``gmail.readonly`` is needed for ``query`` and ``body = "text"``;
``contacts`` for the contacts stream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, ClassVar

from pydantic import BaseModel

from auth.google import GOOGLE_OAUTH, ServiceAccountAuth
from connectors.gmail.client import GmailApi
from connectors.gmail.contacts import ContactPull
from connectors.gmail.contacts_push import ContactPush
from connectors.gmail.messages import HEADERS, PEOPLE_HEADERS
from connectors.gmail.pull import MailboxPull, Reading
from connectors.gmail.settings import GmailSettings
from connectors.gmail.webhook import PubSubReceiver
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
from hub.errors import ConnectorConfigError, NeedsReauth
from hub.mail import MailMessage, activity_record, people_to_create, person_record
from hub.webhooks import WebhookReceiver

__all__ = ["SCOPES", "GmailConnector"]

SCOPE = "https://www.googleapis.com/auth/"
SCOPES = {
    "metadata": SCOPE + "gmail.metadata",
    "readonly": SCOPE + "gmail.readonly",
    "contacts": SCOPE + "contacts",
}
READ_SCOPES = (SCOPES["readonly"], SCOPE + "gmail.modify", "https://mail.google.com/")
CONTACTS = Stream(
    "contacts", "contact", incremental=True, can_create=True, can_update=True, can_delete=True
)
PARTICIPANTS = Stream("participants", "contact", incremental=True)
MESSAGES = Stream("messages", "activity", incremental=True, webhooks=True)


class GmailConnector(Connector):
    """Messages as activities, contacts both ways, new mail pushed through Pub/Sub."""

    name = "gmail"
    description = "Gmail: messages as activities, Google contacts both ways (People API)."
    Settings = GmailSettings
    settings: GmailSettings
    push_batch_size = 1000
    auth_kind: ClassVar[AuthKind] = "google"
    oauth: ClassVar[OAuthSettings | None] = GOOGLE_OAUTH.model_copy(
        update={"scopes": [SCOPES["metadata"], SCOPES["contacts"]]}
    )
    webhook: ClassVar[type[WebhookReceiver] | None] = PubSubReceiver
    renew_every: ClassVar[timedelta | None] = timedelta(days=1)

    def __init__(self, settings: BaseModel, context: ConnectorContext) -> None:
        super().__init__(settings, context)
        self._apis: dict[str, GmailApi] = {}
        self._own: dict[str, frozenset[str]] = {}
        self._scope: str | None = None

    # -- streams ------------------------------------------------------------------------

    @property
    def users(self) -> list[str]:
        """``me`` for a user's token, else the mailboxes of the service account."""
        return list(self.settings.mailboxes) if self.settings.service_account_file else ["me"]

    def streams(self) -> list[Stream]:
        found = []
        if self.settings.contacts and len(self.users) == 1:
            found.append(CONTACTS)
        if self.settings.create_contacts != "never":
            found.append(PARTICIPANTS)
        found.append(MESSAGES)
        return found

    # -- clients ------------------------------------------------------------------------

    def _wanted_scopes(self) -> list[str]:
        read = self.settings.body == "text" or bool(self.settings.query)
        scopes = [SCOPES["readonly" if read else "metadata"]]
        if self.settings.contacts:
            scopes.append(SCOPES["contacts"])
        return scopes

    async def api(self, user: str) -> GmailApi:
        if user not in self._apis:
            if self.settings.service_account_file:
                auth: Any = ServiceAccountAuth(self._key(), self._wanted_scopes(), user)
                self._scope = " ".join(self._wanted_scopes())
            else:
                if self.context.credentials is None:
                    raise NeedsReauth(
                        f"not connected; run `crmhub connect {self.connection}`",
                        connection=self.connection,
                    )
                secret = await self.context.credentials.secret()
                self._scope = str(secret.get("scope") or "") or None
                self._check_scope()
                auth = self.context.credentials.auth()
            self._apis[user] = GmailApi(
                self.context,
                auth,
                api_root=self.settings.api_root,
                limit_key=f"{self.connection}:{user}",
                units_per_second=self.settings.units_per_second,
                people_per_minute=self.settings.people_per_minute,
            )
        return self._apis[user]

    def _key(self) -> dict[str, Any]:
        path = self.context.base_dir / str(self.settings.service_account_file)
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConnectorConfigError(
                f"cannot read the service account key {path}: {exc}", connection=self.connection
            ) from None
        if not isinstance(info, dict):
            raise ConnectorConfigError(f"{path} is not a JSON key", connection=self.connection)
        return info

    def _check_scope(self) -> None:
        read = self.settings.body == "text" or bool(self.settings.query)
        if read and self._scope and not any(s in self._scope.split() for s in READ_SCOPES):
            raise ConnectorConfigError(
                'query and body = "text" need the gmail.readonly scope, which the stored '
                "token lacks; add it to [connections."
                f"{self.connection}.oauth] scopes and run `crmhub connect {self.connection}`",
                connection=self.connection,
            )

    @property
    def may_query(self) -> bool:
        """Gmail's metadata scope forbids search queries."""
        if self._scope is None:
            return True
        return any(s in self._scope.split() for s in READ_SCOPES)

    async def own_addresses(self, user: str) -> frozenset[str]:
        if user not in self._own:
            own = set(self.settings.own_addresses) | set(self.settings.mailboxes)
            if user == "me":
                api = await self.api(user)
                gmail = await api.service("gmail")
                profile = await api.execute(gmail.users().getProfile(userId="me"), "getProfile")
                own.add(str(profile["emailAddress"]).lower())
            else:
                own.add(user)
            self._own[user] = frozenset(own)
        return self._own[user]

    # -- pull ---------------------------------------------------------------------------

    async def pull(self, stream: Stream, cursor: Cursor | None) -> AsyncIterator[Page]:
        if stream.name == CONTACTS.name:
            async for page in ContactPull(await self.api(self.users[0])).pages(cursor):
                yield page
            return
        boxes = dict((cursor or {}).get("boxes") or {}) if isinstance(cursor, dict) else {}
        for user in self.users:
            mailbox = await self.mailbox_pull(stream, user)
            async for step in mailbox.steps(boxes.get(user)):
                boxes[user] = step.state
                cursor = {"boxes": dict(boxes)}
                yield Page(records=step.records, deleted=step.deleted, cursor=cursor)

    async def mailbox_pull(self, stream: Stream, user: str) -> MailboxPull:
        api = await self.api(user)
        own = await self.own_addresses(user)
        prefix = f"{user}/" if len(self.users) > 1 else ""
        settings = self.settings
        if stream.name == MESSAGES.name:
            body_limit = settings.max_body_bytes if settings.body == "text" else None
            reading = Reading(HEADERS, body_limit)

            def records(messages: list[MailMessage]) -> list[RemoteRecord]:
                found = []
                for message in messages:
                    record = activity_record(message, "gmail", own)
                    record.id = prefix + record.id
                    found.append(record)
                return found
        else:
            label = "SENT" if settings.create_contacts == "outgoing" else None
            reading = Reading(PEOPLE_HEADERS, None, label=label, deletes=False)

            def records(messages: list[MailMessage]) -> list[RemoteRecord]:
                people = people_to_create(messages, own, settings.create_contacts)
                return [person_record(email, name) for email, name in people.items()]

        return MailboxPull(
            api,
            user,
            reading,
            records,
            window_days=settings.window_days,
            query=settings.query,
            exclude=frozenset(settings.exclude_labels),
            may_query=self.may_query,
            page_size=settings.page_size,
            batch_size=settings.batch_size,
        )

    # -- push ---------------------------------------------------------------------------

    async def push(self, stream: Stream, changes: list[Change]) -> list[PushResult]:
        if not changes:
            return []
        if stream.name != CONTACTS.name:
            return await super().push(stream, changes)
        return await ContactPush(await self.api(self.users[0])).push(changes)

    async def fetch(self, stream: Stream, remote_ids: list[str]) -> list[RemoteRecord]:
        if stream.name != CONTACTS.name:
            return []
        return await ContactPull(await self.api(self.users[0])).fetch(remote_ids)

    # -- push notifications -------------------------------------------------------------

    async def renew(self, state: dict[str, Any]) -> dict[str, Any]:
        """``users.watch`` for each mailbox (again before the 7 days run out)."""
        topic = self.settings.pubsub_topic
        if not topic:
            return {}
        watches: dict[str, Any] = {}
        for user in self.users:
            api = await self.api(user)
            gmail = await api.service("gmail")
            body: dict[str, Any] = {"topicName": topic}
            if self.settings.watch_labels:
                body.update(labelIds=self.settings.watch_labels, labelFilterBehavior="include")
            answer = await api.execute(gmail.users().watch(userId=user, body=body), "users.watch")
            watches[user] = {"expiration": int(answer["expiration"]), "topic": topic}
        return {"watches": watches}

    async def aclose(self) -> None:
        apis, self._apis = list(self._apis.values()), {}
        for api in apis:
            await api.aclose()
