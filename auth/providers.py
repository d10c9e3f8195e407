"""How a connection authenticates: auth kinds and OAuth2 settings as data.

A connector declares its auth kind (``auth_kind: ClassVar[str]``) and, for OAuth2, its
provider's endpoints (``oauth: ClassVar[OAuthSettings | None]``). A connection may override
any of those settings from ``crmhub.toml``::

    [connections.crm.oauth]
    kind = "generic_oauth2"          # optional: any standards-compliant OAuth2 server
    authorize_url = "https://id.example.com/oauth2/authorize"
    token_url = "https://id.example.com/oauth2/token"
    scopes = ["contacts.read", "offline_access"]
    client_id = "crmhub"
    client_secret = "env:CRM_CLIENT_SECRET"   # or CRMHUB_CONNECTIONS__CRM__OAUTH__CLIENT_SECRET

``resolve_oauth`` merges the two and names the missing key when something required is absent.
"""

from __future__ import annotations

import functools
import re
import ssl
from dataclasses import dataclass, field
from typing import Any, cast

import requests
from pydantic import ValidationError

from hub.authspec import (
    AUTH_KINDS,
    CALLBACK_PATH,
    OAUTH_KINDS,
    AuthKind,
    OAuthSettings,
)
from hub.config import Config, HubSettings
from hub.environment import override_variable
from hub.errors import ConfigError, Problem


class OAuthOverrides(OAuthSettings):
    """The ``[connections.NAME.oauth]`` table: any provider setting plus client credentials."""

    kind: AuthKind | None = None
    client_id: str | None = None
    client_secret: str | None = None


OVERRIDE_KEYS = frozenset(OAuthOverrides.model_fields)


@dataclass(frozen=True)
class ResolvedOAuth:
    """Everything a flow needs for one connection; ``client_secret`` never shows in repr."""

    connection: str
    kind: AuthKind
    settings: OAuthSettings
    client_id: str
    redirect_uri: str
    client_secret: str | None = field(default=None, repr=False)

    @property
    def authorize_url(self) -> str:
        return self.settings.authorize_url or ""

    @property
    def token_url(self) -> str:
        return self.settings.token_url or ""

    @property
    def verify(self) -> str | bool:
        """``verify=`` for requests: the provider's CA bundle, else the system store."""
        return self.settings.ca_bundle or True

    def ssl_context(self) -> ssl.SSLContext | bool:
        """``verify=`` for httpx: a context trusting the provider's CA bundle, else True."""
        if not self.settings.ca_bundle:
            return True
        return ssl.create_default_context(cafile=self.settings.ca_bundle)


def default_redirect_uri(hub: HubSettings | None = None) -> str:
    """The hub's own callback; a wildcard listen address is reached through loopback."""
    settings = hub or HubSettings()
    host = settings.http_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.http_port}{CALLBACK_PATH}"


def oauth_table(connection_settings: dict[str, Any]) -> dict[str, Any]:
    """The connection's ``oauth`` table (empty when absent)."""
    table = connection_settings.get("oauth") or {}
    if not isinstance(table, dict):
        raise ConfigError([Problem("", "must be a table", key="oauth")])
    return table


def auth_kind(connector_cls: type, connection_settings: dict[str, Any] | None = None) -> AuthKind:
    """The auth kind of a connection: its ``oauth.kind`` override, else the connector's."""
    override = oauth_table(connection_settings or {}).get("kind")
    kind = override or getattr(connector_cls, "auth_kind", None)
    if kind is None:
        kind = "oauth2" if getattr(connector_cls, "oauth", None) is not None else "none"
    if kind not in AUTH_KINDS:
        where = "oauth.kind" if override else f"{connector_cls.__name__}.auth_kind"
        raise ConfigError(
            [
                Problem(
                    "",
                    f"unknown auth kind {kind!r} (valid: {', '.join(AUTH_KINDS)})",
                    key=where,
                )
            ]
        )
    return cast(AuthKind, kind)


def resolve_oauth(
    connector_cls: type,
    connection_settings: dict[str, Any],
    *,
    connection: str = "",
    default_redirect: str | None = None,
    problem: Any = None,
) -> ResolvedOAuth:
    """Merge the connector's ``oauth`` settings with the connection's overrides.

    ``client_id`` / ``client_secret`` come from the ``oauth`` table (where the configuration
    loader also puts ``CRMHUB_CONNECTIONS__<NAME>__OAUTH__CLIENT_SECRET`` and ``env:``
    references). ``problem(message, key)`` builds a ``Problem`` with file and line; without
    it the message names the key only. Raises ``ConfigError`` naming every missing or
    invalid key.
    """
    make = problem or (lambda message, key: Problem("", message, key=key))
    label = f"connection {connection!r}" if connection else "this connection"
    kind = auth_kind(connector_cls, connection_settings)
    if kind not in OAUTH_KINDS:
        raise ConfigError([make(f"{label} uses {kind!r} credentials, not OAuth2", "oauth.kind")])
    table = oauth_table(connection_settings)
    try:
        overrides = OAuthOverrides.model_validate(table)
    except ValidationError as exc:
        raise ConfigError(
            [
                make(
                    err["msg"]
                    if err["type"] != "extra_forbidden"
                    else f"unknown OAuth setting (valid: {', '.join(sorted(OVERRIDE_KEYS))})",
                    "oauth." + ".".join(str(p) for p in err["loc"]),
                )
                for err in exc.errors()
            ]
        ) from None
    base: OAuthSettings | None = getattr(connector_cls, "oauth", None)
    merged: dict[str, Any] = base.model_dump() if base and kind != "generic_oauth2" else {}
    merged.update(
        overrides.model_dump(exclude_unset=True, exclude={"kind", "client_id", "client_secret"})
    )
    settings = OAuthSettings.model_validate(merged)
    client_id = overrides.client_id
    client_secret = overrides.client_secret
    problems: list[Problem] = []
    settings = _filled(settings, connection_settings, label, make, problems)
    required = ["authority"] if kind == "msal" else ["authorize_url", "token_url"]
    for key in required:
        if not getattr(settings, key):
            problems.append(make(f"{label} needs the OAuth setting {key!r}", f"oauth.{key}"))
    if not client_id:
        problems.append(make(f"{label} needs an OAuth client_id", "oauth.client_id"))
    if kind == "msal" and not client_secret:
        variable = override_variable(connection or "NAME", "oauth.client_secret")
        problems.append(
            make(
                f"{label} needs a client secret (oauth.client_secret or ${variable})",
                "oauth.client_secret",
            )
        )
    if problems:
        raise ConfigError(problems)
    return ResolvedOAuth(
        connection=connection,
        kind=kind,
        settings=settings,
        client_id=str(client_id),
        client_secret=str(client_secret) if client_secret else None,
        redirect_uri=settings.redirect_uri or default_redirect or default_redirect_uri(),
    )


_SETTING = re.compile(r"\{settings\.(\w+)\}")


def _filled(
    settings: OAuthSettings,
    values: dict[str, Any],
    label: str,
    make: Any,
    problems: list[Problem],
) -> OAuthSettings:
    """Endpoints written with the connection's settings (Zendesk's
    ``https://{settings.subdomain}.zendesk.com/oauth/tokens``) filled in from them."""
    updates: dict[str, str] = {}
    for key in ("authorize_url", "token_url", "revocation_url", "metadata_url"):
        text = getattr(settings, key)
        if not isinstance(text, str) or "{settings." not in text:
            continue
        for name in _SETTING.findall(text):
            if values.get(name) in (None, ""):
                problems.append(make(f"{label} needs the setting {name!r} for its {key}", name))
        updates[key] = _SETTING.sub(lambda m: str(values.get(m.group(1)) or ""), text)
    return settings.model_copy(update=updates) if updates else settings


def connection_auth_settings(config: Config, name: str) -> dict[str, Any]:
    """The connection's settings including its ``oauth`` table, wherever the loader put it."""
    conn = config.connection(name)
    settings = dict(conn.settings)
    hub_oauth = getattr(conn.hub, "oauth", None)
    if hub_oauth:
        settings["oauth"] = {**dict(hub_oauth), **oauth_table(settings)}
    return settings


def resolve_for_config(config: Config, connector_cls: type, name: str) -> ResolvedOAuth:
    """``resolve_oauth`` for a configured connection, with file and line in every error."""

    def problem(message: str, key: str) -> Problem:
        return config.problem(message, ["connections", name], key)

    return resolve_oauth(
        connector_cls,
        connection_auth_settings(config, name),
        connection=name,
        default_redirect=default_redirect_uri(config.hub),
        problem=problem,
    )


def requests_session(resolved: ResolvedOAuth, timeout: float = 30.0) -> requests.Session:
    """A requests session (for msal and google-auth) trusting the provider's CA bundle.

    ``verify`` is bound to every request: a session-wide ``verify`` would lose to
    ``REQUESTS_CA_BUNDLE`` from the environment.
    """
    session = requests.Session()
    session.request = functools.partial(  # type: ignore[method-assign]
        session.request, verify=resolved.verify, timeout=timeout
    )
    return session
