"""The renewal job: connectors with expiring push subscriptions are renewed when due, their
state kept in the store (both databases), failures tried again at the next turn."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

from auth.credentials import VaultAuth
from hub.config import load_config
from hub.errors import TransientError
from hub.registry import Registry
from hub.renewals import load_state, renew_all, renew_connection, save_state
from hub.runtime import Hub
from hub.testing.memory import MemoryConnector, create_remote, remove_remote

calls: list[tuple[str, dict[str, Any]]] = []


class Watching(MemoryConnector):
    name = "watching"
    renew_every: ClassVar[timedelta | None] = timedelta(hours=1)
    fail = False

    async def renew(self, state: dict[str, Any]) -> dict[str, Any]:
        calls.append((self.connection, dict(state)))
        if Watching.fail:
            raise TransientError("the provider is down", connection=self.connection)
        return {"watch": state.get("watch", 0) + 1}


async def test_due_connections_are_renewed_and_their_state_kept(
    tmp_path: Path, db_url: str
) -> None:
    remotes = [create_remote(f"w{i}-{tmp_path.name}") for i in range(2)]
    (tmp_path / "crmhub.toml").write_text(
        f'[hub]\ndatabase = "{db_url}"\n\n'
        f'[connections.a]\nconnector = "watching"\nstore = "{remotes[0].name}"\n\n'
        f'[connections.b]\nconnector = "memory"\nstore = "{remotes[1].name}"\n'
    )
    registry = Registry.discover(extra={"watching": Watching, "memory": MemoryConnector})
    hub = await Hub.open(load_config(tmp_path / "crmhub.toml"), registry, auth=VaultAuth())
    calls.clear()
    try:
        assert await renew_all(hub) == ["a"]  # b has nothing to renew
        assert calls == [("a", {})]
        assert (await load_state(hub.store, "a"))["watch"] == 1
        assert await renew_all(hub) == []  # not due again within the hour
        assert await renew_connection(hub, "a", force=True)  # a provider asked for it
        assert calls[-1] == ("a", {"watch": 1})
        Watching.fail = True
        with pytest.raises(TransientError):
            await renew_connection(hub, "a", force=True)
        await save_state(hub.store, "a", {"watch": 2, "renewed_at": "2020-01-01T00:00:00+00:00"})
        assert await renew_all(hub) == []  # due, failed: logged, tried at the next turn
        assert len(calls) == 4
        assert (await load_state(hub.store, "a"))["watch"] == 2  # the last good state kept
    finally:
        Watching.fail = False
        await hub.close()
        for remote in remotes:
            remove_remote(remote.name)
