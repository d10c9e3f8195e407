"""Credentials: the encrypted token vault, its keys, and access tokens that stay valid.

``auth.keys``     where the secret key comes from, rotation
``auth.vault``    ``TokenVault``: encrypted credentials per connection in the store
``auth.tokens``   ``TokenManager``: one refresh per connection across workers; httpx auth
``auth.sandbox``  a sandbox OAuth2 authorization server (imported on first use: it needs
                  starlette and uvicorn, which the hub's runtime paths do not)
"""

from __future__ import annotations

from typing import Any

from auth.keys import (
    KEY_ENV,
    KEY_FILE_ENV,
    Keyring,
    SecretKeyError,
    create_key_file,
    generate_key,
    key_file_path,
    load_keyring,
    rotate_key_file,
)
from auth.tokens import (
    InvalidGrant,
    OAuth2Auth,
    Refresher,
    TokenManager,
    refresh_with_httpx,
)
from auth.vault import StoredToken, TokenStatus, TokenVault

__all__ = [
    "KEY_ENV",
    "KEY_FILE_ENV",
    "InvalidGrant",
    "Keyring",
    "OAuth2Auth",
    "Refresher",
    "SandboxOAuthServer",
    "SecretKeyError",
    "StoredToken",
    "TokenManager",
    "TokenStatus",
    "TokenVault",
    "create_key_file",
    "generate_key",
    "key_file_path",
    "load_keyring",
    "refresh_with_httpx",
    "rotate_key_file",
    "serve",
]


def __getattr__(name: str) -> Any:
    if name in ("SandboxOAuthServer", "serve"):
        from auth import sandbox

        return getattr(sandbox, name)
    raise AttributeError(f"module 'auth' has no attribute {name!r}")
