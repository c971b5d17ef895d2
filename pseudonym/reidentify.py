"""Reversing ``encrypt`` tokens: the one way back from a pseudonym to a value."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from . import __version__
from .audit import now
from .crypto import hmac_sha256, split_token
from .errors import KeyRingError, PseudonymError

if TYPE_CHECKING:
    from .audit import AuditLog
    from .keys import KeyRing
    from .policy import Policy


def reidentify(token: str, policy: Policy, *, keys: KeyRing, reason: str,
               audit: AuditLog | None = None) -> Any:
    """The value an ``encrypt`` token stands for, under the policy's domain.

    A stated ``reason`` is required; with ``audit``, an entry records the reason, the key
    id and a keyed digest of the token (never the token or the value in clear).
    """
    if not isinstance(reason, str) or not reason.strip():
        raise PseudonymError("re-identification needs a stated reason")
    if not any(r.action == "encrypt" for r in policy.rules):
        raise PseudonymError(f"policy {policy.name!r} has no reversible (encrypt) rule")
    outcome = "failed"
    try:
        try:
            value = json.loads(keys.decrypt(token, policy.domain))
        except ValueError:  # a token made by this library always holds JSON
            raise KeyRingError("the token does not hold a value this library wrote") from None
        outcome = "ok"
    finally:
        if audit is not None:
            digest = hmac_sha256(keys.active.derive("pseudonym lookup digest v1"),
                                 token.encode("utf-8", "surrogatepass") if isinstance(token, str)
                                 else b"").hex()
            audit.append({"entry": "reidentify", "at": now(), "reason": reason.strip(),
                          "policy": policy.describe(), "key_id": _token_key_id(token, keys),
                          "digest_key_id": keys.active.key_id,
                          "token_digest": digest, "outcome": outcome,
                          "library": f"pseudonym {__version__}"})
    return value


def _token_key_id(token: Any, keys: KeyRing) -> str | None:
    """The id of the key that made the token (and so opened it), if the ring holds it:
    whoever scopes a key's compromise reads the audit log for it."""
    try:
        _, kid, _ = split_token(token)
    except (ValueError, TypeError, AttributeError):
        return None
    return kid if kid in keys.key_ids else None
