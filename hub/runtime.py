"""``Hub``: the loaded configuration, the open store and the connector registry together."""

from __future__ import annotations

from dataclasses import dataclass, field

from hub.config import Config
from hub.connector import Connector
from hub.registry import Registry
from hub.store import Store


@dataclass
class Hub:
    config: Config
    store: Store
    registry: Registry = field(default_factory=Registry.discover)

    @classmethod
    async def open(cls, config: Config, registry: Registry | None = None) -> Hub:
        """Validate connector settings, then open (and migrate) the store."""
        registry = registry or Registry.discover()
        registry.validate(config)
        store = await Store.open(config.database_url)
        return cls(config=config, store=store, registry=registry)

    def connector(self, name: str) -> Connector:
        from auth.credentials import VaultCredentials

        return self.registry.create(
            self.config, name, credentials=VaultCredentials(self, name), store=self.store
        )

    async def close(self) -> None:
        await self.store.close()

    async def __aenter__(self) -> Hub:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
