"""``create_app(hub)``: the hub's web application (webhooks, OAuth callback, operations).

The daemon serves it with uvicorn and runs the inbox processor beside it::

    app = create_app(hub)
    processor = InboxProcessor(hub)          # shares the app's inbox: wakes on each delivery
    task = asyncio.create_task(processor.run())
    await uvicorn.Server(uvicorn.Config(app, host=..., port=..., log_config=None)).serve()
    task.cancel()

The app never processes deliveries itself. Connectors built for webhook receivers are
closed when the app shuts down (ASGI lifespan).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from hub.errors import ConfigError
from hub.inbox import Inbox
from hub.runtime import Hub
from hub.web import intake, oauth, ops
from hub.web.limits import DEFAULT_MAX_BODY, BodyLimit


def create_app(
    hub: Hub,
    *,
    max_body: int | None = None,
    inbox: Inbox | None = None,
    routers: Sequence[APIRouter] = (),
) -> FastAPI:
    """The web app over ``hub``; ``app.state`` holds ``hub``, ``inbox`` and ``receivers``.

    ``max_body`` bounds request bodies (default: the ``webhook_max_body`` hub setting when
    there is one, else 1 MiB). ``inbox`` defaults to the store's shared inbox, the one
    ``InboxProcessor(hub)`` watches. ``routers`` adds routes; connectors in use add theirs
    through ``Connector.routes`` (see ``connector_routers``).
    """
    limit = max_body or hub.config.hub.webhook_max_body or DEFAULT_MAX_BODY
    receivers = intake.Receivers(hub)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await receivers.aclose()

    app = FastAPI(
        title="crmhub",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.hub = hub
    app.state.inbox = inbox or Inbox.shared(hub.store)
    app.state.receivers = receivers
    app.state.max_body = limit
    app.add_middleware(BodyLimit, max_bytes=limit)
    app.include_router(intake.router)
    app.include_router(ops.router)
    app.include_router(oauth.router)
    for router in (*connector_routers(hub), *routers):
        app.include_router(router)
    return app


def connector_routers(hub: Hub) -> list[APIRouter]:
    """The routers of connectors used by configured connections (each connector once)."""
    built: list[APIRouter] = []
    seen: set[str] = set()
    for conn in hub.config.connections.values():
        name = conn.hub.connector
        if name in seen:
            continue
        seen.add(name)
        try:
            cls = hub.registry.get(name)
        except ConfigError:  # reported where the connection is used; the app still starts
            continue
        if cls.routes is not None:
            built.append(cls.routes(hub))
    return built
