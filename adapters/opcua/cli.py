"""``hazardgw opcua browse|make-cert`` and ``hazardgw probe opcua``: commissioning tools.

Cheap to import (the parser is built on every ``hazardgw`` call): asyncua and
cryptography are imported by the handlers.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

BROWSE_EPILOG = """\
Lists every variable below --root (node id, browse path, data type, value, status, EURange,
EngineeringUnits) and, with --out, writes them as a tag-list CSV (UTF-8 with BOM, the
columns of `hazardgw tags import`) with the node column filled in. Read-only: the browse
never writes to the server. Security options as in the source config; the password comes
from the environment variable named by --password-env."""


def _security_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", default="None", choices=("None", "Basic256Sha256", "Aes128Sha256RsaOaep"),
                   help="security policy (default None)")
    p.add_argument("--mode", default=None, choices=("Sign", "SignAndEncrypt"),
                   help="message security mode (default SignAndEncrypt with a policy)")
    p.add_argument("--cert", help="client certificate (DER/PEM), with a policy")
    p.add_argument("--key", help="client private key (PEM/DER), with a policy")
    p.add_argument("--server-cert", help="pin the server's certificate (DER/PEM)")
    p.add_argument("--username")
    p.add_argument("--password-env", default="OPCUA_PASSWORD",
                   help="environment variable holding the password (default OPCUA_PASSWORD)")
    p.add_argument("--timeout", type=float, default=5.0, help="per request, seconds (default 5)")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], probe: Any) -> None:
    g = sub.add_parser("opcua", help="OPC UA commissioning tools: browse a server, make a client certificate")
    gsub = g.add_subparsers(dest="opcua_cmd", required=True)

    b = gsub.add_parser("browse", help="list a server's variables; write them as a tag-list CSV",
                        epilog=BROWSE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("url", help="opc.tcp://host:4840")
    b.add_argument("--root", default="Objects", help="browse path to start from (default Objects)")
    b.add_argument("--depth", type=int, default=6, help="levels below --root (default 6)")
    b.add_argument("--out", help="write the variables as a tag-list CSV here")
    b.add_argument("--source", default="dcs", help="source id written in the CSV's source column (default dcs)")
    b.add_argument("--max-nodes", type=int, default=100_000, help="stop after this many nodes (default 100000)")
    _security_args(b)
    b.set_defaults(func=cmd_browse)

    c = gsub.add_parser("make-cert", help="create a client certificate and key for the DCS administrator")
    c.add_argument("--out", required=True, help="directory for opcua-cert.der, opcua-cert.pem, opcua-key.pem")
    c.add_argument("--uri", required=True, help="application URI, e.g. urn:plant-a:hazardgw")
    c.add_argument("--hostname", default=None, help="DNS name in the certificate (default: this host's name)")
    c.add_argument("--cn", default=None, help="common name (default: hazardgw@<hostname>)")
    c.add_argument("--days", type=int, default=3650, help="validity in days (default 3650)")
    c.add_argument("--key-size", type=int, default=2048, choices=(2048, 3072, 4096))
    c.add_argument("--force", action="store_true", help="overwrite existing files")
    c.set_defaults(func=cmd_make_cert)

    pr = probe.add_parser("opcua", help="read OPC UA nodes once (node ids or browse paths)")
    pr.add_argument("url", help="opc.tcp://host:4840")
    pr.add_argument("nodes", nargs="+", help="node ids (ns=2;s=...) or browse paths (Objects/Plant/...)")
    _security_args(pr)
    pr.set_defaults(func=cmd_probe)


def cmd_browse(args: argparse.Namespace) -> int:
    from adapters.opcua.browse import run_browse

    return asyncio.run(run_browse(args))


def cmd_probe(args: argparse.Namespace) -> int:
    from adapters.opcua.browse import run_probe

    return asyncio.run(run_probe(args))


def cmd_make_cert(args: argparse.Namespace) -> int:
    from adapters.opcua.certs import CertError, make_client_cert

    try:
        made = make_client_cert(args.out, args.uri, hostname=args.hostname, common_name=args.cn,
                                days=args.days, key_size=args.key_size, force=args.force)
    except CertError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"certificate: {made.cert_der}  (DER: give this file to the DCS administrator)")
    print(f"             {made.cert_pem}  (the same certificate as PEM)")
    print(f"private key: {made.key_pem}  (mode 0600: stays on the gateway)")
    print(f"application URI: {made.uri}")
    print(f"SHA-1 thumbprint: {made.thumbprint}  (what the server's trust list shows)")
    print(f"valid until: {made.not_after:%Y-%m-%d}")
    print("config: security: {policy: Basic256Sha256, mode: SignAndEncrypt, "
          f"cert: {made.cert_der}, key: {made.key_pem}, server_cert: <the server's certificate>}}")
    return 0
