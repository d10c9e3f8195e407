"""How declarations become plugins: entry points that name a declaration, and local files.

A plugin package points its entry point at the declaration file it ships::

    [project.entry-points."crmhub.connectors"]
    acme = "crmhub_connector_acme:acme.toml"

(or at a dict of the same structure: ``acme = "crmhub_connector_acme:DECLARATION"``). A
connection may also name a declaration file directly: ``connector = "people.toml"``
(relative to ``crmhub.toml``).
"""

from __future__ import annotations

from importlib.metadata import EntryPoint
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.errors import ConfigError

if TYPE_CHECKING:
    from hub.rest.connector import RestConnector

__all__ = ["entry_point_object", "file_sandbox", "is_local", "local_connector"]


def is_local(connector: str) -> bool:
    """Whether a connection's ``connector`` names a declaration file, not a plugin."""
    return connector.endswith(".toml")


def entry_point_object(ep: EntryPoint) -> Any:
    """What an entry point names; a declaration (a ``.toml`` file in the package, or a
    dict) becomes its connector class."""
    from hub.rest.connector import declared

    if ep.attr and ep.attr.endswith(".toml"):
        resource = files(ep.module).joinpath(ep.attr)
        path = Path(str(resource))
        if not path.is_file():
            raise FileNotFoundError(f"{ep.value}: the package has no file {ep.attr!r}")
        return _named(declared(path), ep)
    loaded = ep.load()
    if isinstance(loaded, dict):
        return _named(declared(loaded, label=ep.value), ep)
    return loaded


def _named(cls: type[RestConnector], ep: EntryPoint) -> type[RestConnector]:
    if cls.name != ep.name:
        raise ValueError(
            f"entry point {ep.name!r} names a declaration called {cls.name!r}: "
            "use the same name in both places"
        )
    return cls


def local_connector(config: Any, connection: str, value: str) -> type[RestConnector]:
    """The connector class of a declaration file named by ``connection``'s ``connector``."""
    from hub.rest.connector import declared

    path = config.resolve(value)
    if not path.is_file():
        raise ConfigError(
            [
                config.problem(
                    f"declaration file {path} not found", ["connections", connection], "connector"
                )
            ]
        )
    return declared(path)


def file_sandbox(path: str) -> Any:
    """The ``hub.sandbox.SandboxInfo`` of a declaration file (``crmhub sandbox people.toml``);
    a declaration with problems is reported as a broken sandbox."""
    from hub.rest.connector import declared
    from hub.sandbox import SandboxInfo

    try:
        cls = declared(Path(path))
    except (ConfigError, OSError) as exc:
        return SandboxInfo(path, error=str(exc))
    return SandboxInfo(path, cls.sandbox)
