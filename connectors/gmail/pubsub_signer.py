"""The sandbox's stand-in for the OIDC tokens Pub/Sub attaches to push requests.

Pub/Sub signs a JWT (RS256) for the push subscription's service account, with the push
endpoint's audience; receivers verify it against Google's public certificates. The sandbox
keeps its own key and serves its certificate in the same shape as Google's
(``{key id: PEM certificate}`` at ``/oauth2/v1/certs``).
"""

from __future__ import annotations

import datetime as dt
import time

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

__all__ = ["ISSUER", "PUSH_ACCOUNT", "PushSigner"]

ISSUER = "https://accounts.google.com"
PUSH_ACCOUNT = "gmail-push@crmhub-sandbox.iam.gserviceaccount.com"


class PushSigner:
    def __init__(self, account: str = PUSH_ACCOUNT) -> None:
        self.account = account
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "crmhub sandbox push")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30))
            .sign(self._key, hashes.SHA256())
        )
        self.kid = format(cert.serial_number, "x")[:40]
        self._pem = cert.public_bytes(serialization.Encoding.PEM).decode()

    def certs(self) -> dict[str, str]:
        return {self.kid: self._pem}

    def token(self, audience: str, *, account: str | None = None, lifetime: int = 3600) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": audience,
            "azp": "113774264463038321964",
            "email": account or self.account,
            "email_verified": True,
            "sub": "113774264463038321964",
            "iat": now,
            "exp": now + lifetime,
        }
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})
