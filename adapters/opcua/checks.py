"""What ``hazardgw check`` judges of OPC UA sources beyond the schema: security warnings and
the certificate and key files (readable, parseable, belonging together).

The files are read with ``cryptography`` only (no asyncua import), so ``check`` stays fast.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from adapters.opcua.config import OpcuaSource
from gateway.core.sources import SourceProblem


def load_certificate(path: str) -> object:
    """An ``x509.Certificate`` from a DER or PEM file; OSError/ValueError when it is not one."""
    from cryptography import x509

    data = Path(path).read_bytes()
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def load_private_key(path: str) -> object:
    """An unencrypted private key from a PEM or DER file."""
    from cryptography.hazmat.primitives import serialization

    data = Path(path).read_bytes()
    if b"-----BEGIN" in data:
        return serialization.load_pem_private_key(data, password=None)
    return serialization.load_der_private_key(data, password=None)


def application_uri(cert: object) -> str | None:
    """The URI in the certificate's subjectAltName (the OPC UA application URI), if any."""
    from cryptography import x509

    assert isinstance(cert, x509.Certificate)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def _file_problems(cfg: OpcuaSource) -> Iterator[SourceProblem]:
    from cryptography.hazmat.primitives.asymmetric import rsa

    sec = cfg.security
    sid = cfg.id
    cert = key = None
    for name in ("cert", "server_cert"):
        path = getattr(sec, name)
        if path is None:
            continue
        try:
            c = load_certificate(path)
        except OSError as e:
            yield SourceProblem(sid, f"cannot read {path}: {e.strerror or e}", ("security", name))
            continue
        except ValueError:
            yield SourceProblem(sid, f"{path} is not an X.509 certificate (DER or PEM)", ("security", name))
            continue
        if name == "cert":
            cert = c
            if application_uri(c) is None:
                yield SourceProblem(sid, f"{path} has no application URI (subjectAltName URI): most servers "
                                    "reject it; create one with `hazardgw opcua make-cert`", ("security", name))
    if sec.key is not None:
        try:
            key = load_private_key(sec.key)
        except OSError as e:
            yield SourceProblem(sid, f"cannot read {sec.key}: {e.strerror or e}", ("security", "key"))
        except (ValueError, TypeError):
            yield SourceProblem(sid, f"{sec.key} is not an unencrypted private key (PEM or DER)",
                                ("security", "key"))
    if key is not None:
        if not isinstance(key, rsa.RSAPrivateKey):
            yield SourceProblem(sid, f"{sec.key}: OPC UA {sec.policy} needs an RSA key", ("security", "key"))
        elif not 2048 <= key.key_size <= 4096:
            yield SourceProblem(sid, f"{sec.key}: {sec.policy} needs an RSA key of 2048..4096 bits, "
                                f"this one has {key.key_size}", ("security", "key"))
        elif cert is not None:
            from cryptography import x509

            assert isinstance(cert, x509.Certificate)
            cert_key = cert.public_key()
            if not isinstance(cert_key, rsa.RSAPublicKey) or \
                    cert_key.public_numbers() != key.public_key().public_numbers():
                yield SourceProblem(sid, f"{sec.key} is not the key of {sec.cert}", ("security", "key"))


def check_opcua_sources(configs: Sequence[OpcuaSource]) -> list[SourceProblem]:
    out: list[SourceProblem] = []
    for cfg in configs:
        sec = cfg.security
        if not sec.secure:
            what = "values and the password" if cfg.username else "values"
            out.append(SourceProblem(
                cfg.id,
                f"security policy None: {what} travel unsigned and unencrypted, and any host can pose as "
                "the server; use Basic256Sha256 or Aes128Sha256RsaOaep with SignAndEncrypt where the "
                "server offers it",
                ("security", "policy"), "warning"))
        else:
            if sec.server_cert is None:
                out.append(SourceProblem(
                    cfg.id,
                    "server_cert not given: the server's certificate is taken as it presents itself at "
                    "every connect (encrypted, but not authenticated); pin it with server_cert",
                    ("security",), "warning"))
            out.extend(_file_problems(cfg))
    return out
