"""The web form connector: the contract, each provider with signed payloads, every refusal,
duplicates, CORS, the inbox-before-answer promise, the sync into contacts and activities,
and the snippet."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy import func, select
from typer.testing import CliRunner

from connectors.webforms import (
    TOKEN_FIELD,
    FormRefused,
    RateLimiter,
    Submission,
    WebFormsConnector,
    WebFormsSettings,
    check_token,
    issue_token,
)
from connectors.webforms.routes import REJECTED
from hub import metrics
from hub.config import load_config
from hub.connector import Connector, ConnectorContext
from hub.engine import sync_connection
from hub.inbox import Inbox, InboxProcessor
from hub.runtime import Hub
from hub.store import Store
from hub.store.schema import entities, inbox, runs
from hub.testing.contract import ConnectorContract
from hub.web import create_app

HTML_KEY = "contact-form-key-0123456789"
FORM_SECRET = "form-secret-0123456789abcdef"
TF_KEY = "typeform-key-0123456789ab"
TF_SECRET = "typeform-signing-secret"
TALLY_KEY = "tally-key-0123456789abcd"
TALLY_SECRET = "tally-signing-secret"
JOT_KEY = "jotform-key-0123456789abc"
API_KEY = "api-form-key-0123456789ab"
FILES_KEY = "files-form-key-0123456789"
ORIGIN = "https://www.example.com"

CONFIG = f"""\
[hub]
database = "crmhub.db"

[connections.contact]
connector = "webforms"
direction = "pull"
form_name = "Contact us"
key = "{HTML_KEY}"
form_secret = "{FORM_SECRET}"
thank_you_url = "https://www.example.com/thanks"
allowed_origins = ["{ORIGIN}"]
rate_limit = 3

[connections.tf]
connector = "webforms"
direction = "pull"
provider = "typeform"
key = "{TF_KEY}"
signing_secret = "{TF_SECRET}"

[connections.tally]
connector = "webforms"
direction = "pull"
provider = "tally"
key = "{TALLY_KEY}"
signing_secret = "{TALLY_SECRET}"

[connections.jot]
connector = "webforms"
direction = "pull"
provider = "jotform"
key = "{JOT_KEY}"
form_id = "2401"

[connections.api]
connector = "webforms"
direction = "pull"
provider = "json"
key = "{API_KEY}"
require_token = false

[connections.files]
connector = "webforms"
direction = "pull"
key = "{FILES_KEY}"
require_token = false
max_file_bytes = 2000

[connections.people]
connector = "csv"
path = "people.csv"
"""

FORM = "application/x-www-form-urlencoded"


def token(age: float = 10.0, connection: str = "contact") -> str:
    return issue_token(FORM_SECRET, connection, time.time() - age)


def form_body(**fields: Any) -> dict[str, Any]:
    return {"website": "", TOKEN_FIELD: token(), **fields}


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    (tmp_path / "crmhub.toml").write_text(CONFIG)
    (tmp_path / "people.csv").write_text("id,email,first_name,last_name,consent\n")
    opened = await Hub.open(load_config(tmp_path / "crmhub.toml"))
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def client(hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(hub), client=("198.51.100.7", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as c:
        yield c


async def post_form(client: httpx.AsyncClient, key: str, data: dict[str, Any], **kw: Any) -> Any:
    headers = {"content-type": FORM, **kw.pop("headers", {})}
    return await client.post(f"/forms/{key}", content=urlencode(data, doseq=True), headers=headers)


async def rows(hub: Hub, source: str) -> list[tuple[str, str, str]]:
    async with hub.store.connect() as db:
        found = await db.execute(
            select(inbox.c.delivery_id, inbox.c.status, inbox.c.kind).where(
                inbox.c.source == source
            )
        )
        return [(str(a), str(b), str(c)) for a, b, c in found]


async def entity_fields(hub: Hub, kind: str) -> list[dict[str, Any]]:
    async with hub.store.connect() as db:
        found = await db.execute(select(entities.c.fields).where(entities.c.type == kind))
        return [dict(r[0]) for r in found]


async def entity_id(hub: Hub, kind: str) -> str:
    async with hub.store.connect() as db:
        [found] = (await db.execute(select(entities.c.id).where(entities.c.type == kind))).all()
        return str(found[0])


def rejected(form: str, reason: str) -> float:
    return REJECTED.value(form=form, reason=reason)


# ---- browser forms ---------------------------------------------------------------------------


async def test_html_post_is_stored_redirected_and_becomes_a_contact_and_activity(
    hub: Hub, client: httpx.AsyncClient
) -> None:
    data = form_body(
        email=" Ann@Example.COM ", first_name="Ann", last_name="Lee", consent="on", message="Hi"
    )
    answer = await post_form(client, HTML_KEY, data)
    assert answer.status_code == 303
    assert answer.headers["location"] == "https://www.example.com/thanks"
    [(delivery_id, status, kind)] = await rows(hub, "contact")
    assert (status, kind) == ("pending", "submission") and delivery_id.startswith("sha256:")

    report = await sync_connection(hub, "contact")
    assert report.status == "ok", report.errors
    [contact] = await entity_fields(hub, "contact")
    assert contact["email"] == "ann@example.com" and contact["first_name"] == "Ann"
    assert contact["consent"] is True and contact["consent_source"] == "Contact us"
    assert contact["custom.message"] == "Hi"
    [activity] = await entity_fields(hub, "activity")
    assert activity["subject"] == "Contact us"
    assert activity["contacts"] == [await entity_id(hub, "contact")]
    assert activity["kind"] == "form_submission"
    assert json.loads(activity["body"]) == {
        "email": " Ann@Example.COM ",
        "first_name": "Ann",
        "last_name": "Lee",
        "consent": "on",
        "message": "Hi",
    }

    # a second submission from the same address is the same contact, one more activity
    again = form_body(email="ann@example.com", phone="+44 20 7946 0958", **{TOKEN_FIELD: token(20)})
    assert (await post_form(client, HTML_KEY, again)).status_code == 303
    assert (await sync_connection(hub, "contact")).status == "ok"
    [contact] = await entity_fields(hub, "contact")
    assert contact["phone"] == "+442079460958" and contact["consent"] is True
    assert len(await entity_fields(hub, "activity")) == 2


async def test_json_post_answers_json_and_a_duplicate_is_acknowledged_once(
    hub: Hub, client: httpx.AsyncClient
) -> None:
    body = {"email": "bo@example.com", "consent": True, TOKEN_FIELD: token(), "website": ""}
    first = await client.post(f"/forms/{HTML_KEY}", json=body, headers={"origin": ORIGIN})
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "accepted" and first.json()["duplicate"] is False
    assert first.headers["access-control-allow-origin"] == ORIGIN
    second = await client.post(f"/forms/{HTML_KEY}", json=body, headers={"origin": ORIGIN})
    assert second.status_code == 200
    assert second.json() == {**first.json(), "duplicate": True}
    assert len(await rows(hub, "contact")) == 1


async def test_html_form_without_thank_you_url_gets_a_thank_you_page(
    hub: Hub, client: httpx.AsyncClient
) -> None:
    answer = await client.post(
        f"/forms/{FILES_KEY}", data={"email": "cy@example.com"}, files={"cv": ("cv.txt", b"hi")}
    )
    assert answer.status_code == 200 and "<h1>Thank you</h1>" in answer.text
    assert '<html lang="en">' in answer.text
    [(delivery_id, _, _)] = await rows(hub, "files")
    async with hub.store.connect() as db:
        body = await db.scalar(select(inbox.c.body).where(inbox.c.delivery_id == delivery_id))
    assert isinstance(body, bytes)
    sub = Submission.from_json(body)
    assert sub.fields == {"email": "cy@example.com", "cv": "cv.txt"}
    assert sub.files[0]["size"] == 2 and base64.b64decode(sub.files[0]["base64"]) == b"hi"


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("honeypot", 403, "honeypot"),
        ("too_fast", 403, "too_fast"),
        ("expired", 403, "token_expired"),
        ("forged", 403, "token_invalid"),
        ("no_token", 403, "token_missing"),
        ("no_email", 400, "missing_field"),
        ("bad_email", 400, "invalid_email"),
        ("origin", 403, "origin"),
        ("oversize", 413, "too_large"),
    ],
)
async def test_refused_browser_posts_leave_nothing(
    hub: Hub, client: httpx.AsyncClient, case: str, status: int, reason: str
) -> None:
    data = form_body(email="dee@example.com")
    headers: dict[str, str] = {}
    if case == "honeypot":
        data["website"] = "http://spam.example"
    elif case == "too_fast":
        data[TOKEN_FIELD] = token(age=0.5)
    elif case == "expired":
        data[TOKEN_FIELD] = token(age=2 * 86400)
    elif case == "forged":
        data[TOKEN_FIELD] = issue_token("another-secret-entirely", "contact", time.time() - 10)
    elif case == "no_token":
        del data[TOKEN_FIELD]
    elif case == "no_email":
        data["email"] = " "
    elif case == "bad_email":
        data["email"] = "not-an-address"
    elif case == "origin":
        headers["origin"] = "https://evil.example"
    elif case == "oversize":
        data["message"] = "x" * 70_000
    before = rejected("contact", reason)
    answer = await post_form(client, HTML_KEY, data, headers=headers)
    assert answer.status_code == status, answer.text
    assert "<h1>Your submission was not sent</h1>" in answer.text
    assert rejected("contact", reason) == before + 1
    assert await rows(hub, "contact") == []
    assert (await sync_connection(hub, "contact")).status == "ok"
    assert await entity_fields(hub, "contact") == []
    rendered = metrics.REGISTRY.render()
    assert f'crmhub_form_rejected_total{{form="contact",reason="{reason}"}}' in rendered


async def test_wrong_key_is_404_and_files_are_refused_where_not_allowed(
    hub: Hub, client: httpx.AsyncClient
) -> None:
    before = rejected("-", "unknown_form")
    answer = await post_form(client, HTML_KEY[:-1] + "X", form_body(email="e@example.com"))
    assert answer.status_code == 404 and rejected("-", "unknown_form") == before + 1
    answer = await client.post(
        f"/forms/{HTML_KEY}",
        data=form_body(email="e@example.com"),
        files={"cv": ("cv.txt", b"hello")},
        headers={"accept": "application/json"},
    )
    assert answer.status_code == 413 and "no file uploads" in answer.json()["error"]
    too_big = await client.post(
        f"/forms/{FILES_KEY}", data={"email": "e@example.com"}, files={"cv": ("a", b"x" * 2001)}
    )
    assert too_big.status_code == 413
    assert await rows(hub, "contact") == [] and await rows(hub, "files") == []


async def test_malformed_posts_are_kept_as_malformed_and_make_no_contact(
    hub: Hub, client: httpx.AsyncClient
) -> None:
    answer = await client.post(
        f"/forms/{API_KEY}",
        content=b'{"email": "broken',
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 400 and "JSON" in answer.json()["error"]
    answer = await post_form(client, API_KEY, {"email": "f@example.com"})
    assert answer.status_code == 400, "a JSON-only form refuses a form post"
    statuses = sorted(status for _, status, _ in await rows(hub, "api"))
    assert statuses == ["malformed", "malformed"]
    assert (await sync_connection(hub, "api")).status == "ok"
    assert await entity_fields(hub, "contact") == []


async def test_rate_limit_is_per_client_address(hub: Hub) -> None:
    app = create_app(hub)

    def client_from(ip: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(ip, 1234))
        return httpx.AsyncClient(transport=transport, base_url="http://hub")

    async with client_from("203.0.113.1") as one, client_from("203.0.113.2") as two:
        codes = [
            (await post_form(one, HTML_KEY, form_body(email=f"r{i}@example.com"))).status_code
            for i in range(4)
        ]
        assert codes == [303, 303, 303, 429]
        limited = await post_form(one, HTML_KEY, form_body(email="r9@example.com"))
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        other = await post_form(two, HTML_KEY, form_body(email="r5@example.com"))
        assert other.status_code == 303
    assert len(await rows(hub, "contact")) == 4


async def test_cors_only_for_configured_origins(client: httpx.AsyncClient) -> None:
    asks = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
    }
    ok = await client.options(f"/forms/{HTML_KEY}", headers={"origin": ORIGIN, **asks})
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in ok.headers["access-control-allow-methods"]
    other = await client.options(f"/forms/{HTML_KEY}", headers={"origin": "https://x.test", **asks})
    assert other.status_code == 403 and "access-control-allow-origin" not in other.headers
    fresh = await client.get(f"/forms/{HTML_KEY}/token", headers={"origin": "https://x.test"})
    assert fresh.status_code == 200 and "access-control-allow-origin" not in fresh.headers
    fresh = await client.get(f"/forms/{HTML_KEY}/token", headers={"origin": ORIGIN})
    assert fresh.headers["access-control-allow-origin"] == ORIGIN
    assert fresh.headers["cache-control"] == "no-store"
    value = fresh.json()["token"]
    with pytest.raises(FormRefused) as refused:
        check_token(value, FORM_SECRET, "contact", min_seconds=3, max_age=86400)
    assert refused.value.code == "too_fast", "a fresh token is too fresh to post with"
    assert check_token(value, FORM_SECRET, "contact", min_seconds=0, max_age=86400) < 5


async def test_accepted_submission_is_committed_before_the_answer_starts(hub: Hub) -> None:
    app = create_app(hub)
    seen: list[int] = []

    async def probe(scope: Any, receive: Any, send: Any) -> None:
        async def checking_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                other = await Store.open(hub.config.database_url, migrate=False)
                try:  # another connection: sees only what was committed
                    async with other.connect() as db:
                        stored = await db.scalar(select(func.count()).select_from(inbox))
                        seen.append(int(stored or 0))
                finally:
                    await other.close()
            await send(message)

        await app(scope, receive, checking_send)

    transport = httpx.ASGITransport(app=probe)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as c:
        answer = await post_form(c, HTML_KEY, form_body(email="g@example.com"))
    assert answer.status_code == 303 and seen == [1]


# ---- providers -------------------------------------------------------------------------------


def typeform_payload(token_: str = "tok-1") -> bytes:
    return json.dumps(
        {
            "event_id": "01EVT",
            "event_type": "form_response",
            "form_response": {
                "form_id": "abc123",
                "token": token_,
                "submitted_at": "2024-05-01T12:30:00Z",
                "hidden": {"utm_source": "newsletter"},
                "answers": [
                    {
                        "type": "email",
                        "email": "tf@example.com",
                        "field": {"id": "x1", "ref": "email"},
                    },
                    {"type": "text", "text": "Tess", "field": {"id": "x2", "ref": "first_name"}},
                    {"type": "boolean", "boolean": True, "field": {"id": "x3", "ref": "consent"}},
                    {"type": "choices", "choices": {"labels": ["A", "B"]}, "field": {"id": "x4"}},
                ],
            },
        }
    ).encode()


def b64_hmac(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


async def test_typeform_signed_response_is_accepted_and_forgeries_refused(
    hub: Hub, client: httpx.AsyncClient
) -> None:
    body = typeform_payload()
    signed = {"typeform-signature": "sha256=" + b64_hmac(TF_SECRET, body)}
    answer = await client.post(
        f"/forms/{TF_KEY}", content=body, headers={"content-type": "application/json", **signed}
    )
    assert answer.status_code == 200 and answer.json()["id"] == "typeform:tok-1"
    for bad in ("sha256=" + b64_hmac("wrong", body), b64_hmac(TF_SECRET, body), ""):
        refused = await client.post(
            f"/forms/{TF_KEY}", content=body, headers={"typeform-signature": bad}
        )
        assert refused.status_code == 401
    not_a_response = json.dumps({"event_type": "form_started"}).encode()
    malformed = await client.post(
        f"/forms/{TF_KEY}",
        content=not_a_response,
        headers={"typeform-signature": "sha256=" + b64_hmac(TF_SECRET, not_a_response)},
    )
    assert malformed.status_code == 400
    assert sorted(s for _, s, _ in await rows(hub, "tf")) == ["malformed", "pending"]
    assert (await sync_connection(hub, "tf")).status == "ok"
    [contact] = await entity_fields(hub, "contact")
    assert contact["email"] == "tf@example.com" and contact["consent"] is True
    [activity] = await entity_fields(hub, "activity")
    assert activity["occurred_at"] == "2024-05-01T12:30:00Z"
    fields = json.loads(activity["body"])
    assert fields["x4"] == ["A", "B"] and fields["utm_source"] == "newsletter"


async def test_tally_signed_response_is_accepted_and_forgeries_refused(
    hub: Hub, client: httpx.AsyncClient
) -> None:
    payload = {
        "eventId": "evt-1",
        "eventType": "FORM_RESPONSE",
        "createdAt": "2024-05-02T08:00:00.000Z",
        "data": {
            "responseId": "resp-1",
            "formId": "mO1",
            "createdAt": "2024-05-02T08:00:00.000Z",
            "fields": [
                {
                    "key": "question_a",
                    "label": "email",
                    "type": "INPUT_EMAIL",
                    "value": "ta@example.com",
                },
                {"key": "question_b", "label": "first_name", "type": "INPUT_TEXT", "value": "Tal"},
                {
                    "key": "question_c",
                    "label": "Topic",
                    "type": "MULTIPLE_CHOICE",
                    "value": ["o2"],
                    "options": [{"id": "o1", "text": "Sales"}, {"id": "o2", "text": "Support"}],
                },
            ],
        },
    }
    body = json.dumps(payload).encode()
    answer = await client.post(
        f"/forms/{TALLY_KEY}",
        content=body,
        headers={
            "content-type": "application/json",
            "tally-signature": b64_hmac(TALLY_SECRET, body),
        },
    )
    assert answer.status_code == 200 and answer.json()["id"] == "tally:resp-1"
    forged = await client.post(
        f"/forms/{TALLY_KEY}", content=body, headers={"tally-signature": b64_hmac("nope", body)}
    )
    assert forged.status_code == 401
    assert [s for _, s, _ in await rows(hub, "tally")] == ["pending"]
    assert (await sync_connection(hub, "tally")).status == "ok"
    [contact] = await entity_fields(hub, "contact")
    assert (contact["email"], contact["first_name"]) == ("ta@example.com", "Tal")
    [activity] = await entity_fields(hub, "activity")
    assert json.loads(activity["body"])["Topic"] == ["Support"]


async def test_jotform_multipart_with_raw_request(hub: Hub, client: httpx.AsyncClient) -> None:
    raw = {
        "slug": "submit/2401",
        "q3_email": "jo@example.com",
        "q4_name": {"first": "Jo", "last": "Ng"},
        "q5_consent": "Yes",
        "submitDate": "1714567800000",
    }
    data = {"formID": "2401", "submissionID": "5800", "rawRequest": json.dumps(raw)}
    answer = await client.post(f"/forms/{JOT_KEY}", data=data, files={"x": ("", b"")})
    assert answer.status_code == 200 and answer.json()["id"] == "jotform:5800"
    again = await client.post(f"/forms/{JOT_KEY}", data=data, files={"x": ("", b"")})
    assert again.json()["duplicate"] is True, "Jotform redelivery of the same submissionID"
    wrong_key = await client.post(f"/forms/{JOT_KEY}x", data=data, files={"x": ("", b"")})
    assert wrong_key.status_code == 404
    other_form = await client.post(
        f"/forms/{JOT_KEY}",
        data={**data, "formID": "9", "submissionID": "1"},
        files={"x": ("", b"")},
    )
    assert other_form.status_code == 400
    no_id = await client.post(
        f"/forms/{JOT_KEY}", data={"formID": "2401", "rawRequest": "{}"}, files={"x": ("", b"")}
    )
    assert no_id.status_code == 400
    statuses = sorted(s for _, s, _ in await rows(hub, "jot"))
    assert statuses == ["malformed", "malformed", "pending"]
    assert (await sync_connection(hub, "jot")).status == "ok"
    [contact] = await entity_fields(hub, "contact")
    assert contact["email"] == "jo@example.com" and contact["consent"] is True
    [activity] = await entity_fields(hub, "activity")
    assert json.loads(activity["body"])["name"] == {"first": "Jo", "last": "Ng"}
    assert activity["occurred_at"] == "2024-05-01T12:50:00Z"


# ---- the inbox handler, settings, guards, snippet -----------------------------------------


async def test_inbox_processing_syncs_the_form_once_per_burst(
    hub: Hub, client: httpx.AsyncClient
) -> None:
    for i in range(3):
        data = form_body(email=f"p{i}@example.com", **{TOKEN_FIELD: token(10 + i)})
        assert (await post_form(client, HTML_KEY, data)).status_code == 303
    processor = InboxProcessor(hub, inbox=Inbox.shared(hub.store))
    try:
        assert await processor.run_once() == 3
    finally:
        await processor.aclose()
    assert {s for _, s, _ in await rows(hub, "contact")} == {"done"}
    assert len(await entity_fields(hub, "contact")) == 3
    async with hub.store.connect() as db:
        count = await db.scalar(
            select(func.count()).select_from(runs).where(runs.c.connection == "contact")
        )
    assert count == 1, "the first item's sync read all three"
    assert (await client.post("/hooks/contact", content=b"{}")).status_code == 404


def test_settings_are_checked() -> None:
    good = {"key": HTML_KEY, "form_secret": FORM_SECRET}
    assert WebFormsSettings.model_validate(good).provider == "html"
    for bad, words in (
        ({**good, "key": "short"}, "URL-safe"),
        ({**good, "key": "has spaces in the key!!"}, "URL-safe"),
        ({"key": HTML_KEY}, "form_secret"),
        ({**good, "allowed_origins": ["https://x.test/path"]}, "not an origin"),
        ({"key": HTML_KEY, "provider": "typeform"}, "signing_secret"),
        ({**good, "thank_you_url": "javascript:alert(1)"}, "http(s)"),
        ({**good, "provider": "wufoo"}, "provider"),
    ):
        with pytest.raises(ValidationError) as exc:
            WebFormsSettings.model_validate(bad)
        assert words in str(exc.value), (bad, str(exc.value))
    open_form = WebFormsSettings.model_validate({"key": HTML_KEY, "require_token": False})
    assert open_form.form_secret is None


def test_tokens_and_rate_limiter() -> None:
    issued = issue_token(FORM_SECRET, "contact", now=1000.0)
    check = {"min_seconds": 3.0, "max_age": 60.0}
    assert check_token(issued, FORM_SECRET, "contact", now=1010.0, **check) == 10.0
    for now, given, conn, code in (
        (1001.0, issued, "contact", "too_fast"),
        (1061.0, issued, "contact", "token_expired"),
        (1010.0, issued, "other", "token_invalid"),
        (1010.0, "1000.AAAA", "contact", "token_invalid"),
        (1010.0, "garbage", "contact", "token_invalid"),
        (900.0, issued, "contact", "token_invalid"),
    ):
        with pytest.raises(FormRefused) as exc:
            check_token(given, FORM_SECRET, conn, now=now, **check)
        assert (exc.value.status, exc.value.code) == (403, code)
    clock = [0.0]
    limiter = RateLimiter(2, 60, clock=lambda: clock[0], max_keys=2)
    limiter.hit("a")
    limiter.hit("a")
    with pytest.raises(FormRefused) as exc:
        limiter.hit("a")
    assert exc.value.status == 429 and exc.value.retry_after == 60
    clock[0] = 61.0
    limiter.hit("a")
    limiter.hit("b")
    limiter.hit("c")  # the table was full: stale keys go
    assert len(limiter._events) <= 2


def test_snippet_is_accessible_and_carries_the_guards(tmp_path: Path) -> None:
    text = CONFIG.replace(
        "rate_limit = 3\n", 'rate_limit = 3\nhub_url = "https://hub.example.com/"\n'
    )
    text += '\n[connections.contact.labels]\nmessage = "Your question"\n'
    (tmp_path / "crmhub.toml").write_text(text)
    from hub.cli import app, commands  # noqa: F401  (registers the commands)

    runner = CliRunner()
    result = runner.invoke(
        app, ["--config", str(tmp_path / "crmhub.toml"), "forms", "snippet", "contact"]
    )
    assert result.exit_code == 0, result.output
    html = result.output
    assert f'action="https://hub.example.com/forms/{HTML_KEY}" method="post"' in html
    for name in ("email", "first_name", "last_name", "phone", "company", "message", "consent"):
        assert f'for="crmhub-form-contact-{name}"' in html and f'name="{name}"' in html
    assert (
        'type="email" id="crmhub-form-contact-email" name="email" autocomplete="email" required'
        in html
    )
    assert "Leave this field empty" in html and ">Your question</label>" in html
    assert 'name="website" value="" autocomplete="off" tabindex="-1"' in html
    assert f"https://hub.example.com/forms/{HTML_KEY}/token" in html
    issued = html.split(f'name="{TOKEN_FIELD}" value="')[1].split('"')[0]
    assert check_token(issued, FORM_SECRET, "contact", min_seconds=0, max_age=60) < 5
    refused = runner.invoke(
        app, ["--config", str(tmp_path / "crmhub.toml"), "forms", "snippet", "people"]
    )
    assert refused.exit_code == 1 and "not a web form" in refused.output
    refused = runner.invoke(
        app, ["--config", str(tmp_path / "crmhub.toml"), "forms", "snippet", "tf"]
    )
    assert refused.exit_code == 1 and "typeform" in refused.output


# ---- the connector contract ------------------------------------------------------------------


class TestWebFormsContract(ConnectorContract):
    """Submissions are read-only records: the suite's push tests check they are refused."""

    remote_edits = False

    @pytest.fixture
    async def connector(self, tmp_path: Path) -> AsyncIterator[Connector]:
        store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'forms.db'}")
        settings = WebFormsSettings(key=SecretStr(HTML_KEY), require_token=False)
        made = WebFormsConnector(settings, ConnectorContext("contract", tmp_path))
        made.context.store = store
        try:
            yield made
        finally:
            await made.aclose()
            await store.close()

    async def seed(self, connector: Connector, records: list[dict[str, Any]]) -> None:
        assert isinstance(connector, WebFormsConnector) and connector.context.store is not None
        form_inbox = Inbox(connector.context.store)
        for data in records:
            sub = Submission(
                submission_id=f"seed:{data['email']}",
                submitted_at=time_now(),
                fields=dict(data),
                form="Contract",
            )
            await form_inbox.add("contract", sub.submission_id, sub.to_json(), kind="submission")

    async def remote_records(self, connector: Connector) -> list[dict[str, Any]]:
        assert isinstance(connector, WebFormsConnector) and connector.context.store is not None
        items = await Inbox(connector.context.store).list(source="contract", limit=10_000)
        return [Submission.from_json(item.body).fields for item in items]


def time_now() -> Any:
    from hub.store import utcnow

    return utcnow()
