"""Self-signed OPC UA application instance certificates (``hazardgw opcua make-cert``).

What OPC UA Part 6 (6.2.2) asks of an application instance certificate, and what DCS
servers check: an RSA key (2048 bits by default, within what Basic256Sha256 and
Aes128Sha256RsaOaep accept), SHA-256 signature, the application URI as a
subjectAltName URI (it must equal the client's ApplicationUri; the adapter reads it from
the certificate), the host name as a DNS name, key usages digitalSignature,
nonRepudiation, keyEncipherment and dataEncipherment, extended key usage clientAuth
(and serverAuth for a server certificate, used by the simulator).

Files written to ``--out``: ``opcua-cert.der`` (for the DCS administrator's trust list
and the ``cert:`` key), ``opcua-cert.pem`` (the same certificate), ``opcua-key.pem``
(unencrypted PKCS#8, mode 0600: the gateway reads it unattended). Existing files are
never overwritten without ``force``.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from dataclasses import dataclass
from pathlib import Path


class CertError(Exception):
    pass


@dataclass(frozen=True)
class MadeCert:
    cert_der: Path
    cert_pem: Path
    key_pem: Path
    uri: str
    thumbprint: str  # SHA-1, hex with colons (what server trust lists show)
    not_after: dt.datetime


def make_certificate(
    uri: str,
    *,
    hostname: str | None = None,
    common_name: str | None = None,
    days: int = 3650,
    key_size: int = 2048,
    server: bool = False,
) -> tuple[bytes, bytes]:
    """(certificate DER, private key PEM) of a new self-signed application certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from gateway.core.tls import build_self_signed, host_name, private_pem

    if not uri or any(c.isspace() for c in uri) or ":" not in uri:
        raise CertError(f"application URI {uri!r} must be a URI such as urn:plant-a:hazardgw")
    if not 1 <= days <= 36500:
        raise CertError("days must be 1..36500")
    host = hostname or socket.gethostname()
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, common_name or f"hazardgw@{host}"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hazardgw"),
    ])
    now = dt.datetime.now(dt.UTC)
    cert = build_self_signed(
        key, name, [x509.UniformResourceIdentifier(uri), host_name(host)], now=now,
        not_after=now + dt.timedelta(days=days), ca=False,
        usage=x509.KeyUsage(
            digital_signature=True, content_commitment=True, key_encipherment=True, data_encipherment=True,
            key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
        ),
        extended=[ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []),
    )
    return cert.public_bytes(serialization.Encoding.DER), private_pem(key)


def make_client_cert(
    out: str | Path,
    uri: str,
    *,
    hostname: str | None = None,
    common_name: str | None = None,
    days: int = 3650,
    key_size: int = 2048,
    force: bool = False,
) -> MadeCert:
    """Write a client certificate and key into directory ``out`` (created if needed)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    d = Path(out)
    paths = (d / "opcua-cert.der", d / "opcua-cert.pem", d / "opcua-key.pem")
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise CertError(f"{', '.join(existing)} exist; pass --force to replace them (the DCS trusts the old one)")
    der, key_pem = make_certificate(uri, hostname=hostname, common_name=common_name, days=days, key_size=key_size)
    try:
        d.mkdir(parents=True, exist_ok=True)
        cert = x509.load_der_x509_certificate(der)
        paths[0].write_bytes(der)
        paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        fd = os.open(paths[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        os.chmod(paths[2], 0o600)
    except OSError as e:
        raise CertError(f"cannot write to {d}: {e.strerror or e}") from None
    thumb = cert.fingerprint(hashes.SHA1()).hex(":").upper()  # the OPC UA thumbprint is SHA-1
    return MadeCert(paths[0], paths[1], paths[2], uri, thumb, cert.not_valid_after_utc)
