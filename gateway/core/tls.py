"""TLS contexts from config file paths, and checks of server certificate files.

* :func:`client_context`: MQTT sources and uplink transports (client side).
* :func:`server_context`: the API's HTTPS (``api.tls``): TLS 1.2 and 1.3 only, forward-secret
  AEAD ciphers only, no compression or renegotiation; with a client CA, a client certificate
  is required (mutual TLS).
* :func:`check_server_files`: what ``hazardgw check`` says about ``api.tls`` (readable, PEM,
  key matches the certificate, expiry, the host names it is valid for).
* :func:`self_signed`: a certificate and key for sites without a PKI (``hazardgw tls self-signed``).
* :func:`build_self_signed`, :func:`host_name`, :func:`private_pem`: the one way to make a
  self-signed certificate, used by :func:`self_signed` and by the OPC UA application
  instance certificates (adapters/opcua/certs.py), which differ only in key and extensions.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ObjectIdentifier

# cryptography (~7 MB) is imported by the functions that read or make certificates
# (check_server_files, self_signed, build_self_signed...), not here: sources and the uplink
# import this module for their TLS contexts, which need only ssl (issue 23)

#: TLS 1.2 suites: ECDHE key exchange (forward secrecy) with AES-GCM or ChaCha20-Poly1305
#: (Mozilla's "intermediate" list without DHE). TLS 1.3 suites are all AEAD and always on.
SERVER_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)
EXPIRY_WARNING_DAYS = 30


def client_context(ca: str | None, cert: str | None = None, key: str | None = None, *,
                   insecure: bool = False) -> ssl.SSLContext:
    """Verify the server against ``ca`` (None: the system's trust store); present the client
    certificate ``cert``/``key`` if given. ``insecure`` turns verification off (tests only).
    Reads files: call it off the event loop (:func:`load_client_context`)."""
    ctx = ssl.create_default_context(cafile=ca)
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def load_client_context(ca: str | None, cert: str | None = None, key: str | None = None, *,
                              insecure: bool = False) -> ssl.SSLContext:
    """:func:`client_context` in a thread, so reading the files never blocks the loop."""
    return await asyncio.to_thread(client_context, ca, cert, key, insecure=insecure)


def server_context(cert: str, key: str, client_ca: str | None = None) -> ssl.SSLContext:
    """A server context for ``cert``/``key`` (PEM): TLS 1.2+, :data:`SERVER_CIPHERS`; with
    ``client_ca`` every client must present a certificate that chains to it. Reads files."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(SERVER_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    ctx.load_cert_chain(cert, key)
    if client_ca is not None:
        ctx.load_verify_locations(cafile=client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


# --------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class TlsFinding:
    field: Literal["cert", "key", "client_ca"]
    message: str
    severity: Literal["error", "warning", "info"] = "error"


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(1024 * 1024)


def _names(cert: x509.Certificate) -> list[str]:
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*san.get_values_for_type(x509.DNSName), *(str(a) for a in san.get_values_for_type(x509.IPAddress))]


def _matches(host: str, names: Iterable[str]) -> bool:
    host = host.lower().rstrip(".")
    for n in names:
        n = n.lower().rstrip(".")
        if n == host or (n.startswith("*.") and "." in host and host.split(".", 1)[1] == n[2:]):
            return True
    return False


def check_server_files(
    cert: str, key: str, client_ca: str | None = None, *, now: dt.datetime | None = None, host: str | None = None
) -> list[TlsFinding]:
    """Findings about the API's certificate files. Errors: unreadable, not PEM, encrypted or
    mismatched key, a file OpenSSL refuses. Warnings: expired or not yet valid (the console
    shows a certificate error; alarms and pushes are not affected, so the gateway still
    runs), expiring within 30 days, a key others can read, ``host`` (from ``api.public_url``)
    not among the certificate's names."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    now = now or dt.datetime.now(dt.UTC)
    out: list[TlsFinding] = []
    try:
        certs = x509.load_pem_x509_certificates(_read(cert))
    except OSError as e:
        return [TlsFinding("cert", f"cannot read the certificate: {e.strerror or e}")]
    except ValueError as e:
        return [TlsFinding("cert", f"not a PEM certificate: {e}")]
    leaf = certs[0]
    try:
        key_data = _read(key)
        mode = os.stat(key).st_mode
    except OSError as e:
        return [TlsFinding("key", f"cannot read the private key: {e.strerror or e}")]
    try:
        private = serialization.load_pem_private_key(key_data, password=None)
    except TypeError:
        return [TlsFinding("key", "the private key is encrypted; give an unencrypted key readable only by the "
                                  "gateway's user (mode 0600)")]
    except (ValueError, x509.UnsupportedGeneralNameType) as e:
        return [TlsFinding("key", f"not a PEM private key: {e}")]
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if private.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        return [TlsFinding("key", "the private key does not belong to the certificate (the first one in the file)")]
    if mode & 0o077:
        out.append(TlsFinding("key", f"the private key file is readable by others (mode {mode & 0o777:04o}); "
                                     "chmod 600 it", "warning"))
    try:
        server_context(cert, key, client_ca)
    except (ssl.SSLError, OSError) as e:
        where: Literal["cert", "client_ca"] = "client_ca" if client_ca and "verify" in str(e).lower() else "cert"
        out.append(TlsFinding(where, f"OpenSSL refuses the files: {e}"))
        return out
    after, before = leaf.not_valid_after_utc, leaf.not_valid_before_utc
    if after <= now:
        out.append(TlsFinding("cert", f"the certificate expired on {after:%Y-%m-%d %H:%M} UTC: browsers and phones "
                                      "refuse the console until it is replaced", "warning"))
    elif after - now <= dt.timedelta(days=EXPIRY_WARNING_DAYS):
        out.append(TlsFinding("cert", f"the certificate expires on {after:%Y-%m-%d %H:%M} UTC "
                                      f"(in {(after - now).days} days): renew it", "warning"))
    if before > now:
        out.append(TlsFinding("cert", f"the certificate is not valid before {before:%Y-%m-%d %H:%M} UTC "
                                      "(is the clock right?)", "warning"))
    names = _names(leaf)
    if host is not None and not _matches(host, names):
        out.append(TlsFinding("cert", f"api.public_url's host {host!r} is not among the certificate's names "
                                      f"{names}: phones will refuse the one-tap acknowledge links", "warning"))
    if client_ca is not None:
        try:
            cas = x509.load_pem_x509_certificates(_read(client_ca))
        except (OSError, ValueError) as e:
            out.append(TlsFinding("client_ca", f"cannot read the client CA bundle: {e}"))
        else:
            if all(c.not_valid_after_utc <= now for c in cas):
                out.append(TlsFinding("client_ca", "every client CA certificate has expired", "warning"))
    return out


# --------------------------------------------------------------------------- self-signed


@dataclass(frozen=True)
class SelfSigned:
    cert_pem: bytes
    key_pem: bytes
    sha256: str  # fingerprint, AA:BB:... (for users to compare when they trust it on a phone)
    not_after: dt.datetime


def host_name(host: str) -> x509.GeneralName:
    """A subjectAltName entry for ``host``: its IP address, else a DNS name."""
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def build_self_signed(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    name: x509.Name,
    alt: list[x509.GeneralName],
    *,
    now: dt.datetime,
    not_after: dt.datetime,
    ca: bool,
    usage: x509.KeyUsage,
    extended: list[ObjectIdentifier],
) -> x509.Certificate:
    """A certificate for ``key`` signed by itself (SHA-256): subject = issuer = ``name``,
    valid from 5 minutes before ``now`` (clocks differ) to ``not_after``, subjectAltName
    ``alt``, basic constraints (``ca``: a CA that signs only itself, as clients that import a
    self-signed certificate expect) and ``usage`` critical, extended key usage ``extended``,
    subject key identifier."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage(extended), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def private_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    """The key as unencrypted PKCS#8 PEM (the gateway reads it unattended: keep the file 0600)."""
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def self_signed(hosts: Iterable[str], *, days: int = 825, now: dt.datetime | None = None) -> SelfSigned:
    """An ECDSA P-256 self-signed server certificate valid for ``hosts`` (DNS names or IP
    addresses, all in subjectAltName) for ``days`` days. Trust it on the clients (import
    the certificate) or replace it with one from the site's PKI."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    hosts = [h.strip() for h in hosts if h.strip()]
    if not hosts:
        raise ValueError("at least one host name or address")
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0][:64]),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hazardgw (self-signed)")])
    not_after = now + dt.timedelta(days=days)
    cert = build_self_signed(
        key, name, [host_name(h) for h in hosts], now=now, not_after=not_after, ca=True,
        usage=x509.KeyUsage(digital_signature=True, key_cert_sign=True, content_commitment=False,
                            key_encipherment=False, data_encipherment=False, key_agreement=False,
                            crl_sign=False, encipher_only=False, decipher_only=False),
        extended=[ExtendedKeyUsageOID.SERVER_AUTH],
    )
    fp = cert.fingerprint(hashes.SHA256()).hex().upper()
    return SelfSigned(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=private_pem(key),
        sha256=":".join(fp[i:i + 2] for i in range(0, len(fp), 2)),
        not_after=not_after,
    )
