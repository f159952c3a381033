"""Opening an OPC UA session with the configured security, and describing what went wrong.

One fresh ``asyncua.Client`` per connection attempt, with asyncua's own reconnect
(``auto_reconnect``) off: after a server restart the adapter must resolve browse paths
again and build new subscriptions from scratch (a restored subscription could point at
node ids the restarted server gave to other variables), so the adapter owns the loop
(:mod:`adapters.opcua.adapter`). asyncua's connection supervisor still probes the server
every ``timeout`` seconds and reports a dead connection through
``connection_lost_callback``.

Error texts never contain the password (asyncua's exceptions carry status codes, not
request contents; the user name is shown).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from asyncua import Client, ua
from asyncua.crypto import security_policies
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from adapters.opcua.batching import status_name
from adapters.opcua.config import OpcuaSource

# asyncua logs every connect step at INFO, routine events as warnings and a lost connection
# as an error with a traceback (its publish loop); the adapter logs loss and recovery itself,
# once, and catches its own callbacks' errors. A level set by the operator stays.
_lib_log = logging.getLogger("asyncua")
if _lib_log.level == logging.NOTSET:
    _lib_log.setLevel(logging.CRITICAL)


class _NoIdentityTokens(logging.Filter):
    """asyncua's socket logger writes every request at DEBUG, the ActivateSession request with
    the user's password in it: such records are dropped, whatever level an operator sets."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "IdentityToken" not in record.getMessage()


logging.getLogger("asyncua.client.ua_client.UASocketProtocol").addFilter(_NoIdentityTokens())

POLICIES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128Sha256RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
}

#: the server refused us: configuration or trust, not the network (retried slowly)
REFUSED_CODES = frozenset({
    ua.StatusCodes.BadUserAccessDenied,
    ua.StatusCodes.BadIdentityTokenInvalid,
    ua.StatusCodes.BadIdentityTokenRejected,
    ua.StatusCodes.BadSecurityChecksFailed,
    ua.StatusCodes.BadCertificateUntrusted,
    ua.StatusCodes.BadCertificateInvalid,
    ua.StatusCodes.BadCertificateRevoked,
    ua.StatusCodes.BadCertificateTimeInvalid,
    ua.StatusCodes.BadCertificateUriInvalid,
    ua.StatusCodes.BadCertificateUseNotAllowed,
    ua.StatusCodes.BadCertificateHostNameInvalid,
    ua.StatusCodes.BadSecurityPolicyRejected,
    ua.StatusCodes.BadSecurityModeRejected,
    ua.StatusCodes.BadUserSignatureInvalid,
    ua.StatusCodes.BadApplicationSignatureInvalid,
    ua.StatusCodes.BadNonceInvalid,
})
_USER_CODES = frozenset({
    ua.StatusCodes.BadUserAccessDenied,
    ua.StatusCodes.BadIdentityTokenInvalid,
    ua.StatusCodes.BadIdentityTokenRejected,
})

Kind = Literal["refused", "unreachable", "error"]


@dataclass(frozen=True)
class Failure:
    kind: Kind  # refused: fix the config or the server's trust list; unreachable: the network
    text: str


def describe(e: BaseException, cfg: OpcuaSource) -> Failure:
    """A one-line explanation of a connect/session failure, without secrets."""
    if isinstance(e, UaStatusCodeError):
        code = e.code if isinstance(e.code, int) else 0
        name = status_name(code)
        if code in _USER_CODES:
            who = f"user {cfg.username!r}" if cfg.username else "anonymous access"
            return Failure("refused", f"server refused {who} ({name}): check username and password")
        if code in REFUSED_CODES:
            return Failure("refused", f"server refused the connection ({name}): is our certificate in the "
                           "server's trusted list, and do policy and mode match an endpoint it offers?")
        return Failure("error", f"{name}")
    if isinstance(e, TimeoutError | asyncio.TimeoutError):
        hint = ""
        if cfg.security.server_cert is not None:
            hint = (" (a server whose certificate is not server_cert cannot read our secure channel request "
                    "and does not answer)")
        return Failure("unreachable", f"no answer within {cfg.timeout:g} s{hint}")
    if isinstance(e, ConnectionRefusedError):
        return Failure("unreachable", "connection refused (server down or wrong port)")
    if isinstance(e, socket.gaierror):
        return Failure("unreachable", f"cannot resolve the host name ({e.strerror})")
    if isinstance(e, OSError | ConnectionError | EOFError):
        return Failure("unreachable", f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
    if isinstance(e, UaError):
        text = str(e)
        if "certificate mismatch" in text.lower():
            return Failure("refused", "the server's certificate is not the pinned server_cert "
                           f"({cfg.security.server_cert})")
        if "No matching endpoints" in text:
            return Failure("refused", f"the server offers no endpoint with policy {cfg.security.policy} and "
                           f"mode {cfg.security.message_mode}")
        return Failure("error", f"{type(e).__name__}: {text}")
    if isinstance(e, ssl.SSLError | ValueError):
        return Failure("error", f"{type(e).__name__}: {e}")
    return Failure("error", f"{type(e).__name__}: {e}")


def make_client(cfg: OpcuaSource, *, name: str | None = None) -> Client:
    """A client for one connection attempt (no I/O yet)."""
    client = Client(cfg.url, timeout=cfg.timeout, watchdog_intervall=cfg.timeout, auto_reconnect=False)
    client.name = client.description = name or f"hazardgw {cfg.id}"
    client.application_uri = f"urn:{socket.gethostname()}:hazardgw"
    client.product_uri = "urn:hazardgw"
    # the server keeps our session this long after we vanish (publish requests and the
    # watchdog's reads keep it alive meanwhile)
    client.session_timeout = int(max(60.0, 12 * cfg.timeout) * 1000)
    if cfg.username is not None:
        client.set_user(cfg.username)
        client.set_password(cfg.password.get_secret_value() if cfg.password is not None else "")
    return client


async def apply_security(client: Client, cfg: OpcuaSource) -> None:
    """Client certificate, key and (pinned) server certificate of a secured source."""
    from adapters.opcua.checks import application_uri, load_certificate

    sec = cfg.security
    if not sec.secure:
        return
    assert sec.cert is not None and sec.key is not None
    uri = application_uri(load_certificate(sec.cert))
    if uri:
        client.application_uri = uri  # must match the certificate, or servers reject it
    mode = ua.MessageSecurityMode.Sign if sec.message_mode == "Sign" else ua.MessageSecurityMode.SignAndEncrypt
    await client.set_security(POLICIES[sec.policy], sec.cert, sec.key, server_certificate=sec.server_cert, mode=mode)


LostCallback = Callable[[Exception], Coroutine[Any, Any, None]]


async def open_session(cfg: OpcuaSource, on_lost: LostCallback | None = None, *, name: str | None = None) -> Client:
    """A connected client (secure channel and activated session), or an exception."""
    client = make_client(cfg, name=name)
    if on_lost is not None:
        client.connection_lost_callback = on_lost
    budget = 3 * cfg.timeout + 2.0  # endpoints (unpinned security), channel, session, activation
    try:
        async with asyncio.timeout(budget):
            await apply_security(client, cfg)
            await client.connect()
    except BaseException:
        await close_quietly(client, 1.0)
        raise
    return client


async def close_quietly(client: Client, within: float) -> None:
    """Close the session (deleting its subscriptions on the server) and the connection,
    within ``within`` seconds; errors are ignored (the server is often the reason we close)."""
    try:
        async with asyncio.timeout(within):
            await client.disconnect()
    except Exception:  # teardown of a broken connection
        try:
            client.uaclient.request_disconnect()
            client.disconnect_socket()
        except Exception:
            pass
