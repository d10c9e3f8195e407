"""``crmhub.toml``: the hub's settings and its connections.

Relative paths in the file are relative to the file. Every error names the file, the line
and the key. A connection's connector settings are validated against the connector's own
``Settings`` model when the configuration loads, so a typo fails at start, not mid-run.
Secrets may come from the environment: ``CRMHUB_<CONNECTION>_<SETTING>`` (upper case,
``-`` as ``_``) overrides that setting.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hub.errors import ConfigError, Problem
from hub.tomlfile import load_toml, locate
from hub.webhooks import WebhookSettings

CONFIG_NAME = "crmhub.toml"
POLICIES = ("newest", "prefer", "hub", "remote", "manual")
Policy = Literal["newest", "prefer", "hub", "remote", "manual"]
Direction = Literal["both", "pull", "push"]
DeletePolicy = Literal["unlink", "propagate", "ignore"]
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


class HubSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    database: str = "crmhub.db"
    """A SQLite file path, or a SQLAlchemy URL (``postgresql+psycopg://...``)."""
    phone_region: str | None = None
    """Region for phone numbers written without a country code, e.g. ``GB``."""
    delete_guard_share: float = Field(0.10, ge=0, le=1)
    delete_guard_max: int = Field(50, ge=0)
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
        return Problem(str(self.path), message, line=locate(self.text, table, key), key=key)

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


def _env_overrides(name: str) -> dict[str, str]:
    prefix = f"CRMHUB_{name.upper().replace('-', '_')}_"
    return {
        key[len(prefix) :].lower(): value
        for key, value in os.environ.items()
        if key.startswith(prefix)
    }


def _pydantic_problems(
    path: Path, text: str, table: list[str], exc: ValidationError
) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = loc[0] if loc else None
        dotted = ".".join(loc) if loc else None
        problems.append(Problem(str(path), err["msg"], line=locate(text, table, key), key=dotted))
    return problems


def load_config(path: str | Path | None = None) -> Config:
    """Read and check the configuration file (connector settings are checked by the registry)."""
    file = find_config(path).resolve()
    data, text = load_toml(file)
    problems: list[Problem] = []
    unknown = set(data) - {"hub", "connections"}
    for key in sorted(unknown):
        problems.append(
            Problem(
                str(file),
                "unknown top-level table or key",
                locate(text, [], key) or locate(text, [key]),
                key,
            )
        )
    try:
        hub = HubSettings.model_validate(data.get("hub", {}))
    except ValidationError as exc:
        problems.extend(_pydantic_problems(file, text, ["hub"], exc))
        hub = HubSettings()
    config = Config(path=file, text=text, hub=hub)
    connections = data.get("connections", {})
    if not isinstance(connections, dict):
        problems.append(Problem(str(file), "must be a table", key="connections"))
        connections = {}
    for name, table in connections.items():
        where = ["connections", name]
        if not _NAME.match(name):
            problems.append(
                config.problem(
                    "connection names use lower-case letters, digits, '-' and '_'", where
                )
            )
            continue
        if not isinstance(table, dict):
            problems.append(config.problem("must be a table", where))
            continue
        env = _env_overrides(name)
        # OAuth client credentials from the environment belong to the ``oauth`` table.
        oauth_env = {k: env.pop(k) for k in ("client_id", "client_secret") if k in env}
        table = {**table, **env}
        if oauth_env:
            table["oauth"] = {**(table.get("oauth") or {}), **oauth_env}
        hub_part = {k: v for k, v in table.items() if k in HUB_KEYS}
        rest = {k: v for k, v in table.items() if k not in HUB_KEYS}
        try:
            settings = ConnectionSettings.model_validate(hub_part)
        except ValidationError as exc:
            problems.extend(_pydantic_problems(file, text, where, exc))
            continue
        for other in settings.prefer:
            if other not in connections:
                problems.append(
                    config.problem(f"prefers unknown connection {other!r}", where, "prefer")
                )
        config.connections[name] = ConnectionConfig(
            name=name, hub=settings, settings=rest, line=locate(text, where)
        )
    if problems:
        raise ConfigError(problems)
    return config
