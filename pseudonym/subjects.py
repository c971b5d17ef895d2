"""Data subject requests over pseudonymised data (GDPR Art. 15 access, Art. 17 erasure).

``lookup`` computes the pseudonyms a learner's identifier has under a policy, with every
key of the ring (data sets made before a rotation carry the old key's pseudonyms), so
that their records can be found. It needs the key and leaves an audit entry with the
stated reason and a keyed digest of the identifier, never the identifier in clear.
"""

from __future__ import annotations

from typing import Any

from . import __version__
from .actions import REGISTRY, ActionError, BuildContext
from .audit import AuditLog, now
from .canonical import canonical_bytes
from .crypto import hmac_sha256
from .errors import PseudonymError
from .keys import KeyRing
from .policy import Policy

DIGEST_PURPOSE = "pseudonym lookup digest v1"
"""The same derivation ``reidentify`` uses for its token digests."""


def digest(keys: KeyRing, value: Any) -> str:
    """Keyed digest of a looked-up value: lets a key holder confirm later what was looked
    up, without the audit log revealing it to anyone else."""
    return hmac_sha256(keys.active.derive(DIGEST_PURPOSE), canonical_bytes(value)).hex()


def lookup(identifier: Any, policy: Policy, *, keys: KeyRing, reason: str,
           audit: AuditLog | None = None) -> list[dict[str, Any]]:
    """One row per keyed rule and key: rule number, path, action, key id, pseudonym."""
    if not isinstance(reason, str) or not reason.strip():
        raise PseudonymError("a lookup needs a stated reason")
    keyed = [(i, r, o) for i, (r, o) in enumerate(zip(policy.rules, policy.options,
                                                        strict=True), 1)
             if REGISTRY[r.action].keyed]
    if not keyed:
        raise PseudonymError(f"policy {policy.name!r} has no keyed (hash or encrypt) rule: "
                             "its output holds no pseudonym to look up")
    rows: list[dict[str, Any]] = []
    for key in keys._keys:
        ring = KeyRing([key])
        ctx = BuildContext(policy.domain, ring)
        for i, r, o in keyed:
            fn = REGISTRY[r.action].build(o, ctx)
            try:
                value = fn(identifier) if fn is not None else identifier
            except ActionError:
                continue
            rows.append({"rule": i, "path": r.path, "action": r.action,
                         "key_id": key.key_id, "active": key is keys.active,
                         "pseudonym": value})
    if audit is not None:
        audit.append({"entry": "lookup", "at": now(), "reason": reason.strip(),
                      "policy": policy.describe(), "key_ids": keys.key_ids,
                      "identifier_digest": digest(keys, identifier),
                      "pseudonyms": len(rows), "library": f"pseudonym {__version__}"})
    return rows
