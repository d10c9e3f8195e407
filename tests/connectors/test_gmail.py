"""Unit tests of the Gmail connector's parts: quota costs, classification, message reading,
email activity records, settings and the Pub/Sub push receiver (token, OIDC, mailbox)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from connectors.gmail import GmailConnector, GmailSettings
from connectors.gmail.classify import GoogleClassifier
from connectors.gmail.client import gmail_cost
from connectors.gmail.messages import read_message
from connectors.gmail.pubsub_format import problems
from connectors.gmail.pubsub_signer import PushSigner
from connectors.gmail.webhook import PubSubReceiver
from hub.connector import ConnectorContext
from hub.errors import ErrorKind
from hub.mail import MailMessage, activity_record, parse_addresses, people_to_create
from hub.sandbox import serve_sandbox
from hub.webhooks import MalformedDelivery, RequestInfo, WebhookRejected

OWN = frozenset({"me@firm.example"})


def test_quota_units_follow_gmail_and_a_batch_weighs_its_calls() -> None:
    base = "https://gmail.googleapis.com/gmail/v1/users/me"
    assert gmail_cost("GET", f"{base}/messages", None) == 5
    assert gmail_cost("GET", f"{base}/messages/abc", None) == 5
    assert gmail_cost("GET", f"{base}/history", None) == 2
    assert gmail_cost("GET", f"{base}/profile", None) == 1
    assert gmail_cost("POST", f"{base}/watch", None) == 100
    parts = b"".join(
        b"--b\r\nContent-Type: application/http\r\n\r\n"
        b"GET /gmail/v1/users/me/messages/%d?format=metadata HTTP/1.1\r\n\r\n" % i
        for i in range(50)
    )
    assert gmail_cost("POST", "https://gmail.googleapis.com/batch", parts) == 250


def answer(status: int, reason: str = "", code: str = "") -> httpx.Response:
    error: dict[str, Any] = {"code": status, "message": "m", "status": code}
    if reason:
        error["errors"] = [{"reason": reason, "domain": "usageLimits", "message": "m"}]
    return httpx.Response(status, json={"error": error})


def test_rate_limit_403s_are_throttling_other_403s_go_to_the_library() -> None:
    c = GoogleClassifier()
    assert c.classify(answer(403, "userRateLimitExceeded")) == ErrorKind.RATE_LIMITED
    assert c.classify(answer(403, "rateLimitExceeded")) == ErrorKind.RATE_LIMITED
    assert c.classify(answer(429, "rateLimitExceeded")) == ErrorKind.RATE_LIMITED
    assert c.classify(answer(403, "forbidden")) is None  # permanent: raised by the library
    assert c.classify(answer(404, "notFound")) is None
    assert c.classify(answer(401)) == ErrorKind.NEEDS_REAUTH
    assert c.classify(answer(503)) == ErrorKind.TRANSIENT
    assert "userRateLimitExceeded" in c.describe(answer(403, "userRateLimitExceeded"))


def test_a_full_message_is_read_with_its_body_cut() -> None:
    text = "Grüße " * 10
    message = {
        "id": "m1",
        "threadId": "t1",
        "labelIds": ["SENT"],
        "snippet": "it&#39;s here",
        "internalDate": "1714560000000",
        "payload": {
            "mimeType": "multipart/alternative",
            "headers": [
                {"name": "From", "value": '"Me" <Me@Firm.example>'},
                {"name": "To", "value": "Ann <ann@client.example>, bob@client.example"},
                {"name": "Message-ID", "value": "<ABC@mail.example>"},
                {"name": "Subject", "value": "Quote"},
            ],
            "parts": [
                {"mimeType": "text/html", "body": {"data": "PGI-"}},
                {
                    "mimeType": "text/plain",
                    "body": {"data": base64.urlsafe_b64encode(text.encode()).decode()},
                },
            ],
        },
    }
    read = read_message(message, body_limit=9)
    assert read.body == "Grüße G"  # 9 bytes; a character is never cut in half
    assert read.snippet == "it's here" and read.sent_by_mailbox
    assert read.sent_at == datetime(2024, 5, 1, 10, 40, tzinfo=UTC)
    record = activity_record(read, "gmail", OWN)
    assert record.data["direction"] == "out" and record.data["message_id"] == "abc@mail.example"
    assert record.data["participant_emails"] == ["ann@client.example", "bob@client.example"]
    assert record.data["participant_names"] == ["Ann", ""]
    assert record.data["body"] == read.body and record.modified_at == read.sent_at


def test_people_to_create_follow_the_setting() -> None:
    def message(sender: str, to: str, sent: bool) -> MailMessage:
        return MailMessage(
            id=sender,
            sent_at=datetime.now(UTC),
            sender=parse_addresses(sender)[0],
            to=parse_addresses(to),
            sent_by_mailbox=sent,
        )

    mail = [
        message("me@firm.example", "Ann <ann@client.example>", True),
        message("Spammer <spam@junk.example>", "me@firm.example", False),
    ]
    assert people_to_create(mail, OWN, "never") == {}
    assert people_to_create(mail, OWN, "outgoing") == {"ann@client.example": "Ann"}
    assert people_to_create(mail, OWN, "all") == {
        "ann@client.example": "Ann",
        "spam@junk.example": "Spammer",
    }


def test_settings_are_checked_when_the_configuration_loads() -> None:
    with pytest.raises(ValidationError, match="mailboxes"):
        GmailSettings(service_account_file="key.json")
    with pytest.raises(ValidationError, match="push_token"):
        GmailSettings(pubsub_topic="projects/p/topics/t")
    with pytest.raises(ValidationError, match="pubsub_topic"):
        GmailSettings(pubsub_topic="my-topic", push_token="x")
    with pytest.raises(ValidationError, match="not an email address"):
        GmailSettings(mailboxes=["nobody"])
    assert GmailSettings(mailboxes=[" Me@Firm.Example "]).mailboxes == ["me@firm.example"]


# -- the push receiver ------------------------------------------------------------------


def push_body(email: str = "me@firm.example", history: int = 812, **extra: Any) -> bytes:
    data = base64.b64encode(json.dumps({"emailAddress": email, "historyId": history}).encode())
    message = {
        "data": data.decode(),
        "attributes": {},
        "messageId": "136969346945",
        "message_id": "136969346945",
        "publishTime": "2024-05-01T10:40:00.123Z",
        "publish_time": "2024-05-01T10:40:00.123Z",
    }
    envelope = {"message": message, "subscription": "projects/p/subscriptions/gmail", **extra}
    return json.dumps(envelope).encode()


def request(token: str | None = "tok-123", auth: str | None = None) -> RequestInfo:
    headers = {"content-type": "application/json"}
    if auth:
        headers["authorization"] = auth
    return RequestInfo(
        method="POST",
        path="/hooks/gm",
        subpath="",
        query={"token": token} if token else {},
        headers=headers,
    )


class CertServer:
    """The signer's certificates served like Google's."""

    def __init__(self) -> None:
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        self.signer = PushSigner()
        self.app = Starlette(routes=[Route("/certs", lambda r: JSONResponse(self.signer.certs()))])


@pytest.fixture
def certs() -> Iterator[tuple[PushSigner, str]]:
    server = CertServer()
    url, handle = serve_sandbox(server.app)
    try:
        yield server.signer, f"{url}/certs"
    finally:
        handle.stop()


def receiver(tmp_path: Path, **settings: Any) -> PubSubReceiver:
    options = {
        "mailboxes": ["me@firm.example"],
        "pubsub_topic": "projects/p/topics/gmail",
        "push_token": "tok-123",
        **settings,
    }
    connector = GmailConnector(GmailSettings(**options), ConnectorContext("gm", tmp_path))
    return PubSubReceiver(connector)


async def test_a_push_with_the_url_token_is_accepted_once_per_message(tmp_path: Path) -> None:
    delivery = await receiver(tmp_path).verify(request(), push_body())
    assert delivery.delivery_id == "pubsub:136969346945" and delivery.store
    assert problems(push_body(), {"content-type": "application/json"}) == []


@pytest.mark.parametrize(
    ("token", "body", "status"),
    [
        (None, push_body(), 401),
        ("wrong", push_body(), 401),
        ("tok-123", push_body(email="other@firm.example"), 404),
    ],
)
async def test_forged_and_unknown_pushes_are_refused(
    tmp_path: Path, token: str | None, body: bytes, status: int
) -> None:
    with pytest.raises(WebhookRejected) as refused:
        await receiver(tmp_path).verify(request(token), body)
    assert refused.value.status == status and not refused.value.store


async def test_an_authentic_but_unreadable_push_is_kept_as_malformed(tmp_path: Path) -> None:
    with pytest.raises(MalformedDelivery, match="base64"):
        await receiver(tmp_path).verify(request(), b'{"message": {"messageId": "1", "data": "%%"}}')


async def test_the_oidc_token_is_verified_with_google_auth(
    tmp_path: Path, certs: tuple[PushSigner, str]
) -> None:
    signer, url = certs
    hook = receiver(
        tmp_path,
        push_audience="https://hub.example/hooks/gm",
        push_service_account=signer.account,
        push_certs_url=url,
        push_subscription="projects/p/subscriptions/gmail",
    )
    good = signer.token("https://hub.example/hooks/gm")
    assert (await hook.verify(request(auth=f"Bearer {good}"), push_body())).store
    forged = [
        None,  # no token
        signer.token("https://elsewhere.example/"),  # another audience
        signer.token("https://hub.example/hooks/gm", account="intruder@x.example"),
        signer.token("https://hub.example/hooks/gm", lifetime=-3600),  # expired
        PushSigner().token("https://hub.example/hooks/gm"),  # signed by an unknown key
    ]
    for token in forged:
        with pytest.raises(WebhookRejected) as refused:
            await hook.verify(request(auth=f"Bearer {token}" if token else None), push_body())
        assert refused.value.status == 401
    other = push_body()[:-1] + b',"deliveryAttempt": 2}'
    assert (await hook.verify(request(auth=f"Bearer {good}"), other)).store
    wrong_sub = json.loads(push_body())
    wrong_sub["subscription"] = "projects/p/subscriptions/elsewhere"
    with pytest.raises(WebhookRejected):
        await hook.verify(request(auth=f"Bearer {good}"), json.dumps(wrong_sub).encode())
