"""Unit tests of the Outlook connector's parts: settings, message reading, classification
and the change-notification receiver (validation, client state, known subscriptions)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from connectors.outlook import OutlookConnector, OutlookSettings
from connectors.outlook.classify import GraphClassifier, graph_error
from connectors.outlook.messages import read_message
from connectors.outlook.webhook import GraphReceiver
from hub.connector import ConnectorContext
from hub.errors import ErrorKind
from hub.mail import activity_record
from hub.renewals import save_state
from hub.store import Store
from hub.webhooks import RequestInfo, WebhookRejected

STATE = "state-0123456789"


def test_settings_are_checked_when_the_configuration_loads() -> None:
    with pytest.raises(ValidationError, match="client_state"):
        OutlookSettings(mailbox="me@firm.example", notification_url="https://hub/hooks/o")
    with pytest.raises(ValidationError, match="128"):
        OutlookSettings(
            mailbox="me@firm.example", notification_url="https://h/x", client_state="x" * 129
        )
    with pytest.raises(ValidationError, match="not an email address"):
        OutlookSettings(mailbox="me")
    assert OutlookSettings(mailbox=" Me@Firm.example").mailbox == "me@firm.example"


def test_a_sent_message_is_outgoing_and_keeps_its_ids() -> None:
    data = {
        "id": "AAMk1",
        "conversationId": "AAQk9",
        "internetMessageId": "<Offer@Mail.Example>",
        "subject": "Offer",
        "bodyPreview": "Here",
        "body": {"contentType": "text", "content": "Here it is, in full."},
        "sentDateTime": "2024-05-01T10:40:00Z",
        "receivedDateTime": "2024-05-01T10:40:02Z",
        "from": {"emailAddress": {"name": "Me", "address": "me@firm.example"}},
        "toRecipients": [{"emailAddress": {"name": "Olga", "address": "Olga@Client.example"}}],
        "ccRecipients": [],
        "bccRecipients": [{"emailAddress": {"name": "", "address": "boss@firm.example"}}],
    }
    message = read_message(data, sent=True, body_limit=7)
    record = activity_record(message, "outlook", frozenset({"me@firm.example"}))
    assert record.data["direction"] == "out" and record.data["thread_id"] == "AAQk9"
    assert record.data["message_id"] == "offer@mail.example" and record.data["body"] == "Here it"
    assert record.data["participant_emails"] == ["olga@client.example", "boss@firm.example"]
    assert record.data["sent_at"] == "2024-05-01T10:40:00Z"


def test_throttles_are_retried_and_other_errors_answered() -> None:
    c = GraphClassifier()
    body = {"error": {"code": "ApplicationThrottled", "message": "MailboxConcurrency"}}
    assert c.classify(httpx.Response(429, json=body)) == ErrorKind.RATE_LIMITED
    assert c.classify(httpx.Response(503)) == ErrorKind.RATE_LIMITED
    assert c.classify(httpx.Response(401)) == ErrorKind.NEEDS_REAUTH
    assert c.classify(httpx.Response(412)) is None
    gone = graph_error(410, {"error": {"code": "SyncStateNotFound"}}, "o", "delta")
    assert gone.resync and not graph_error(404, {}, "o", "get").resync
    assert graph_error(400, {"error": {"code": "syncStateNotFound"}}, "o", "delta").resync


def note(subscription: str, client_state: str, **extra: Any) -> bytes:
    item = {
        "subscriptionId": subscription,
        "subscriptionExpirationDateTime": "2026-12-10T00:00:00Z",
        "changeType": "created",
        "resource": "Users/u/Messages/m",
        "resourceData": {"@odata.type": "#Microsoft.Graph.Message", "@odata.id": "x", "id": "m"},
        "clientState": client_state,
        "tenantId": "t",
        **extra,
    }
    return json.dumps({"value": [item]}).encode()


def request(query: dict[str, str] | None = None, subpath: str = "") -> RequestInfo:
    return RequestInfo(
        "POST", "/hooks/ol", subpath, query or {}, {"content-type": "application/json"}
    )


async def test_the_receiver_checks_client_state_and_subscription(
    tmp_path: Path, store: Store
) -> None:
    settings = OutlookSettings(
        mailbox="me@firm.example", notification_url="https://hub/hooks/ol", client_state=STATE
    )
    connector = OutlookConnector(settings, ConnectorContext("ol", tmp_path, store=store))
    receiver = GraphReceiver(connector)
    await save_state(store, "ol", {"subscriptions": {"inbox": {"id": "sub-1"}}})

    validation = await receiver.verify(request({"validationToken": "tok en"}), b"")
    assert not validation.store and validation.response is not None
    assert validation.response.body == "tok en"
    assert validation.response.content_type.startswith("text/plain")

    accepted = await receiver.verify(request(), note("sub-1", STATE))
    assert accepted.store and accepted.kind == "graph.change"
    lifecycle = note("sub-1", STATE, lifecycleEvent="missed")
    assert (
        await receiver.verify(request(subpath="lifecycle"), lifecycle)
    ).kind == "graph.lifecycle"
    for body in (note("sub-1", "guessed"), note("sub-2", STATE), b'{"value": []}', b"x"):
        with pytest.raises(WebhookRejected) as refused:
            await receiver.verify(request(), body)
        assert refused.value.status == 401 and not refused.value.store
    with pytest.raises(WebhookRejected):
        await receiver.verify(request(subpath="other"), note("sub-1", STATE))
