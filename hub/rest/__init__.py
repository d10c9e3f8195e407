"""Declarative REST connectors: a connector described as data, run by one generic class.

- :func:`declared` turns a declaration (a TOML file, or a dict of the same structure) into
  a connector class; :class:`RestConnector` is the class they all share.
- :func:`load_declaration` reads and checks one, naming every problem with file and line.
- :func:`create_sandbox` serves the declared API from memory (``crmhub sandbox NAME``).
- :mod:`hub.rest.model` is the declaration's structure; ``declaration.schema.json`` beside
  this file is its JSON Schema, for editors.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.rest.connector import RestConnector, declared, settings_model
from hub.rest.load import DeclarationError, Loaded, load_declaration
from hub.rest.model import Declaration
from hub.rest.paginators import PageAnswer, PageRequest, Paginator

__all__ = [
    "Declaration",
    "DeclarationError",
    "Loaded",
    "PageAnswer",
    "PageRequest",
    "Paginator",
    "RestConnector",
    "create_sandbox",
    "declared",
    "load_declaration",
    "settings_model",
]


if TYPE_CHECKING:
    from hub.rest.sandbox import RestSandboxApp


def create_sandbox(
    source: Loaded | str | Path | dict[str, Any],
    *,
    seed: int = 0,
    size: int | None = None,
    webhook_url: str | None = None,
) -> RestSandboxApp:
    """:func:`hub.rest.sandbox.create_sandbox` (imported on use: it needs the web stack)."""
    from hub.rest.sandbox import create_sandbox as create

    return create(source, seed=seed, size=size, webhook_url=webhook_url)
