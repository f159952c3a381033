"""Envelope ciphers of the ``mapped`` uplink profile: the message body -> Base64 text.

=============== ============ ========================================================
``cipher``      key          output (Base64, standard alphabet, padded)
=============== ============ ========================================================
``none``        -            the body is sent as is (no Base64)
``aes-128-cbc`` 16 bytes     AES-CBC, PKCS#5/#7 padding, IV 16 bytes (``iv``)
``aes-256-cbc`` 32 bytes     AES-CBC, PKCS#5/#7 padding, IV 16 bytes (``iv``)
``sm4-cbc``     16 bytes     SM4 (GB/T 32907-2016, 国密) CBC, PKCS#5/#7 padding, IV 16 bytes
``aes-256-gcm`` 32 bytes     12-byte random nonce + ciphertext + 16-byte tag (the AEAD of
                             the ``tcp-aes`` profile, gateway/uplink/tcp_aes.py)
=============== ============ ========================================================

"PKCS5Padding" as Java names it is PKCS#7 padding to the 16-byte block. Keys and IVs are
given as text (their UTF-8 bytes: ``key_format: text``, the usual "16-character key" of the
platform documents), hex or Base64. ``iv: key`` uses the key as IV (what Jiangsu's
integrations do; a fixed IV means equal messages encrypt equally: that is the platform's
choice, not ours). Primitives are `cryptography`'s (OpenSSL); tests check AES-CBC against
NIST SP 800-38A F.2.1 and SM4 against the GB/T 32907 example.

Error messages never contain key material.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Final, Literal

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.uplink.tcp_aes import NONCE_BYTES

CipherName = Literal["none", "aes-128-cbc", "aes-256-cbc", "sm4-cbc", "aes-256-gcm"]
KeyFormat = Literal["text", "hex", "base64"]
KEY_BYTES: Final[dict[str, int]] = {"aes-128-cbc": 16, "aes-256-cbc": 32, "sm4-cbc": 16, "aes-256-gcm": 32}
CIPHERS: Final = ("none", *KEY_BYTES)
KEY_FORMATS: Final = ("text", "hex", "base64")
BLOCK = 16


class CipherError(ValueError):
    """Bad key/IV (configuration) or a body that does not decrypt (wrong key, corrupted)."""


def decode_secret(text: object, fmt: str, what: str, size: int) -> bytes:
    """The bytes of a key or IV written as ``fmt``; exactly ``size`` bytes. Errors name ``what``
    and the expected size, never the value."""
    if not isinstance(text, str):
        raise CipherError(f"{what} must be a string ({fmt}: {size} bytes)")
    s = text.strip() if fmt != "text" else text
    try:
        if fmt == "text":
            raw = s.encode("utf-8")
        elif fmt == "hex":
            raw = bytes.fromhex(s)
        elif fmt == "base64":
            raw = base64.b64decode(s, validate=True)
        else:
            raise CipherError(f"unknown key format {fmt!r}: use {', '.join(KEY_FORMATS)}")
    except (ValueError, binascii.Error):
        raise CipherError(f"{what} is not valid {fmt}") from None
    if len(raw) != size:
        hint = {"text": f"{size} characters", "hex": f"{2 * size} hex digits",
                "base64": f"Base64 of {size} bytes"}[fmt]
        raise CipherError(f"{what} must be {size} bytes ({hint}), got {len(raw)}")
    return raw


class BodyCipher:
    """Encrypts and decrypts message bodies. ``repr`` shows the algorithm only."""

    def __init__(self, name: str, key: bytes = b"", iv: bytes | None = None) -> None:
        if name not in CIPHERS:
            raise CipherError(f"unknown cipher {name!r}: use {', '.join(CIPHERS)}")
        self.name = name
        if name == "none":
            return
        if len(key) != KEY_BYTES[name]:
            raise CipherError(f"{name} needs a {KEY_BYTES[name]}-byte key")
        if name == "aes-256-gcm":
            self._aead = AESGCM(key)
            return
        if iv is None or len(iv) != BLOCK:
            raise CipherError(f"{name} needs a 16-byte IV")
        self._iv = iv
        self._algo = algorithms.SM4(key) if name == "sm4-cbc" else algorithms.AES(key)

    def __repr__(self) -> str:
        return f"<BodyCipher {self.name}>"

    @property
    def encrypts(self) -> bool:
        return self.name != "none"

    def encrypt(self, plain: bytes) -> str:
        """Base64 text of the encrypted ``plain``."""
        if self.name == "aes-256-gcm":
            nonce = os.urandom(NONCE_BYTES)
            return base64.b64encode(nonce + self._aead.encrypt(nonce, plain, None)).decode("ascii")
        padder = padding.PKCS7(BLOCK * 8).padder()
        data = padder.update(plain) + padder.finalize()
        enc = Cipher(self._algo, modes.CBC(self._iv)).encryptor()
        return base64.b64encode(enc.update(data) + enc.finalize()).decode("ascii")

    def decrypt(self, text: str) -> bytes:
        """The plain bytes of Base64 ``text``; CipherError when it does not decrypt (wrong key:
        CBC shows it as bad padding or, rarely, as garbage the caller's JSON parse rejects)."""
        try:
            raw = base64.b64decode(text, validate=True)
        except (ValueError, binascii.Error):
            raise CipherError("the body is not Base64") from None
        if self.name == "aes-256-gcm":
            from cryptography.exceptions import InvalidTag

            try:
                return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], None)
            except InvalidTag:
                raise CipherError("cannot decrypt: wrong key or corrupted body") from None
        if not raw or len(raw) % BLOCK:
            raise CipherError("the body is not a whole number of cipher blocks")
        dec = Cipher(self._algo, modes.CBC(self._iv)).decryptor()
        data = dec.update(raw) + dec.finalize()
        unpadder = padding.PKCS7(BLOCK * 8).unpadder()
        try:
            return unpadder.update(data) + unpadder.finalize()
        except ValueError:
            raise CipherError("cannot decrypt: wrong key or IV (bad padding)") from None


def make_cipher(name: str, key_text: str | None, key_format: str, iv_text: str | None, iv_format: str) -> BodyCipher:
    """The cipher from the option values: ``iv_text`` None with a CBC cipher means IV = key."""
    if name == "none":
        return BodyCipher("none")
    key = decode_secret(key_text, key_format, "the key", KEY_BYTES[name])
    iv: bytes | None = None
    if name != "aes-256-gcm":
        iv = key[:BLOCK] if iv_text is None else decode_secret(iv_text, iv_format, "the IV", BLOCK)
        if iv_text is None and len(key) != BLOCK:
            raise CipherError(f"iv: key needs a 16-byte key, {name} has {len(key)}")
    return BodyCipher(name, key, iv)
