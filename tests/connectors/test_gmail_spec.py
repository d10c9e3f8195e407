"""Gmail's and People's descriptions: the conversions are reproducible from the discovery
documents, valid OpenAPI, and hold what the sandbox serves; requests the description does
not allow are refused as Google would."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from connectors.gmail.sandbox_spec import GMAIL_API, GMAIL_METHODS, PEOPLE_API, PEOPLE_METHODS
from hub.sandbox.google_discovery import convert_text

SPEC = Path(__file__).resolve().parents[2] / "connectors" / "gmail" / "spec"


def test_the_conversions_are_made_from_the_discovery_documents_again() -> None:
    for name, methods in (("gmail", GMAIL_METHODS), ("people", PEOPLE_METHODS)):
        source = SPEC / f"{name}.v1.json"
        made = convert_text(source, methods)
        assert made == (SPEC / f"{name}_openapi.json").read_text(encoding="utf-8")
        info = json.loads(made)["info"]["x-converted-from"]
        assert info["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
        operations = {
            op["operationId"] for item in json.loads(made)["paths"].values() for op in item.values()
        }
        assert operations == set(methods)


def test_the_conversions_are_valid_openapi() -> None:
    assert GMAIL_API.spec_errors() == []
    assert PEOPLE_API.spec_errors() == []


def test_a_request_the_description_does_not_allow_is_refused() -> None:
    missing = GMAIL_API.check_request(
        "GET", "/gmail/v1/users/me/messages", "maxResults=many", {"authorization": "Bearer t"}, b""
    )
    assert missing is not None and "maxResults" in str(missing)
    no_token = PEOPLE_API.check_request("GET", "/v1/people/me/connections", "", {}, b"")
    assert no_token is not None and "Security" in str(no_token)
    assert GMAIL_API.covers("/gmail/v1/users/me/profile")
    assert not GMAIL_API.covers("/batch") and not PEOPLE_API.covers("/gmail/v1/x")
