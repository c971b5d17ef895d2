"""hash and encrypt: pseudonyms made with the key ring, consistent within a domain."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field, model_validator

from ..canonical import Normaliser, canonical_bytes, normalised, normaliser
from .base import ActionError, BuildContext, Options, action

_HEX_DEFAULT, _B32_DEFAULT = 32, 26
MEMO_ENTRIES, MEMO_VALUE_BYTES = 1 << 14, 256
"""Pseudonyms each keyed encoding remembers, of values up to this size. A learner's
statements come in runs (a video session is dozens of them), so most identifiers were
seen moments ago; the memo is bounded (at most 4 MB of values), starts afresh when full,
and leaves long values (free text) alone: they rarely repeat, and raw text should not
outlive its record."""


class HashOptions(Options):
    encoding: Literal["hex", "base32", "uuid", "integer"] = "hex"
    """hex and base32 are lower-case; uuid is UUID-shaped (version 8); integer is positive."""
    length: int | None = Field(None, ge=16, le=64)
    """Characters kept for hex (16-64, default 32) and base32 (16-52, default 26)."""
    bits: int = Field(53, ge=32, le=63)
    """For integer: size of the integer (53 keeps it exact in JavaScript)."""
    normalise: tuple[Normaliser, ...] = ()
    """String normalisation before hashing, in order: strip, lower, nfc, nfkc (for hash,
    every string in the value, however deep; for agent, the account name)."""
    prefix: str = ""
    """Text put before a hex or base32 pseudonym."""

    @model_validator(mode="after")
    def _check(self) -> HashOptions:
        if self.length is not None and self.encoding not in ("hex", "base32"):
            raise ValueError("length applies to the hex and base32 encodings only")
        if self.encoding == "base32" and self.length is not None and self.length > 52:
            raise ValueError("base32 pseudonyms have at most 52 characters")
        if self.prefix and self.encoding not in ("hex", "base32"):
            raise ValueError("prefix applies to the hex and base32 encodings only")
        return self


def encoder(options: HashOptions):
    """The function from a 32-byte digest to the pseudonym in the chosen encoding."""
    enc = options.encoding
    if enc == "hex":
        n, prefix = options.length or _HEX_DEFAULT, options.prefix
        return lambda d: prefix + d.hex()[:n]
    if enc == "base32":
        n, prefix = options.length or _B32_DEFAULT, options.prefix
        # Base32 maps each 5 bytes to 8 characters on their own: encoding only the bytes
        # the kept characters come from gives the same text, several times faster.
        used = -(-n * 5 // 40) * 5
        return lambda d: prefix + base64.b32encode(d[:used]).decode("ascii")[:n].lower()
    if enc == "uuid":
        def as_uuid(d: bytes) -> str:
            h = d[:16].hex()
            variant = "89ab"[int(h[16], 16) & 3]
            return f"{h[:8]}-{h[8:12]}-8{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"
        return as_uuid
    shift, span = 64 - options.bits, (1 << options.bits) - 1
    return lambda d: (int.from_bytes(d[:8], "big") >> shift) % span + 1


def keyed_encoding(options: HashOptions, ctx: BuildContext, action: str
                   ) -> tuple[Callable[[bytes], Any], Callable[[str], str] | None]:
    """Bytes to pseudonym in the options' encoding, and the options' normaliser: one
    definition for every action whose pseudonyms must link (hash, learner_id, agent)."""
    digest = ctx.hasher(action).digest
    encode = encoder(options)
    memo: dict[bytes, Any] = {}

    def pseudonym(data: bytes) -> Any:
        if len(data) > MEMO_VALUE_BYTES:
            return encode(digest(data))
        out = memo.get(data)
        if out is None:
            if len(memo) >= MEMO_ENTRIES:
                memo.clear()
            out = memo[data] = encode(digest(data))
        return out

    return pseudonym, normaliser(options.normalise)


@action("hash", HashOptions, keyed=True, linkable=True,
        summary="Replace the value with a keyed, one-way pseudonym: HMAC-SHA-256 under a "
                "key derived from the master key and the policy's domain. Equal values "
                "get equal pseudonyms within a domain; null stays null.")
def hash_(options: HashOptions, ctx: BuildContext):
    pseudonym, norm = keyed_encoding(options, ctx, "hash")

    def run(value: Any) -> Any:
        if value is None:
            return None
        try:
            return pseudonym(canonical_bytes(value, norm))
        except ValueError:
            raise ActionError("value has no canonical form (non-finite number)") from None

    return run


class EncryptOptions(Options):
    normalise: tuple[Normaliser, ...] = ()
    """String normalisation before encryption, as for hash; decryption gives the
    normalised value."""


def _plaintext(value: Any, norm) -> bytes:
    if norm is not None:
        value = normalised(value, norm)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8", "surrogatepass")


@action("encrypt", EncryptOptions, keyed=True, reversible=True, linkable=True,
        summary="Replace the value with a deterministic, reversible token (AES-SIV, the "
                "domain bound as associated data, the key id inside the token). Only a "
                "holder of the key can reverse it, with `pseudonym reidentify`.")
def encrypt(options: EncryptOptions, ctx: BuildContext):
    seal = ctx.cipher("encrypt").seal
    norm = normaliser(options.normalise)

    def run(value: Any) -> Any:
        if value is None:
            return None
        try:
            return seal(_plaintext(value, norm))
        except ValueError:
            raise ActionError("value has no JSON form (non-finite number)") from None

    return run
