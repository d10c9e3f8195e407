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

The connector is pull-only: submissions are never written back. It reads its form's
deliveries through the hub's services for the connection (``ConnectorContext.services``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, ClassVar

from fastapi import APIRouter

from connectors.webforms.routes import form_routes
from connectors.webforms.settings import WebFormsSettings
from connectors.webforms.submission import KIND, Submission
from connectors.webforms.webhook import FormReceiver
from hub.connector import Connector, Cursor, Page, RemoteRecord, Stream
from hub.errors import ConnectorConfigError, PermanentError
from hub.webhooks import WebhookReceiver

if TYPE_CHECKING:
    from hub.runtime import Hub
    from hub.services import ConnectionServices

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

    def _services(self) -> ConnectionServices:
        services = self.context.services
        if services is None:
            raise ConnectorConfigError(
                "web form submissions live in the hub's store, and this connector was built "
                "without one; run it through the hub (crmhub sync / crmhub up)",
                connection=self.connection,
            )
        return services

    async def pull(self, stream: Stream, cursor: Cursor | None) -> AsyncIterator[Page]:
        after = _after(cursor, self.connection)
        make = Submission.contact_record if stream.name == SUBMISSIONS.name else None
        services = self._services()
        while True:
            items = await services.deliveries(KIND, after=after, limit=PAGE_SIZE)
            if not items:
                return
            records: list[RemoteRecord] = []
            for item in items:
                try:
                    sub = Submission.from_json(item.body)
                except (ValueError, KeyError, TypeError):
                    log.warning(
                        "inbox item %s of %r is not a submission", item.id, item.delivery_id
                    )
                    continue
                records.append(make(sub) if make else sub.activity_record())
            after = items[-1].id
            yield Page(records=records, cursor={"after": after})
            if len(items) < PAGE_SIZE:
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
