"""The plugin guide documents every member of the connector interface."""

from __future__ import annotations

import inspect
from pathlib import Path

from hub.connector import Connector

ROOT = Path(__file__).resolve().parents[1]


def test_plugins_md_names_every_connector_member() -> None:
    text = (ROOT / "plugins.md").read_text(encoding="utf-8")
    members = {
        name
        for name, _ in inspect.getmembers(Connector)
        if not name.startswith("_") and name not in {"connection"}
    }
    members |= set(Connector.__annotations__) - {"connection"}
    missing = sorted(m for m in members if f"`{m}" not in text)
    assert not missing, f"plugins.md does not document: {', '.join(missing)}"


def test_readme_names_every_command() -> None:
    from typer.main import get_command

    from hub.cli import (
        app,
        commands,  # noqa: F401  (registers the commands)
    )

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    group = get_command(app)
    names = sorted(group.commands)  # type: ignore[attr-defined]
    missing = [n for n in names if f"crmhub {n}" not in text]
    assert not missing, f"README.md does not document: {', '.join(missing)}"
