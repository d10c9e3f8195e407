"""Keep-alive refreshes for providers whose refresh tokens die when unused (Xero: 60 days).

The daemon calls :func:`keep_alive_all` once a day. A connection whose provider declares
``refresh_token_max_idle_days`` is refreshed when half of that time has passed since its
last refresh, so a connection that is paused, or synced rarely, never loses its grant.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from hub.errors import ConfigError, CrmhubError, NeedsReauth
from hub.runtime import Hub

log = logging.getLogger(__name__)

OAUTH_KINDS = ("oauth2", "generic_oauth2", "google")


async def keep_alive_all(hub: Hub) -> list[str]:
    """Refresh every connection that is due; returns the names refreshed."""
    from auth.flows import connection_kind, open_vault, resolve, token_manager

    refreshed: list[str] = []
    for name in hub.config.connections:
        try:
            if connection_kind(hub, name) not in OAUTH_KINDS:
                continue
            resolved = resolve(hub, name)
        except ConfigError:
            continue  # not set up for OAuth: nothing to keep alive
        days = resolved.settings.refresh_token_max_idle_days
        if not days:
            continue
        try:
            manager = token_manager(open_vault(hub), resolved)  # no key: a CrmhubError too
            if not await manager.keep_alive_due(max_idle=timedelta(days=days / 2)):
                continue
            await manager.refresh(force=True)
        except NeedsReauth as exc:
            log.warning("keep-alive of %r refused: %s", name, exc)
            continue
        except CrmhubError as exc:
            log.warning("keep-alive of %r failed, tried again tomorrow: %s", name, exc)
            continue
        log.info("keep-alive refresh of %r", name)
        refreshed.append(name)
    return refreshed
