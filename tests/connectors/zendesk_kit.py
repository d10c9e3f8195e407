"""Zendesk's declaration for tests: the incremental exports' own limit (10 a minute) raised,
so a test may pull as often as it needs; everything else as shipped."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from hub.http import RateLimit
from hub.rest import declared
from hub.rest.connector import RestConnector
from hub.rest.load import Loaded, load_declaration

ROOT = Path(__file__).resolve().parents[2]
DECLARATION = ROOT / "connectors" / "zendesk" / "zendesk.toml"
FAST = RateLimit(rate=10_000, per_seconds=1, burst=1000)


def fast_loaded() -> Loaded:
    loaded = load_declaration(DECLARATION)
    streams = {
        name: s.model_copy(update={"rate_limit": FAST}) for name, s in loaded.spec.streams.items()
    }
    client = loaded.spec.client.model_copy(update={"rate_limit": None})
    spec = loaded.spec.model_copy(update={"streams": streams, "client": client})
    return replace(loaded, spec=spec)


def fast_zendesk() -> type[RestConnector]:
    return declared(fast_loaded())
