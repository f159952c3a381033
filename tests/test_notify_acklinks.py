"""Ack tokens: signed, expiring, bound to person and occurrence; the key file."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from alerting.notify.acklinks import (
    KEY_FILE,
    AckSigner,
    TokenExpired,
    TokenInvalid,
    WrongOccurrence,
    load_key,
)

KEY = b"k" * 32
NOW = 1_772_000_000.0


def test_valid_token_round_trip() -> None:
    s = AckSigner(KEY)
    tok = s.sign(42, "zhao", int(NOW + 3600))
    c = s.verify(tok, NOW)
    assert (c.occurrence, c.person, c.expires) == (42, "zhao", int(NOW + 3600))
    assert s.verify(tok, NOW, occurrence=42).nonce == c.nonce
    assert tok != s.sign(42, "zhao", int(NOW + 3600))  # a fresh nonce every time
    assert all(ch.isalnum() or ch in "-_." for ch in tok) and len(tok) < 200  # URL-safe, short


def test_expired_token() -> None:
    s = AckSigner(KEY)
    tok = s.sign(42, "zhao", int(NOW + 60))
    s.verify(tok, NOW + 59.9)
    with pytest.raises(TokenExpired) as e:
        s.verify(tok, NOW + 60)
    assert e.value.claims.person == "zhao" and e.value.reason == "expired"


def test_tampered_tokens_are_refused() -> None:
    s = AckSigner(KEY)
    tok = s.sign(42, "zhao", int(NOW + 3600))
    body, mac = tok.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    for change in ({"o": 43}, {"p": "wang"}, {"e": int(NOW + 10**6)}):
        forged = base64.urlsafe_b64encode(json.dumps(payload | change).encode()).rstrip(b"=").decode()
        with pytest.raises(TokenInvalid, match="bad signature"):
            s.verify(f"{forged}.{mac}", NOW)
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    with pytest.raises(TokenInvalid):
        s.verify(f"{body}.{flipped}", NOW)
    with pytest.raises(TokenInvalid):
        AckSigner(b"x" * 32).verify(tok, NOW)  # another gateway's key
    for junk in ("", "abc", "a.b.c", "é.é", "x" * 600, body):
        with pytest.raises(TokenInvalid):
            s.verify(junk, NOW)


def test_token_bound_to_its_occurrence() -> None:
    s = AckSigner(KEY)
    tok = s.sign(42, "zhao", int(NOW + 3600))
    with pytest.raises(WrongOccurrence):
        s.verify(tok, NOW, occurrence=41)


def test_key_is_generated_once_with_0600(tmp_path: Path) -> None:
    k1 = load_key(None, tmp_path / "store")
    f = tmp_path / "store" / KEY_FILE
    assert len(k1) == 32 and stat.S_IMODE(f.stat().st_mode) == 0o600
    assert load_key(None, tmp_path / "store") == k1  # persisted: links survive a restart
    os.chmod(f, 0o644)
    assert load_key(None, tmp_path / "store") == k1
    assert stat.S_IMODE(f.stat().st_mode) == 0o600  # tightened
    assert load_key("a configured secret value", tmp_path / "other") == b"a configured secret value"
    assert not (tmp_path / "other" / KEY_FILE).exists()


def test_empty_or_broken_key_file(tmp_path: Path) -> None:
    f = tmp_path / KEY_FILE
    f.write_text("")  # a crash before the first write: nothing was ever signed with it
    assert len(load_key(None, tmp_path)) == 32 and stat.S_IMODE(f.stat().st_mode) == 0o600
    f.write_text("not hex")
    with pytest.raises(ValueError, match="delete it"):
        load_key(None, tmp_path)
