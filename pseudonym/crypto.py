"""Recipes over hazardous primitives: callers pick a purpose, never a mode, IV or salt.

Every working key is derived with HKDF-SHA-256 from a master key, a fixed salt naming
this library's version of the scheme, and an ``info`` naming the purpose and the
pseudonymisation domain. Keys from different domains or purposes are independent, so
pseudonyms from two domains cannot be linked without the master key.
"""

from __future__ import annotations

import base64
import hmac
from hashlib import sha256

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SCHEME_SALT = b"pseudonym/v1"
TOKEN_PREFIX = "pse1"


def hkdf(secret: bytes, info: bytes, length: int = 32, salt: bytes = SCHEME_SALT) -> bytes:
    """HKDF-SHA-256 (RFC 5869)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(secret)


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA-256 (RFC 2104, test vectors in RFC 4231)."""
    return hmac.digest(key, message, "sha256")


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _info(purpose: str, domain: str) -> bytes:
    return purpose.encode() + b"\x00" + domain.encode("utf-8")


def hash_key(master: bytes, domain: str) -> bytes:
    """The HMAC key ``Hasher`` uses for a domain (32 bytes)."""
    return hkdf(master, _info("hash", domain))


def siv_key(master: bytes, domain: str) -> bytes:
    """The AES-SIV key ``Cipher`` uses for a domain (64 bytes: AES-256-SIV)."""
    return hkdf(master, _info("siv", domain), length=64)


class SIV:
    """AES-SIV (RFC 5297) under a raw key: the primitive ``Cipher`` seals with.

    Public so that known-answer tests run the very code path tokens are made by.
    """

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        self._aead = AESSIV(key)

    def encrypt(self, plaintext: bytes, associated_data: list[bytes]) -> bytes:
        """The synthetic IV followed by the ciphertext (RFC 5297 output ``V || C``)."""
        return self._aead.encrypt(plaintext, associated_data)

    def decrypt(self, data: bytes, associated_data: list[bytes]) -> bytes:
        return self._aead.decrypt(data, associated_data)


class Hasher:
    """Keyed one-way pseudonyms for one domain: HMAC-SHA-256 under an HKDF-derived key."""

    __slots__ = ("_key", "domain", "key_id")

    def __init__(self, master: bytes, key_id: str, domain: str) -> None:
        self._key = hash_key(master, domain)
        self.key_id = key_id
        self.domain = domain

    def digest(self, message: bytes) -> bytes:
        return hmac_sha256(self._key, message)

    def __repr__(self) -> str:
        return f"Hasher(key_id={self.key_id!r}, domain={self.domain!r})"


class Cipher:
    """Deterministic, reversible pseudonyms for one domain: AES-SIV (RFC 5297).

    The domain is bound as associated data, so a token only opens in its own domain.
    Tokens read ``pse1.<key id>.<base64url>``: the key id lets a key ring holding
    rotated keys find the one that made the token.
    """

    __slots__ = ("_ad", "_siv", "domain", "key_id")

    def __init__(self, master: bytes, key_id: str, domain: str) -> None:
        self._siv = SIV(siv_key(master, domain))
        self.key_id = key_id
        self.domain = domain
        self._ad = [domain.encode("utf-8")]

    def seal(self, plaintext: bytes) -> str:
        return f"{TOKEN_PREFIX}.{self.key_id}.{b64u(self._siv.encrypt(plaintext, self._ad))}"

    def open(self, token: str) -> bytes:
        _, kid, body = split_token(token)
        if kid != self.key_id:
            raise ValueError("token was made with another key")
        try:
            return self._siv.decrypt(unb64u(body), self._ad)
        except (InvalidTag, ValueError):
            raise ValueError("token does not open with this key and domain") from None

    def __repr__(self) -> str:
        return f"Cipher(key_id={self.key_id!r}, domain={self.domain!r})"


def split_token(token: str) -> tuple[str, str, str]:
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1] or not parts[2]:
        raise ValueError("not a pseudonym encryption token")
    return parts[0], parts[1], parts[2]


def key_id_of(secret: bytes) -> str:
    """A public name for a master key: 12 hex digits of a hash no one can invert."""
    return sha256(b"pseudonym key id v1\x00" + secret).hexdigest()[:12]
