"""Testing aids for crmhub and its plugins.

- :mod:`hub.testing.memory`: an in-process remote system and its ``memory`` connector;
- :mod:`hub.testing.contract`: the standard test suite every connector runs
  (``from hub.testing.contract import ConnectorContract``; it needs pytest);
- :func:`declarative_contract`: that suite for a declared connector, from one call
  (:mod:`hub.testing.declarative`; it needs pytest and pytest-asyncio);
- :mod:`hub.testing.credentials`: credentials for tests (``static_credentials``).
"""

from typing import Any

from hub.testing.credentials import StaticCredentials, static_credentials
from hub.testing.memory import (
    MemoryConnector,
    MemoryRemote,
    MemorySettings,
    create_remote,
    get_remote,
    remove_remote,
)

__all__ = [
    "MemoryConnector",
    "MemoryRemote",
    "MemorySettings",
    "StaticCredentials",
    "create_remote",
    "declarative_contract",
    "get_remote",
    "remove_remote",
    "static_credentials",
]


def __getattr__(name: str) -> Any:
    if name == "declarative_contract":  # imported on use: it needs pytest
        from hub.testing.declarative import declarative_contract

        return declarative_contract
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
