"""Settings from the environment: overrides and ``env:`` references, without ambiguity.

Two ways, both explicit:

* ``CRMHUB_CONNECTIONS__<NAME>__<SETTING>`` overrides one setting of one connection. ``NAME``
  is the connection's name upper-cased with each ``-`` written ``_2D_`` (its character
  code, as in a URL), so ``a-b`` is ``A_2D_B`` and ``a_b`` is ``A_B``. A setting inside a
  table is reached with more ``__``: ``CRMHUB_CONNECTIONS__CRM__OAUTH__CLIENT_SECRET``.
* ``api_key = "env:NEWSLETTER_KEY"`` in ``crmhub.toml`` takes the value of
  ``$NEWSLETTER_KEY`` (a missing variable is an error naming the file, line and key).

The hub's own variables (``HUB_VARIABLES``) are never read as settings, whatever a connection
is called. A variable that only looks like the old ``CRMHUB_<CONNECTION>_<SETTING>`` form is
not read either: loading warns and names the variable to set instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

PREFIX = "CRMHUB_CONNECTIONS__"
REFERENCE = "env:"
HUB_VARIABLES = frozenset(
    {
        "CRMHUB_CONFIG",
        "CRMHUB_DATABASE_URL",
        "CRMHUB_SECRET_KEY",
        "CRMHUB_SECRET_KEY_FILE",
        "CRMHUB_TEST_POSTGRES_URL",
    }
)
"""Variables the hub reads for itself; never a connection's setting."""
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SETTING = re.compile(r"^[A-Z][A-Z0-9_]*$")


def env_name(connection: str) -> str:
    """``connection`` as written in variable names: upper case, each ``-`` as ``_2D_``."""
    return connection.upper().replace("-", "_2D_")


def override_variable(connection: str, setting: str) -> str:
    """The variable overriding ``setting`` (dotted for tables: ``oauth.client_secret``)."""
    return PREFIX + env_name(connection) + "__" + setting.upper().replace(".", "__")


@dataclass(frozen=True)
class Override:
    """One ``CRMHUB_CONNECTIONS__...`` variable: which connection, which setting path."""

    variable: str
    connection: str
    path: tuple[str, ...]
    value: str


@dataclass
class Overrides:
    """What the environment says about the configured connections."""

    found: list[Override] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    """``(variable, message)`` for overrides that cannot be applied."""
    warnings: list[str] = field(default_factory=list)

    def of(self, connection: str) -> list[Override]:
        return [o for o in self.found if o.connection == connection]


def read_overrides(environ: Mapping[str, str], connections: Iterable[str]) -> Overrides:
    """Sort the ``CRMHUB_`` variables of ``environ`` against the configured connections."""
    names = sorted(connections)
    result = Overrides()
    for variable in sorted(environ):
        if variable.startswith(PREFIX):
            _read_one(variable, environ[variable], names, result)
        elif variable.startswith("CRMHUB_") and variable not in HUB_VARIABLES:
            warning = _old_style(variable, names)
            if warning:
                result.warnings.append(warning)
    return result


def _read_one(variable: str, value: str, names: list[str], result: Overrides) -> None:
    rest = variable[len(PREFIX) :]
    owners = [name for name in names if rest.startswith(env_name(name) + "__")]
    if not owners:
        known = ", ".join(f"{n} ({env_name(n)})" for n in names) or "none configured"
        result.warnings.append(f"{variable} names no configured connection (known: {known})")
        return
    if len(owners) > 1:
        result.problems.append(
            (variable, f"names more than one connection ({', '.join(owners)}); rename one")
        )
        return
    parts = rest[len(env_name(owners[0])) + 2 :].split("__")
    if not all(_SETTING.match(part) for part in parts):
        result.problems.append(
            (variable, "the part after the connection's name is not a setting name")
        )
        return
    path = tuple(part.lower() for part in parts)
    result.found.append(Override(variable, owners[0], path, value))


def _old_style(variable: str, names: list[str]) -> str | None:
    """A warning for a variable in the old ``CRMHUB_<CONNECTION>_<SETTING>`` form."""
    suggestions = []
    for name in names:
        old = f"CRMHUB_{name.upper().replace('-', '_')}_"
        if variable.startswith(old) and len(variable) > len(old):
            setting = variable[len(old) :].lower()
            if setting in ("client_id", "client_secret"):
                setting = "oauth." + setting
            elif setting.startswith("oauth_"):
                setting = "oauth." + setting.removeprefix("oauth_")
            suggestions.append(override_variable(name, setting))
    if not suggestions:
        return None
    return (
        f"{variable} is not read: settings from the environment are named "
        f"{PREFIX}<NAME>__<SETTING>; rename it to {' or '.join(suggestions)}, "
        f'or write SETTING = "env:{variable}" in the configuration file'
    )


def resolve_references(
    table: dict[str, Any], environ: Mapping[str, str], where: tuple[str, ...] = ()
) -> tuple[dict[str, Any], list[tuple[tuple[str, ...], str]]]:
    """``table`` with every ``"env:NAME"`` string (in it and its sub-tables) replaced by
    ``$NAME``; returns it and ``(key path, message)`` for references that cannot be."""
    resolved: dict[str, Any] = {}
    problems: list[tuple[tuple[str, ...], str]] = []
    for key, value in table.items():
        path = (*where, str(key))
        if isinstance(value, dict):
            resolved[key], inner = resolve_references(value, environ, path)
            problems += inner
        elif isinstance(value, str) and value.startswith(REFERENCE):
            name = value[len(REFERENCE) :]
            if not _VARIABLE.match(name):
                problems.append((path, f"{value!r} does not name an environment variable"))
            elif name in HUB_VARIABLES:
                problems.append((path, f"{name} is the hub's own variable, not a setting"))
            elif name not in environ:
                problems.append((path, f"environment variable {name} is not set"))
            else:
                resolved[key] = environ[name]
        else:
            resolved[key] = value
    return resolved, problems
