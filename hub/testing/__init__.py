"""Testing aids for crmhub and its plugins.

- :mod:`hub.testing.memory`: an in-process remote system and its ``memory`` connector;
- :mod:`hub.testing.contract`: the standard test suite every connector runs
  (``from hub.testing.contract import ConnectorContract``; it needs pytest).
"""

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
    "create_remote",
    "get_remote",
    "remove_remote",
]
