"""Structured logging and secret redaction."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from hub.logging import MASK, configure_logging, redact, redact_text, register_secret


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def _capture(as_json: bool) -> io.StringIO:
    out = io.StringIO()
    configure_logging(json=as_json, level="DEBUG", stream=out)
    return out


def test_json_lines_with_extras_and_masked_keys(restore_root: None) -> None:
    out = _capture(True)
    logging.getLogger("hub.sync").info(
        "pulled %d records",
        12,
        extra={
            "connection": "crm",
            "access_token": "ya29.secretvalue",
            "request": {"headers": {"Authorization": "Bearer abc.def"}, "url": "/v1/me"},
        },
    )
    line = json.loads(out.getvalue())
    assert line["level"] == "info"
    assert line["logger"] == "hub.sync"
    assert line["msg"] == "pulled 12 records"
    assert line["connection"] == "crm"
    assert line["access_token"] == MASK
    assert line["request"] == {"headers": {"Authorization": MASK}, "url": "/v1/me"}
    assert "ya29" not in out.getvalue() and "abc.def" not in out.getvalue()


def test_registered_secret_is_masked_everywhere(restore_root: None) -> None:
    register_secret("hunter2-webhook-key")
    out = _capture(False)
    log = logging.getLogger("hub.web")
    log.warning("verifying with %s", "hunter2-webhook-key", extra={"note": "k=hunter2-webhook-key"})
    try:
        raise ValueError("refused hunter2-webhook-key")
    except ValueError:
        log.exception("call failed")
    text = out.getvalue()
    assert "hunter2-webhook-key" not in text
    assert f"verifying with {MASK}" in text
    assert f"note=k={MASK}" in text
    assert f"ValueError: refused {MASK}" in text  # the traceback too


def test_key_value_text_in_messages() -> None:
    assert redact_text("GET /hooks/mc?secret=abc123&x=1") == f"GET /hooks/mc?secret={MASK}&x=1"
    assert (
        redact_text('{"password": "pw1", "user": "ann"}')
        == f'{{"password": "{MASK}", "user": "ann"}}'
    )
    assert redact_text("Authorization: Bearer eyJhbGciOi") == f"Authorization: Bearer {MASK}"
    assert redact_text("client_secret=s3 refresh_token=r1") == (
        f"client_secret={MASK} refresh_token={MASK}"
    )
    assert redact_text("records=12 connection=crm") == "records=12 connection=crm"


def test_redact_structures() -> None:
    data = {"api_key": "k", "nested": [{"password": "p"}, "plain"], "ok": 1, "token": None}
    assert redact(data) == {
        "api_key": MASK,
        "nested": [{"password": MASK}, "plain"],
        "ok": 1,
        "token": None,
    }


def test_tty_picks_readable_output(restore_root: None) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    term = Terminal()
    configure_logging(stream=term)
    logging.getLogger("hub.x").info("hello", extra={"connection": "crm"})
    assert term.getvalue().rstrip().endswith("hub.x  hello  connection=crm")
    pipe = io.StringIO()
    configure_logging(stream=pipe)
    logging.getLogger("hub.x").info("hello")
    assert json.loads(pipe.getvalue())["msg"] == "hello"
    # reconfiguring replaced the handler instead of adding a second one
    assert "hello" not in term.getvalue().split("\n", 1)[1]


def test_masking_hides_secrets_not_paths_or_code(restore_root: None) -> None:
    # Keys that only contain a credential word are not credentials.
    for text in (
        "SecretKeyError: /etc/crmhub/crmhub.key: no key file",
        "token_url=https://id.example.com/oauth/token tokens=3",
        "key_file=/var/lib/crmhub/crmhub.key",
    ):
        assert redact_text(text) == text
    # Keys that end with one are, whatever their prefix or separator.
    assert redact_text("X-Api-Key: k-123 x-auth-token=t-456 webhook_secret=w") == (
        f"X-Api-Key: {MASK} x-auth-token={MASK} webhook_secret={MASK}"
    )
    register_secret("registered-in-code-0001")
    out = _capture(False)

    def read_key() -> None:
        token = open("/nonexistent/registered-in-code-0001/crmhub.key")  # noqa: SIM115
        raise AssertionError(token)

    try:
        read_key()
    except OSError:
        logging.getLogger("hub.x").exception("reading the key failed")
    text = out.getvalue()
    # The quoted source line is kept as code; only the registered value is masked in it.
    assert f'token = open("/nonexistent/{MASK}/crmhub.key")' in text
    assert f"No such file or directory: '/nonexistent/{MASK}/crmhub.key'" in text
    assert "registered-in-code-0001" not in text
