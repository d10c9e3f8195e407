"""Finding the sandboxes of installed connectors.

A connector ships its sandbox as the ``sandbox`` attribute of its class (a factory), or as a
``sandbox`` module beside it (``connectors/<name>/sandbox.py``) with ``create_sandbox``.
The factory is called as ``create_sandbox(seed=..., **options)`` and returns a
:class:`~hub.sandbox.app.SandboxApp`. A sandbox that fails to import is reported, not fatal,
and so is a connector that fails to load (a declaration with problems names them).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hub.registry import Registry
from hub.sandbox.app import SandboxApp

__all__ = ["SandboxFactory", "SandboxInfo", "find_sandboxes", "oauth_sandbox"]

SandboxFactory = Callable[..., SandboxApp]


@dataclass
class SandboxInfo:
    connector: str
    factory: SandboxFactory | None = None
    error: str | None = None


def find_sandboxes(registry: Registry | None = None) -> dict[str, SandboxInfo]:
    """Every installed connector that has a sandbox (or a broken one), by connector name."""
    registry = registry or Registry.discover()
    found: dict[str, SandboxInfo] = {}
    for name, plugin in sorted(registry.plugins.items()):
        if plugin.cls is None:
            if plugin.error:  # its sandbox cannot be known: what broke the plugin can
                found[name] = SandboxInfo(name, error=plugin.error)
            continue
        factory = getattr(plugin.cls, "sandbox", None)
        if callable(factory):
            found[name] = SandboxInfo(name, factory)
            continue
        module_name = f"{_package_of(plugin.cls)}.sandbox"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # this connector has no sandbox
            found[name] = SandboxInfo(name, error=f"{module_name}: {type(exc).__name__}: {exc}")
            continue
        except Exception as exc:  # a broken sandbox must not hide the others
            found[name] = SandboxInfo(name, error=f"{module_name}: {type(exc).__name__}: {exc}")
            continue
        factory = getattr(module, "create_sandbox", None)
        if callable(factory):
            found[name] = SandboxInfo(name, factory)
        else:
            found[name] = SandboxInfo(name, error=f"{module_name} has no create_sandbox()")
    return found


def oauth_sandbox(**options: Any) -> Any | None:
    """A new shared sandbox OAuth2 server (``auth.sandbox.SandboxOAuthServer``), or ``None``
    when that module is not installed. Pass it as ``SandboxApp(..., oauth=...)``."""
    try:
        module = importlib.import_module("auth.sandbox")
    except ModuleNotFoundError as exc:
        if exc.name in ("auth", "auth.sandbox"):
            return None
        raise
    return module.SandboxOAuthServer(**options)


def _package_of(cls: type) -> str:
    module = sys.modules.get(cls.__module__)
    if module is not None and hasattr(module, "__path__"):
        return cls.__module__  # the class lives in the package's __init__
    return cls.__module__.rpartition(".")[0] or cls.__module__
