"""``Hub``: the loaded configuration, the open store and the connector registry together.

Where credentials come from is the caller's choice: the composition roots (the CLI, the
daemon's start-up, the demo) pass ``auth.credentials.VaultAuth()``; a hub opened without
one gives connectors no credentials (those that need some say so), completes no OAuth
authorization and keeps no grant alive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from hub.config import Config
from hub.connector import Connector, Credentials
from hub.registry import Registry
from hub.services import ConnectionServices
from hub.store import Store


class HubAuth(Protocol):
    """Where a hub's connections keep their credentials."""

    def credentials(self, hub: Hub, connection: str) -> Credentials:
        """The credentials handed to ``connection``'s connector."""
        ...

    async def complete_authorization(self, hub: Hub, params: Mapping[str, str]) -> str:
        """Finish an OAuth authorization from its redirect; returns the connection's name."""
        ...

    async def keep_alive(self, hub: Hub) -> list[str]:
        """Refresh the grants that would die unused; returns the connections refreshed."""
        ...


@dataclass
class Hub:
    config: Config
    store: Store
    registry: Registry = field(default_factory=Registry.discover)
    auth: HubAuth | None = None

    @classmethod
    async def open(
        cls,
        config: Config,
        registry: Registry | None = None,
        *,
        auth: HubAuth | None = None,
    ) -> Hub:
        """Validate connector settings, then open (and migrate) the store."""
        registry = registry or Registry.discover()
        registry.validate(config)
        store = await Store.open(config.database_url)
        return cls(config=config, store=store, registry=registry, auth=auth)

    def connector(self, name: str) -> Connector:
        credentials = self.auth.credentials(self, name) if self.auth else None
        return self.registry.create(
            self.config,
            name,
            credentials=credentials,
            store=self.store,
            services=self.services(name),
        )

    def services(self, name: str) -> ConnectionServices:
        """What connection ``name``'s connector and webhook receiver may ask of the hub."""
        return ConnectionServices(name, self.store, self)

    async def close(self) -> None:
        await self.store.close()

    async def __aenter__(self) -> Hub:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
