"""How a connection authenticates, as data: auth kinds and an OAuth2 provider's settings.

A connector declares its auth kind (``auth_kind: ClassVar[str]``) and, for OAuth2, its
provider's endpoints (``oauth: ClassVar[OAuthSettings | None]``). The token flows that use
them live in ``auth/``; the hub's core knows only this data.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict

AuthKind = Literal["none", "api_key", "basic", "oauth2", "generic_oauth2", "msal", "google"]
AUTH_KINDS: tuple[str, ...] = get_args(AuthKind)
OAUTH_KINDS = frozenset({"oauth2", "generic_oauth2", "msal", "google"})
ClientAuth = Literal["body", "basic"]
CALLBACK_PATH = "/oauth/callback"


class OAuthSettings(BaseModel):
    """One OAuth2 provider's endpoints and habits; data on the connector class."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    authorize_url: str | None = None
    token_url: str | None = None
    revocation_url: str | None = None
    metadata_url: str | None = None
    """Fetched once after the code exchange (Mailchimp: data centre and API endpoint)."""
    metadata_auth_scheme: str = "Bearer"
    """``Authorization`` scheme for ``metadata_url`` (Mailchimp wants ``OAuth``)."""
    authority: str | None = None
    """Microsoft identity platform authority (``https://login.microsoftonline.com/TENANT``)."""
    scopes: list[str] = []
    pkce: bool = True
    rotates_refresh_tokens: bool = False
    refresh_token_max_idle_days: int | None = None
    """Refresh tokens die after this many days unused (Xero: 60); crmhub refreshes such
    connections once a day when half of that has passed without a refresh."""
    client_auth: ClientAuth = "body"
    """How the client authenticates at the token endpoint: form fields or HTTP Basic."""
    authorize_params: dict[str, str] = {}
    """Extra query parameters for the authorization URL (``access_type=offline``, ...)."""
    redirect_uri: str | None = None
    """Default: the hub's own ``http://127.0.0.1:<http_port>/oauth/callback``."""
    ca_bundle: str | None = None
    """A CA file to trust for this provider (a company identity provider with its own CA)."""
    client_credentials: bool = False
    """The application acts for itself (Microsoft's application permissions): its tokens
    come from the client-credentials grant, and nobody connects a user account."""
