"""Master keys and key rings.

A master key is at least 256 random bits, written as text ``psk1.<key id>.<base64url>``
so that a truncated or mistyped key is caught (the key id doubles as a checksum). Keys
live apart from data and policies: in the ``PSEUDONYM_KEY`` environment variable or a
key file. Only key ids ever reach logs, errors and the audit log.
"""

from __future__ import annotations

import binascii
import os
import secrets
import stat
import warnings
from collections.abc import Iterable
from pathlib import Path

from .crypto import Cipher, Hasher, b64u, hkdf, key_id_of, split_token, unb64u
from .errors import KeyRingError

KEY_PREFIX = "psk1"
MIN_KEY_BYTES = 32
MAX_KEY_BYTES = 64
ENV_VAR = "PSEUDONYM_KEY"


class KeyFileWarning(UserWarning):
    """A key file can be read by users other than its owner."""


def _read_key_file(p: Path, what: str) -> str:
    """A key file's text, with a warning when users other than its owner can read it."""
    try:
        mode = p.stat().st_mode
        text = p.read_text("utf-8")
    except OSError as e:
        raise KeyRingError(f"{p}: cannot read {what} ({e.strerror})") from None
    except UnicodeDecodeError:
        raise KeyRingError(f"{p}: {what} is not UTF-8 text") from None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        warnings.warn(f"{p}: {what} can be read by other users; chmod 600 it",
                      KeyFileWarning, stacklevel=3)
    return text


class MasterKey:
    """One master key. Its secret never appears in ``repr``, ``str`` or errors."""

    __slots__ = ("_secret", "key_id")

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, bytes) or len(secret) < MIN_KEY_BYTES:
            raise KeyRingError(f"a master key needs at least {MIN_KEY_BYTES * 8} bits")
        if len(secret) > MAX_KEY_BYTES:
            raise KeyRingError(f"a master key has at most {MAX_KEY_BYTES * 8} bits")
        self._secret = secret
        self.key_id = key_id_of(secret)

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(secrets.token_bytes(MIN_KEY_BYTES))

    @classmethod
    def parse(cls, text: str, *, where: str = "key") -> MasterKey:
        """Read the text ``keygen`` printed; refuse anything else without echoing it."""
        parts = text.strip().split(".")
        if len(parts) != 3 or parts[0] != KEY_PREFIX:
            raise KeyRingError(f"{where}: not a pseudonym master key (expected the text "
                               f"'pseudonym keygen' prints, starting {KEY_PREFIX}.)")
        try:
            secret = unb64u(parts[2])
        except (binascii.Error, ValueError):
            raise KeyRingError(f"{where}: the key's body is not base64url") from None
        if len(secret) < MIN_KEY_BYTES:
            raise KeyRingError(f"{where}: the key is too short "
                               f"({len(secret) * 8} bits; at least {MIN_KEY_BYTES * 8} needed)")
        if len(secret) > MAX_KEY_BYTES:
            raise KeyRingError(f"{where}: the key is too long "
                               f"({len(secret) * 8} bits; at most {MAX_KEY_BYTES * 8})")
        key = cls(secret)
        if key.key_id != parts[1]:
            raise KeyRingError(f"{where}: the key is damaged (its key id does not match its body)")
        return key

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, what: str = "key file") -> MasterKey:
        """One key from a file (the audit key's), warning like ``KeyRing.from_file`` when
        others can read it: whoever reads the audit key can forge the log's HMACs."""
        p = Path(path)
        return cls.parse(_read_key_file(p, what), where=str(p))

    @property
    def text(self) -> str:
        """The key as text, for storing it as a secret. Handle with care."""
        return f"{KEY_PREFIX}.{self.key_id}.{b64u(self._secret)}"

    def derive(self, purpose: str, length: int = 32) -> bytes:
        return hkdf(self._secret, purpose.encode(), length)

    def __repr__(self) -> str:
        return f"MasterKey(key_id={self.key_id!r})"

    __str__ = __repr__


class KeyRing:
    """An active master key, which makes new pseudonyms, and older ones kept for decryption.

    Hashed pseudonyms always come from the active key: rotating it gives every learner a
    new pseudonym. Encryption tokens name their key, so old tokens still decrypt as long as
    their key stays in the ring.
    """

    def __init__(self, keys: Iterable[MasterKey]) -> None:
        self._keys = list(keys)
        if not self._keys:
            raise KeyRingError("a key ring needs at least one key")
        self._by_id = {k.key_id: k for k in self._keys}
        self._hashers: dict[str, Hasher] = {}
        self._ciphers: dict[tuple[str, str], Cipher] = {}

    @property
    def active(self) -> MasterKey:
        return self._keys[0]

    @property
    def key_ids(self) -> list[str]:
        return [k.key_id for k in self._keys]

    @classmethod
    def generate(cls) -> KeyRing:
        return cls([MasterKey.generate()])

    @classmethod
    def parse(cls, text: str, *, where: str = "key") -> KeyRing:
        """Keys separated by newlines or commas, the active one first; ``#`` starts a comment."""
        items = []
        for n, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0]
            for part in line.split(","):
                if part.strip():
                    items.append(MasterKey.parse(part, where=f"{where}, line {n}"))
        if not items:
            raise KeyRingError(f"{where}: no key found")
        return cls(items)

    @classmethod
    def from_env(cls, var: str = ENV_VAR) -> KeyRing:
        text = os.environ.get(var)
        if not text or not text.strip():
            raise KeyRingError(f"no key: set {var} to the text 'pseudonym keygen' prints, "
                               "or give a key file")
        return cls.parse(text, where=f"${var}")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> KeyRing:
        p = Path(path)
        return cls.parse(_read_key_file(p, "key file"), where=str(p))

    def hasher(self, domain: str) -> Hasher:
        h = self._hashers.get(domain)
        if h is None:
            h = self._hashers[domain] = Hasher(self.active._secret, self.active.key_id, domain)
        return h

    def cipher(self, domain: str, key_id: str | None = None) -> Cipher:
        kid = key_id or self.active.key_id
        c = self._ciphers.get((kid, domain))
        if c is None:
            key = self._by_id.get(kid)
            if key is None:
                raise KeyRingError(f"key {kid} is not in the key ring")
            c = self._ciphers[(kid, domain)] = Cipher(key._secret, kid, domain)
        return c

    def decrypt(self, token: str, domain: str) -> bytes:
        """Open an encryption token with whichever key in the ring made it."""
        try:
            _, kid, _ = split_token(token)
        except ValueError as e:
            raise KeyRingError(str(e)) from None
        try:
            return self.cipher(domain, kid).open(token)
        except ValueError as e:
            raise KeyRingError(str(e)) from None

    def __repr__(self) -> str:
        return f"KeyRing(active={self.active.key_id!r}, keys={self.key_ids!r})"
