"""``crmhub.toml``: the hub's settings and its connections.

Relative paths in the file are relative to the file. Every error names the file, the line
and the full key (``connections.crm.oauth.client_id``), or the environment variable a value
came from. A connection's connector settings are validated against the connector's own
``Settings`` model when the hub opens, so a typo fails at start, not mid-run. Secrets may
come from the environment (``hub.environment``): ``CRMHUB_CONNECTIONS__<NAME>__<SETTING>``
overrides a setting, and ``"env:VARIABLE"`` as a value in the file reads that variable.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from hub.environment import Override, read_overrides, resolve_references
from hub.errors import ConfigError, Problem
from hub.tomlfile import line_of, load_toml

log = logging.getLogger("crmhub.config")

CONFIG_NAME = "crmhub.toml"
POLICIES = ("newest", "prefer", "hub", "remote", "manual")
Policy = Literal["newest", "prefer", "hub", "remote", "manual"]
Direction = Literal["both", "pull", "push"]
DeletePolicy = Literal["unlink", "propagate", "ignore"]
Encoding = Literal["hex", "base64"]
BodyFormat = Literal["json", "form", "any"]
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


class HubSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    database: str = "crmhub.db"
    """A SQLite file path, or a SQLAlchemy URL (``postgresql+psycopg://...``)."""
    phone_region: str | None = None
    """Region for phone numbers written without a country code, e.g. ``GB``."""
    delete_guard_share: float = Field(0.10, ge=0, le=1)
    delete_guard_max: int = Field(50, ge=0)
    run_lease_seconds: float = Field(60.0, ge=1)
    """How long a run's lease lasts unless renewed (every third of it while the run works).
    A run stalled longer than this loses the connection to the next run and stops at its
    next write (see README, "One run at a time")."""
    http_host: str = "127.0.0.1"
    http_port: int = Field(8750, ge=0, le=65535)
    """The daemon's HTTP port; 0 picks a free one (printed at start)."""
    webhook_max_body: int = Field(1024 * 1024, ge=1024)
    """Largest webhook or form body accepted, in bytes (413 beyond)."""
    retention_days: int = Field(30, ge=1)
    """Settled runs, outbox rows and inbox deliveries older than this are deleted by the
    daemon once a day (``hub.housekeeping``; ``crmhub db prune`` does it at once)."""
    idle_run_retention_days: int = Field(3, ge=1)
    """Runs that finished well and changed nothing are deleted after this many days."""


class WebhookSettings(BaseModel):
    """``[connections.NAME.webhook]``: HMAC-SHA256 checks for a connection without a receiver.

    The signature is ``prefix + hmac_sha256(secret, signed)`` in ``header``, where ``signed``
    is the raw body, or ``timestamp + separator + body`` when ``timestamp_header`` is set
    (then the timestamp must also be within ``window`` seconds).
    """

    model_config = ConfigDict(extra="forbid")

    secret: SecretStr = Field(min_length=1)
    header: str = "x-signature"
    encoding: Encoding = "hex"
    prefix: str = ""
    timestamp_header: str | None = None
    separator: str = ""
    window: float = Field(300, gt=0)
    id_header: str | None = None
    """Header carrying the provider's delivery id; default: the body's hash."""
    kind_header: str | None = None
    body: BodyFormat = "json"


class ConnectionSettings(BaseModel):
    """The hub's part of a ``[connections.NAME]`` table; the rest belongs to the connector."""

    model_config = ConfigDict(extra="forbid")

    connector: str
    mapping: str | dict[str, str] | None = None
    direction: Direction = "both"
    schedule: str | None = None
    conflict_policy: Policy = "newest"
    prefer: list[str] = []
    field_policies: dict[str, Policy] = {}
    delete_policy: DeletePolicy = "unlink"
    enabled: bool = True
    oauth: dict[str, Any] | None = None
    """``[connections.NAME.oauth]``: OAuth endpoints and client credentials (auth/providers)."""
    webhook: WebhookSettings | None = None
    """``[connections.NAME.webhook]``: signature checks for a connector without a receiver."""

    @field_validator("prefer")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"{name!r} is not a connection name")
        return value


HUB_KEYS = frozenset(ConnectionSettings.model_fields)


@dataclass
class ConnectionConfig:
    name: str
    hub: ConnectionSettings
    settings: dict[str, Any]
    """The connector's raw settings; validated against its model by ``hub.registry``."""
    line: int = 1

    def policy_for(self, field_name: str) -> Policy:
        return self.hub.field_policies.get(field_name, self.hub.conflict_policy)


@dataclass
class Config:
    path: Path
    text: str
    hub: HubSettings
    connections: dict[str, ConnectionConfig] = field(default_factory=dict)
    from_environment: dict[str, str] = field(default_factory=dict)
    """Full dotted key -> the environment variable that overrode it."""
    warnings: list[str] = field(default_factory=list)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, value: str | Path) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def database_url(self) -> str:
        url = os.environ.get("CRMHUB_DATABASE_URL") or self.hub.database
        if "://" in url:
            return url
        return f"sqlite+aiosqlite:///{self.resolve(url)}"

    def problem(self, message: str, table: list[str], key: str | None = None) -> Problem:
        """A problem at ``key`` (dotted, relative to ``table``), named by its full path and
        its line, or by the environment variable its value came from."""
        path = [*table, *(key.split(".") if key else [])]
        dotted = ".".join(path)
        for depth in range(len(path), 0, -1):
            variable = self.from_environment.get(".".join(path[:depth]))
            if variable:
                return Problem(f"environment variable {variable}", message, key=dotted)
        return Problem(str(self.path), message, line=line_of(self.text, path), key=dotted)

    def connection(self, name: str) -> ConnectionConfig:
        try:
            return self.connections[name]
        except KeyError:
            known = ", ".join(sorted(self.connections)) or "none configured"
            raise ConfigError(
                [Problem(str(self.path), f"no connection named {name!r} (known: {known})")]
            ) from None


def find_config(explicit: str | Path | None = None) -> Path:
    """``--config``, else ``CRMHUB_CONFIG``, else ``./crmhub.toml``."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("CRMHUB_CONFIG")
    return Path(env) if env else Path.cwd() / CONFIG_NAME


def _pydantic_problems(config: Config, table: list[str], exc: ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or None
        problems.append(config.problem(err["msg"], table, key))
    return problems


def _set(table: dict[str, Any], path: tuple[str, ...], value: str) -> bool:
    """Put ``value`` at ``path`` in ``table``; False when a step is not a table."""
    for step in path[:-1]:
        inner = table.setdefault(step, {})
        if not isinstance(inner, dict):
            return False
        table = inner
    table[path[-1]] = value
    return True


def _no_file(file: Path) -> ConfigError:
    return ConfigError(
        [
            Problem(
                str(file),
                "no configuration file; create one with `crmhub init`, or name yours with "
                "--config or $CRMHUB_CONFIG",
            )
        ]
    )


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read and check the configuration file (connector settings are checked by the registry).

    ``environ`` (default ``os.environ``) supplies ``env:`` references and overrides.
    """
    env = os.environ if environ is None else environ
    file = find_config(path).resolve()
    if not file.exists():
        raise _no_file(file)
    data, text = load_toml(file)
    config = Config(path=file, text=text, hub=HubSettings())
    problems: list[Problem] = []
    unknown = set(data) - {"hub", "connections"}
    for key in sorted(unknown):
        problems.append(config.problem("unknown top-level table or key", [key]))
    hub_table = data.get("hub", {})
    if isinstance(hub_table, dict):
        hub_table, refs = resolve_references(hub_table, env)
        problems += [config.problem(message, ["hub", *where]) for where, message in refs]
    try:
        config.hub = HubSettings.model_validate(hub_table)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(config, ["hub"], exc))
    connections = data.get("connections", {})
    if not isinstance(connections, dict):
        problems.append(config.problem("must be a table", ["connections"]))
        connections = {}
    overrides = read_overrides(env, [n for n in connections if _NAME.match(n)])
    config.warnings += overrides.warnings
    for variable, message in overrides.problems:
        problems.append(Problem(f"environment variable {variable}", message))
    for name, table in connections.items():
        problems += _load_connection(config, name, table, overrides.of(name), env, connections)
    for warning in config.warnings:
        log.warning("%s", warning)
    if problems:
        raise ConfigError(problems)
    return config


def _load_connection(
    config: Config,
    name: str,
    table: Any,
    overrides: list[Override],
    env: Mapping[str, str],
    connections: dict[str, Any],
) -> list[Problem]:
    """Check ``[connections.NAME]`` and add it to ``config``; returns what is wrong."""
    where = ["connections", name]
    if not _NAME.match(name):
        message = "connection names use lower-case letters, digits, '-' and '_'"
        return [config.problem(message, where)]
    if not isinstance(table, dict):
        return [config.problem("must be a table", where)]
    table, refs = resolve_references(table, env)
    problems = [config.problem(message, where, ".".join(at)) for at, message in refs]
    for override in overrides:
        dotted = ".".join(override.path)
        config.from_environment[".".join([*where, dotted])] = override.variable
        if not _set(table, override.path, override.value):
            message = "cannot be set: a part of the path before it is not a table"
            problems.append(config.problem(message, where, dotted))
    hub_part = {k: v for k, v in table.items() if k in HUB_KEYS}
    rest = {k: v for k, v in table.items() if k not in HUB_KEYS}
    try:
        settings = ConnectionSettings.model_validate(hub_part)
    except ValidationError as exc:
        return problems + _pydantic_problems(config, where, exc)
    for other in settings.prefer:
        if other not in connections:
            problems.append(
                config.problem(f"prefers unknown connection {other!r}", where, "prefer")
            )
    config.connections[name] = ConnectionConfig(
        name=name, hub=settings, settings=rest, line=line_of(config.text, where)
    )
    return problems
