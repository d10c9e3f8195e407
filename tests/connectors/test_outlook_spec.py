"""Graph's description: exactly the operations the sandbox serves, cut from the published
description (cutting it again changes nothing), valid OpenAPI, and notifications checked
against their documented format."""

from __future__ import annotations

import json

from connectors.outlook.notification_format import problems
from connectors.outlook.sandbox_spec import GRAPH_API, OPERATIONS, SPEC_DIR
from hub.sandbox.subset import subset


def test_the_subset_holds_exactly_the_served_operations() -> None:
    document = json.loads((SPEC_DIR / "graph_subset.json").read_text(encoding="utf-8"))
    held = {f"{m.upper()} {p}" for p, item in document["paths"].items() for m in item if m in (
        "get", "post", "patch", "delete", "put"
    )}  # fmt: skip
    assert held == set(OPERATIONS)
    again = subset(document, OPERATIONS)
    assert again["paths"] == document["paths"]
    assert again["components"] == document["components"]  # nothing the operations do not use
    source = document["info"]["x-subset-of"]
    assert source["sha256"] == "ffa65acf9cd5d6e69cb93074a00a1cd2a924f051931cd249e557611bec01fa12"


def test_the_subset_is_valid_openapi_apart_from_listed_defects() -> None:
    assert GRAPH_API.spec_errors() == []
    assert not GRAPH_API.covers("/v1.0/$batch") and GRAPH_API.covers("/v1.0/subscriptions")


def test_notifications_are_checked_against_the_documented_format() -> None:
    good = {
        "value": [
            {
                "subscriptionId": "s1",
                "subscriptionExpirationDateTime": "2026-12-10T00:00:00Z",
                "changeType": "created",
                "resource": "Users/u/Messages/m",
                "resourceData": {
                    "@odata.type": "#Microsoft.Graph.Message",
                    "@odata.id": "x",
                    "id": "m",
                },
                "clientState": "c",
                "tenantId": "t",
            }
        ]
    }
    headers = {"content-type": "application/json"}
    assert problems(json.dumps(good).encode(), headers) == []
    bad = {"value": [{"subscriptionId": "s1", "changeType": "poked", "tenantId": "t"}]}
    found = problems(json.dumps(bad).encode(), headers)
    assert any("poked" in p for p in found) and any("resource" in p for p in found)
