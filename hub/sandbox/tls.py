"""A self-signed certificate for sandboxes that must be reached over HTTPS.

Some client libraries talk only to HTTPS servers (msal refuses any other authority), so
their sandbox is served with TLS: :func:`self_signed` writes a certificate for 127.0.0.1
and ``localhost`` and its key; the client is told to trust the certificate file (it is its
own certificate authority).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

__all__ = ["self_signed"]


def self_signed(folder: Path, name: str = "sandbox", days: int = 30) -> tuple[str, str]:
    """Write ``<name>.pem`` (certificate) and ``<name>.key`` into ``folder``; return both
    paths. The certificate is also a CA, so a client can use it as its trust bundle."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"crmhub {name} sandbox")])
    now = dt.datetime.now(dt.UTC)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / f"{name}.pem", folder / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.touch(mode=0o600)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_file), str(key_file)
