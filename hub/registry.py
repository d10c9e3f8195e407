"""Finding connectors: the ``crmhub.connectors`` entry-point group.

Built-in connectors register through the same group as third-party plugins. A plugin that
fails to import is recorded as broken with its error; the hub keeps working without it.
Two entry points of one name: a built-in keeps its name, else the first found on the
Python path does (as an import would); the other is kept in ``Registry.shadowed``, listed
by ``crmhub connectors`` and warned about, never silently dropped.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from hub.config import Config, ConnectionConfig
from hub.connector import Connector, ConnectorContext, Credentials, Stream
from hub.errors import ConfigError, Problem
from hub.mapping import load_mapping
from hub.records import CUSTOM_PREFIX, core_fields
from hub.store import Store

if TYPE_CHECKING:
    from hub.services import ConnectionServices

GROUP = "crmhub.connectors"
BUILT_IN = "crmhub"
"""The distribution whose entry points are the built-in connectors."""
log = logging.getLogger("crmhub.registry")


@dataclass
class PluginInfo:
    name: str
    value: str
    package: str
    version: str
    cls: type[Connector] | None = None
    error: str | None = None
    note: str | None = None
    """A name clash: which entry point keeps the name and why."""
    shadowed: bool = False
    """Another entry point of the same name keeps it: this one is never used."""

    @property
    def status(self) -> str:
        if self.shadowed:
            return "shadowed"
        return "broken" if self.error else "ok"

    @property
    def built_in(self) -> bool:
        return self.package == BUILT_IN


@dataclass
class Registry:
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    shadowed: list[PluginInfo] = field(default_factory=list)
    """Entry points that lost their name to another of the same name."""

    @classmethod
    def discover(cls, extra: dict[str, type[Connector]] | None = None) -> Registry:
        """Load every entry point of the group; ``extra`` adds classes (tests, embedding)."""
        registry = cls()
        for ep in entry_points(group=GROUP):
            registry.add(_load(ep))
        for name, connector in (extra or {}).items():
            registry.plugins[name] = PluginInfo(
                name=name,
                value=f"{connector.__module__}:{connector.__qualname__}",
                package=connector.__module__.split(".")[0],
                version=connector.version,
                cls=connector,
            )
        return registry

    def add(self, info: PluginInfo) -> None:
        """Register an entry point's plugin; of two with one name, a built-in keeps it,
        else the first."""
        held = self.plugins.get(info.name)
        if held is None:
            self.plugins[info.name] = info
            return
        keeps, loses = (info, held) if info.built_in and not held.built_in else (held, info)
        why = "built-in connectors keep their names" if keeps.built_in else "it was found first"
        loses.shadowed = True
        loses.note = (
            f"not used: {_who(keeps)} keeps the name {info.name!r} ({why}); "
            f"give this plugin's entry point another name"
        )
        keeps.note = f"used; {_who(loses)} names {info.name!r} too and is shadowed ({why})"
        self.plugins[info.name] = keeps
        self.shadowed.append(loses)
        log.warning(
            "two connectors are named %r: %s is used, %s is shadowed (%s); "
            "rename the plugin's entry point",
            info.name,
            _who(keeps),
            _who(loses),
            why,
        )

    def get(self, name: str) -> type[Connector]:
        info = self.plugins.get(name)
        if info is None:
            known = ", ".join(sorted(n for n, p in self.plugins.items() if p.cls)) or "none"
            raise ConfigError(
                f"unknown connector {name!r} (installed: {known}; or the path of a "
                'declaration: connector = "people.toml")'
            )
        if info.cls is None:
            raise ConfigError(f"connector {name!r} is installed but broken: {info.error}")
        return info.cls

    def validate(self, config: Config) -> None:
        """Check every connection's connector name, settings and field policies; all
        problems at once."""
        problems: list[Problem] = []
        for conn in config.connections.values():
            try:
                settings = self.settings_for(config, conn)
            except ConfigError as exc:
                problems.extend(exc.problems)
                continue
            if conn.hub.field_policies:
                context = ConnectorContext(connection=conn.name, base_dir=config.base_dir)
                connector = self.get(conn.hub.connector)(settings, context)
                problems += _unknown_policy_fields(config, conn, connector)
        if problems:
            raise ConfigError(problems)

    def _local(self, config: Config, conn: ConnectionConfig) -> None:
        """Register a connection's declaration file (``connector = "people.toml"``)."""
        from hub.rest.plugin import is_local, local_connector

        value = conn.hub.connector
        if is_local(value) and value not in self.plugins:
            cls = local_connector(config, conn.name, value)
            self.plugins[value] = PluginInfo(
                name=value, value=value, package="(local file)", version=cls.version, cls=cls
            )

    def settings_for(self, config: Config, conn: ConnectionConfig) -> Any:
        where = ["connections", conn.name]
        self._local(config, conn)
        info = self.plugins.get(conn.hub.connector)
        if info is None or info.cls is None:
            try:
                self.get(conn.hub.connector)
            except ConfigError as exc:
                raise ConfigError(
                    [config.problem(exc.problems[0].message, where, "connector")]
                ) from None
        cls = self.get(conn.hub.connector)
        try:
            return cls.Settings.model_validate(conn.settings)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                message = err["msg"]
                if err["type"] == "value_error":
                    message = message.removeprefix("Value error, ")
                if err["type"] == "extra_forbidden":
                    valid = ", ".join(sorted(cls.Settings.model_fields))
                    message = f"unknown setting for connector {cls.name!r} (valid: {valid})"
                if err["type"] == "missing" and len(err["loc"]) == 1:
                    field = cls.Settings.model_fields.get(str(err["loc"][0]))
                    said = f": {field.description}" if field and field.description else ""
                    message = f"connector {cls.name!r} needs this setting{said}"
                key = ".".join(str(p) for p in err["loc"]) or None
                problems.append(config.problem(message, where, key))
            raise ConfigError(problems) from None

    def create(
        self,
        config: Config,
        name: str,
        credentials: Credentials | None = None,
        store: Store | None = None,
        services: ConnectionServices | None = None,
    ) -> Connector:
        conn = config.connection(name)
        settings = self.settings_for(config, conn)
        cls = self.get(conn.hub.connector)
        context = ConnectorContext(
            connection=name,
            base_dir=config.base_dir,
            credentials=credentials,
            store=store,
            _services=services,
        )
        return cls(settings, context)


def mapping_file(
    config: Config, conn: ConnectionConfig, connector: Connector, stream: Stream
) -> Path:
    """The mapping file of one stream: the connection's ``mapping`` (one for all streams, or
    per stream name), else the connector's default."""
    setting = conn.hub.mapping
    chosen = setting.get(stream.name) if isinstance(setting, dict) else setting
    return config.resolve(chosen) if chosen else connector.default_mapping(stream)


def _unknown_policy_fields(
    config: Config, conn: ConnectionConfig, connector: Connector
) -> list[Problem]:
    """``field_policies`` keys that name no field the connection syncs: its mappings'
    canonical fields (the entity's core fields and ``custom.*`` where a mapping does not
    load; the run reports that mapping's own problems)."""
    fields: set[str] = set()
    loose: set[str] = set()  # entities whose mapping did not load
    for stream in connector.streams():
        try:
            path = mapping_file(config, conn, connector, stream)
            fields |= load_mapping(path, phone_region=config.hub.phone_region).fields
        except ConfigError:
            loose.add(stream.entity)
            fields |= core_fields(stream.entity)
    problems = []
    for name in conn.hub.field_policies:
        if name in fields or (
            loose and name.startswith(CUSTOM_PREFIX) and len(name) > len(CUSTOM_PREFIX)
        ):
            continue
        valid = ", ".join(sorted(fields) + (["custom.<name>"] if loose else []))
        problems.append(
            config.problem(
                f"unknown field {name!r} for connection {conn.name!r} (valid: {valid})",
                ["connections", conn.name],
                f"field_policies.{name}",
            )
        )
    return problems


def _who(info: PluginInfo) -> str:
    if info.built_in:
        return f"the built-in {info.name} connector"
    return f"{info.value} of package {info.package} {info.version}"


def _load(ep: EntryPoint) -> PluginInfo:
    package = ep.dist.name if ep.dist else ep.value.split(":")[0].split(".")[0]
    version = ep.dist.version if ep.dist else "?"
    info = PluginInfo(name=ep.name, value=ep.value, package=package, version=version)
    try:
        from hub.rest.plugin import entry_point_object

        loaded = entry_point_object(ep)  # a class, or a declaration made into one
    except ConfigError as exc:  # a declaration's problems, each with file, line and key
        info.error = str(exc)
        return info
    except Exception as exc:  # a broken plugin must never take the hub down
        info.error = "".join(traceback.format_exception_only(exc)).strip()
        return info
    if not (isinstance(loaded, type) and issubclass(loaded, Connector)):
        info.error = f"{ep.value} is not a crmhub Connector subclass"
        return info
    info.cls = loaded
    info.version = getattr(loaded, "version", version) if version == "?" else version
    return info
