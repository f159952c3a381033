"""``hazardgw tls self-signed`` and ``hazardgw token new`` (docs/cli.md).

``add_parser(sub)`` adds both groups to the ``hazardgw`` command line (gateway/cli.py).
Nothing here loads FastAPI or uvicorn.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import sys
from pathlib import Path

from pydantic import ValidationError

from gateway.core.config import ApiToken
from gateway.core.tls import self_signed

EXIT_OK = 0
EXIT_USAGE = 2


def cmd_self_signed(args: argparse.Namespace) -> int:
    out = Path(args.out)
    cert, key = out / "api.crt", out / "api.key"
    if not args.force and (cert.exists() or key.exists()):
        print(f"error: {cert} or {key} exists; pass --force to replace them", file=sys.stderr)
        return EXIT_USAGE
    try:
        made = self_signed(args.host, days=args.days)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(made.key_pem)
    cert.write_bytes(made.cert_pem)
    cert.chmod(0o644)
    print(f"wrote {cert} (certificate, valid until {made.not_after:%Y-%m-%d}) and {key} (private key, mode 0600)")
    print(f"valid for: {', '.join(args.host)}")
    print(f"SHA-256 fingerprint: {made.sha256}")
    print("Trust the certificate on the consoles and phones (import api.crt), compare the fingerprint, then set:")
    print("api:")
    print(f"  tls: {{cert: {cert.resolve()}, key: {key.resolve()}}}")
    print(f"  public_url: https://{args.host[0]}:PORT   # the port of api.listen")
    return EXIT_OK


def cmd_token_new(args: argparse.Namespace) -> int:
    secret = secrets.token_urlsafe(32)
    digest = hashlib.sha256(secret.encode("utf-8")).hexdigest()  # = gateway.api.auth.hash_token
    try:
        tok = ApiToken(name=args.name, role=args.role, token_sha256=digest, expires=args.expires)
    except ValidationError as e:
        for err in e.errors():
            where = ".".join(str(x) for x in err["loc"])
            print(f"error: {where}: {err['msg']}", file=sys.stderr)
        return EXIT_USAGE
    expires = f", expires: {tok.expires.isoformat()}" if tok.expires is not None else ""
    print(f"Token for {tok.name} ({tok.role}); shown only now, give it to its holder and keep no copy:")
    print(f"  {secret}")
    print("Add under api.tokens in the config (it holds only the SHA-256), then reload (SIGHUP):")
    print(f'  - {{name: {tok.name}, role: {tok.role}, token_sha256: "{digest}"{expires}}}')
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``hazardgw tls ...`` and ``hazardgw token ...``."""
    tls = sub.add_parser("tls", help="certificates for the API's HTTPS (api.tls)")
    tls_sub = tls.add_subparsers(dest="tls_cmd", required=True)
    ss = tls_sub.add_parser("self-signed", help="a self-signed certificate and key for sites without a PKI")
    ss.add_argument("--host", action="append", required=True,
                    help="a host name or IP address the console is opened with (repeat for more)")
    ss.add_argument("--out", required=True, help="directory for api.crt and api.key")
    ss.add_argument("--days", type=int, default=825, help="validity in days (825)")
    ss.add_argument("--force", action="store_true", help="replace existing files")
    ss.set_defaults(func=cmd_self_signed)

    tok = sub.add_parser("token", help="API tokens (api.tokens)")
    tok_sub = tok.add_subparsers(dest="token_cmd", required=True)
    new = tok_sub.add_parser("new", help="make a token: prints the secret once and the config line with its SHA-256")
    new.add_argument("--name", required=True, help="who holds it (the user in the journal and audit log)")
    new.add_argument("--role", required=True, choices=["viewer", "operator", "admin"])
    new.add_argument("--expires", default=None,
                     help="last valid day (2026-12-31, site time) or moment (2026-12-31T18:00[+08:00])")
    new.set_defaults(func=cmd_token_new)
