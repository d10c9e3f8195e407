"""Sandboxes: fake providers on loopback that connectors are tested against over real HTTP.

A connector's sandbox (``connectors/<name>/sandbox.py``: ``create_sandbox(seed, ...)``) is a
small ASGI app with its state in memory, wrapped in :class:`SandboxApp`, which adds a request
log, fault switches (5xx, latency, 429 bursts, dropped connections, truncated bodies) and
control endpoints under ``/_sandbox/``. The connector never knows: only its base URL differs.
Given the provider's published API description (``spec=``, :class:`ApiDescription`), it holds
every request, answer and webhook to it (:mod:`hub.sandbox.spec`).
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.sandbox.app import LogEntry, RequestLog, SandboxApp, opened_sandboxes
    from hub.sandbox.discovery import SandboxFactory, SandboxInfo, find_sandboxes, oauth_sandbox
    from hub.sandbox.faults import Faults, SandboxDropped, default_throttle
    from hub.sandbox.people import Person, fake_people, fake_person
    from hub.sandbox.server import SandboxServer, serve_sandbox
    from hub.sandbox.spec import ApiDescription, Defect, Violation, ViolationLog
    from hub.sandbox.webhooks import Delivery, WebhookSender

__all__ = [
    "ApiDescription",
    "Defect",
    "Delivery",
    "Faults",
    "LogEntry",
    "Person",
    "RequestLog",
    "SandboxApp",
    "SandboxDropped",
    "SandboxFactory",
    "SandboxInfo",
    "SandboxServer",
    "Violation",
    "ViolationLog",
    "WebhookSender",
    "default_throttle",
    "fake_people",
    "fake_person",
    "find_sandboxes",
    "oauth_sandbox",
    "opened_sandboxes",
    "serve_sandbox",
]

_WHERE = {
    "app": ("LogEntry", "RequestLog", "SandboxApp", "opened_sandboxes"),
    "discovery": ("SandboxFactory", "SandboxInfo", "find_sandboxes", "oauth_sandbox"),
    "faults": ("Faults", "SandboxDropped", "default_throttle"),
    "people": ("Person", "fake_people", "fake_person"),
    "server": ("SandboxServer", "serve_sandbox"),
    "spec": ("ApiDescription", "Defect", "Violation", "ViolationLog"),
    "webhooks": ("Delivery", "WebhookSender"),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}


def __getattr__(name: str) -> Any:
    """Each name is imported from its module on use: loading a declaration asks
    ``hub.sandbox.people`` for the fake values its sandbox may name, and should not load
    the web stack and the hub's store (``discovery`` reads the registry) on the way."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)
