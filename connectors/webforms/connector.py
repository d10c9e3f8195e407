"""Connector ``webforms``: one web form per connection; its submissions become contacts and
activities.

Settings (``[connections.NAME]`` in ``crmhub.toml``; all of them in
:class:`~connectors.webforms.settings.WebFormsSettings`)::

    connector = "webforms"
    direction = "pull"
    key = "..."                       # the form's URL: /forms/<key>
    form_secret = "..."               # signs the issue time handed out with the form
    thank_you_url = "https://www.example.com/thanks"
    allowed_origins = ["https://www.example.com"]

Forms post to the hub (``connectors.webforms.routes``), which stores each accepted
submission in the inbox before answering. The inbox is the source of truth: a pull reads
this form's stored submissions after the cursor (``{"after": <inbox id>}``), so the engine
matches each one to a contact by normalised email and merges it like any other record.
Storing a submission wakes the inbox processor, whose handler
(:class:`~connectors.webforms.webhook.FormReceiver`) runs a sync of the form at once.

The connector is pull-only: submissions are never written back. It reads the hub's store,
which the hub hands it in ``ConnectorContext.store``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, ClassVar

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from connectors.webforms.routes import form_routes
from connectors.webforms.settings import WebFormsSettings
from connectors.webforms.submission import KIND, Submission
from connectors.webforms.webhook import FormReceiver
from hub.connector import Connector, Cursor, Page, RemoteRecord, Stream
from hub.errors import ConnectorConfigError, PermanentError, TransientError
from hub.store.schema import inbox
from hub.webhooks import WebhookReceiver

if TYPE_CHECKING:
    from hub.runtime import Hub
    from hub.store import Store

log = logging.getLogger("connectors.webforms")

SUBMISSIONS = Stream(name="submissions", entity="contact", incremental=True, webhooks=True)
ACTIVITIES = Stream(name="activities", entity="activity", incremental=True, webhooks=True)
PAGE_SIZE = 200


class WebFormsConnector(Connector):
    """Submissions of one web form (browser, Typeform, Tally or Jotform), read from the inbox."""

    name = "webforms"
    description = "Web forms posting to the hub: submissions become contacts and activities."
    Settings = WebFormsSettings
    settings: WebFormsSettings
    auth_kind: ClassVar[str | None] = "none"
    webhook: ClassVar[type[WebhookReceiver] | None] = FormReceiver
    routes: ClassVar[Callable[[Hub], APIRouter] | None] = form_routes

    def streams(self) -> list[Stream]:
        return [SUBMISSIONS, ACTIVITIES]

    def _store(self) -> Store:
        if self.context.store is None:
            raise ConnectorConfigError(
                "web form submissions live in the hub's store, and this connector was built "
                "without one; run it through the hub (crmhub sync / crmhub up)",
                connection=self.connection,
            )
        return self.context.store

    async def pull(self, stream: Stream, cursor: Cursor | None) -> AsyncIterator[Page]:
        after = _after(cursor, self.connection)
        make = Submission.contact_record if stream.name == SUBMISSIONS.name else None
        store = self._store()
        while True:
            query = (
                select(inbox.c.id, inbox.c.delivery_id, inbox.c.body)
                .where(
                    inbox.c.source == self.connection,
                    inbox.c.kind == KIND,
                    inbox.c.status != "malformed",
                    inbox.c.id > after,
                )
                .order_by(inbox.c.id)
                .limit(PAGE_SIZE)
            )
            try:
                async with store.connect() as db:
                    rows = (await db.execute(query)).all()
            except SQLAlchemyError as exc:
                raise TransientError(
                    f"reading form submissions failed: {exc}", connection=self.connection
                ) from exc
            if not rows:
                return
            records: list[RemoteRecord] = []
            for item_id, delivery_id, body in rows:
                try:
                    sub = Submission.from_json(body)
                except (ValueError, KeyError, TypeError):
                    log.warning("inbox item %s of %r is not a submission", item_id, delivery_id)
                    continue
                records.append(make(sub) if make else sub.activity_record())
            after = int(rows[-1][0])
            yield Page(records=records, cursor={"after": after})
            if len(rows) < PAGE_SIZE:
                return


def _after(cursor: Cursor | None, connection: str) -> int:
    if not cursor:
        return 0
    value = cursor.get("after")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise PermanentError(
        f"cursor {cursor!r} is not a web form cursor ({{'after': <inbox id>}}); "
        "run a full sync (crmhub sync --full)",
        connection=connection,
    )
