"""``crmhub new-connector``: a plugin package for a declared REST connector."""

from __future__ import annotations

from pathlib import Path

import typer

from hub.cli.app import app, console, fail
from hub.errors import ConfigError


@app.command("new-connector")
def new_connector(
    name: str = typer.Argument(..., help="The connector's name (lower case, digits, '_')."),
    directory: Path = typer.Option(
        Path("."), "--dir", "-d", help="Where to write crmhub-connector-NAME/."
    ),
) -> None:
    """Write crmhub-connector-NAME/: a declared REST connector, ready to install and test.

    The package holds the declaration, its mapping, sandbox settings and a contract test,
    ready for `pip install -e` and `pytest`.
    """
    from hub.rest.scaffold import next_steps, scaffold

    try:
        root = scaffold(name, directory)
    except ConfigError as exc:
        raise fail("; ".join(p.message for p in exc.problems)) from None
    console.print(f"wrote {root}", highlight=False, soft_wrap=True)
    console.print(next_steps(root, name), markup=False, highlight=False, soft_wrap=True)


__all__ = ["new_connector"]
