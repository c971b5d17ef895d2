"""The canonical form of a JSON value, the bytes that keyed actions work on.

Scalars are taken by their text: a string by its (optionally normalised) UTF-8, a
number by its JSON text (``42``, ``4.5``), ``true``/``false``/``null`` likewise. So the
string ``"42"`` and the integer ``42`` share one pseudonym, which is what linking an
integer edX ``user_id`` to a string xAPI ``account.name`` needs. Objects and arrays are
taken by their canonical JSON (keys sorted, no spaces, UTF-8).
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Callable
from typing import Any, Literal

Normaliser = Literal["strip", "lower", "nfc", "nfkc"]

_STEPS: dict[str, Callable[[str], str]] = {
    "strip": str.strip,
    "lower": str.lower,
    "nfc": lambda s: unicodedata.normalize("NFC", s),
    "nfkc": lambda s: unicodedata.normalize("NFKC", s),
}


def normaliser(steps: list[str] | tuple[str, ...]) -> Callable[[str], str] | None:
    """Compose string normalisation steps, in order; None when there are none."""
    fns = [_STEPS[s] for s in steps]
    if not fns:
        return None

    def run(s: str) -> str:
        for f in fns:
            s = f(s)
        return s

    return run


def dumps(value: Any) -> str:
    """Canonical JSON text: sorted keys, compact, non-finite numbers refused."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def canonical_bytes(value: Any, norm: Callable[[str], str] | None = None) -> bytes:
    """Bytes that stand for a JSON value in keyed hashing (see module docstring)."""
    t = type(value)
    if t is str:
        return (norm(value) if norm else value).encode("utf-8", "surrogatepass")
    if t is bool or value is None:
        return b"true" if value is True else b"false" if value is False else b"null"
    if t is int:
        return str(value).encode()
    if t is float:
        if not math.isfinite(value):
            raise ValueError("non-finite number")
        return repr(value).encode()
    if norm and t in (dict, list):
        value = normalised(value, norm)
    return dumps(value).encode("utf-8", "surrogatepass")


def normalised(value: Any, norm: Callable[[str], str]) -> Any:
    """``value`` with every string in it normalised, however deep (keys stay as they are):
    what a keyed action treats, so that equal values after normalisation link."""
    if isinstance(value, str):
        return norm(value)
    if isinstance(value, dict):
        return {k: normalised(v, norm) for k, v in value.items()}
    if isinstance(value, list):
        return [normalised(v, norm) for v in value]
    return value
