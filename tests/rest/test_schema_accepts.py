"""The JSON Schema editors check declarations with accepts every declaration crmhub ships
and documents (shorthands included), and refuses what loading refuses."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from hub.rest import declared
from hub.rest.scaffold import scaffold
from hub.rest.schema import SCHEMA_FILE

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```toml\n(.*?)^```", re.S | re.M)


def shipped() -> dict[str, dict[str, Any]]:
    found = {
        str(path.relative_to(ROOT)): tomllib.loads(path.read_text(encoding="utf-8"))
        for path in [
            *sorted((ROOT / "connectors").glob("*/*.toml")),
            *sorted((ROOT / "examples").glob("*/*/*.toml")),
        ]
        if path.name != "pyproject.toml"
    }
    for n, body in enumerate(FENCE.findall((ROOT / "plugins.md").read_text(encoding="utf-8"))):
        data = tomllib.loads(body.replace("$", "x"))
        if "streams" in data:
            found[f"plugins.md toml block {n + 1}"] = data
    return {name: data for name, data in found.items() if "streams" in data}


def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))


@pytest.mark.parametrize("name", sorted(shipped()))
def test_every_shipped_declaration_passes_the_schema(name: str) -> None:
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator().iter_errors(shipped()[name])
    ]
    assert not errors, errors


def test_a_scaffolded_declaration_passes_the_schema(tmp_path: Path) -> None:
    root = scaffold("acme", tmp_path)
    data = tomllib.loads((root / "crmhub_connector_acme" / "acme.toml").read_text("utf-8"))
    assert not list(validator().iter_errors(data))


def test_every_shorthand_passes_the_schema() -> None:
    stream = {
        "entity": "contact",
        "path": "/c",
        "version": "etag",
        "modified_at": "updated_at",
        "incremental": {"param": "since"},
        "paginator": "link",
        "deletes": {"kind": "endpoint", "path": "/gone", "paginator": "link"},
    }
    data = {
        "name": "acme",
        "client": {"base_url": "https://acme.example", "auth": "bearer"},
        "streams": {"contacts": stream, "others": {**stream, "deletes": "full_scan"}},
    }
    declared(data, label="shorthands", mapping_dir=ROOT)  # the models take them
    assert not list(validator().iter_errors(data))


@pytest.mark.parametrize(
    "stream",
    [
        {"paginator": "pages"},  # no such kind
        {"version": 3},
        {"deletes": {"kind": "tombstone", "feild": "x"}},
        {"pathh": "/x"},
    ],
)
def test_the_schema_refuses_what_loading_refuses(stream: dict[str, Any]) -> None:
    data = {
        "name": "acme",
        "client": {"base_url": "https://acme.example", "auth": "bearer"},
        "streams": {"contacts": {"entity": "contact", "path": "/c", **stream}},
    }
    assert list(validator().iter_errors(data))
