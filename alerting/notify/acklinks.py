"""One-tap acknowledge tokens: HMAC-SHA256 signed, expiring, bound to a person and an occurrence.

Token = ``base64url(payload) "." base64url(HMAC-SHA256(key, base64url(payload)))`` with the
payload ``{"v": 1, "o": occurrence, "p": person id, "e": expiry (unix s), "n": nonce}``.
The nonce (96 random bits) names the token for the single-use record, which the notifier
keeps durably in its outbox database (``ack_tokens_used``); this module only signs and
verifies. Verification is constant-time (``hmac.compare_digest``) and checks the signature
before looking at the payload.

Key: ``notification.ack_secret`` when set; else 32 random bytes generated once and kept in
``{store.path}/notify-ack.key`` (hex; written to a 0600 temporary file, fsynced, renamed into
place; looser permissions on an existing file are tightened and logged). Changing the key
invalidates every link in flight.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from gateway.core.files import private_dir, write_private

log = logging.getLogger(__name__)

KEY_FILE = "notify-ack.key"
MAX_TOKEN = 512  # characters; anything longer is refused before decoding


class TokenError(Exception):
    """The token cannot be used. ``reason``: invalid | expired | used | wrong_occurrence."""

    reason = "invalid"


class TokenInvalid(TokenError):
    reason = "invalid"


class TokenExpired(TokenError):
    reason = "expired"

    def __init__(self, msg: str, claims: AckClaims) -> None:
        super().__init__(msg)
        self.claims = claims


class TokenUsed(TokenError):
    reason = "used"


class WrongOccurrence(TokenError):
    reason = "wrong_occurrence"


@dataclass(frozen=True, slots=True)
class AckClaims:
    occurrence: int
    person: str
    expires: int  # unix seconds
    nonce: str


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class AckSigner:
    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("ack key must be at least 16 bytes")
        self._key = key

    def sign(self, occurrence: int, person: str, expires: int) -> str:
        payload = {"v": 1, "o": int(occurrence), "p": person, "e": int(expires), "n": _b64(secrets.token_bytes(12))}
        body = _b64(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
        return f"{body}.{self._mac(body)}"

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode("ascii"), hashlib.sha256).digest())

    def verify(self, token: str, now_s: float, *, occurrence: int | None = None) -> AckClaims:
        """The token's claims; raises TokenInvalid (bad form or signature), TokenExpired,
        WrongOccurrence (when ``occurrence`` is given and differs)."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN or token.count(".") != 1:
            raise TokenInvalid("malformed token")
        body, mac = token.split(".")
        try:
            body.encode("ascii")
            mac.encode("ascii")
        except UnicodeEncodeError:
            raise TokenInvalid("malformed token") from None
        if not hmac.compare_digest(self._mac(body), mac):
            raise TokenInvalid("bad signature")
        try:
            d = json.loads(_unb64(body))
            claims = AckClaims(int(d["o"]), str(d["p"]), int(d["e"]), str(d["n"]))
            if d.get("v") != 1:
                raise ValueError("version")
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise TokenInvalid("malformed payload") from None
        if now_s >= claims.expires:
            raise TokenExpired("link expired", claims)
        if occurrence is not None and claims.occurrence != occurrence:
            raise WrongOccurrence(f"token is for occurrence {claims.occurrence}, not {occurrence}")
        return claims


def load_key(secret: str | None, store_path: str | Path) -> bytes:
    """The HMAC key: the configured secret, else the persisted (or newly generated) key file."""
    if secret:
        return secret.encode("utf-8")
    path = Path(store_path) / KEY_FILE
    private_dir(path.parent)
    if path.exists() and path.stat().st_size > 0:
        return _read_key(path)
    # new (or empty: a crash before the first write, so no link was ever signed with it):
    # write a temporary file with mode 0600, then rename it into place
    key = secrets.token_bytes(32)
    write_private(path, (key.hex() + "\n").encode())
    log.info("generated the ack link key %s", path)
    return key


def _read_key(path: Path) -> bytes:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("ack key %s had mode %o; tightened to 600", path, mode)
        os.chmod(path, 0o600)
    try:
        key = bytes.fromhex(path.read_text().strip())
    except ValueError:
        key = b""
    if len(key) < 16:
        raise ValueError(f"{path}: not a hex key of at least 16 bytes (delete it to generate a new one)")
    return key
