"""The ``crmhub`` command line."""

from __future__ import annotations

from hub.cli.app import app


def main() -> None:
    # Importing the command modules registers their commands on ``app``.
    from hub.cli import commands  # noqa: F401

    app()


__all__ = ["app", "main"]
