"""Testing aids for crmhub and its plugins.

- :mod:`hub.testing.memory`: an in-process remote system and its ``memory`` connector;
- :mod:`hub.testing.contract`: the standard test suite every connector runs
  (``from hub.testing.contract import ConnectorContract``; it needs pytest);
- :func:`declarative_contract`: that suite for a declared connector, from one call
  (:mod:`hub.testing.declarative`; it needs pytest and pytest-asyncio);
- :mod:`hub.testing.credentials`: credentials for tests (``static_credentials``).
"""

from typing import TYPE_CHECKING, Any

from hub.testing.credentials import StaticCredentials, static_credentials

if TYPE_CHECKING:
    from hub.testing.declarative import declarative_contract
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

_MEMORY = ("MemoryConnector", "MemoryRemote", "MemorySettings")
_MEMORY_FUNCTIONS = ("create_remote", "get_remote", "remove_remote")


def __getattr__(name: str) -> Any:
    """The rest is imported on use: the contract needs pytest, and code that only wants
    credentials (a benchmark's pull) need not load the in-memory remote."""
    if name == "declarative_contract":
        from hub.testing import declarative

        return declarative.declarative_contract
    if name in _MEMORY or name in _MEMORY_FUNCTIONS:
        from hub.testing import memory

        return getattr(memory, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
