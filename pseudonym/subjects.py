"""Data subject requests over pseudonymised data (GDPR Art. 15 access, Art. 17 erasure).

``lookup`` computes the pseudonyms a learner's identifier has under a policy, with every
key of the ring (data sets made before a rotation carry the old key's pseudonyms), so
that their records can be found. Each pseudonym comes from the very function ``anonymise``
runs for the rule, on the value the identifier stands for in that field, so the two
agree by construction. It needs the key and leaves an audit entry with the stated reason
and a keyed digest of the identifier, never the identifier in clear.

An ``agent`` rule replaces a whole xAPI Agent, so the identifier is read as the Agent it
stands for: always as an account name (any text can be one), and also as a mailbox when
it is an e-mail address or a ``mailto:`` IRI (then only as a mailbox), as a mailbox SHA-1
when it is 40 hex digits, as an OpenID when it is an http(s) URL. A JSON object is taken
as the Agent itself. A ``scrub`` rule with ``replace: pseudonym`` writes a keyed pseudonym
of each match into free text (``[EMAIL:<pseudonym>]``), other learners' records included:
the identifier's, whatever form the text holds it in (``as free text``), except for a
digest of it in a record that does not hold the identifier itself, which scrub cannot
trace back and pseudonymises as it is; with the ``hex_digest`` detector on, these come
too, one row per digest scrub recognises (``as free text, SHA-1 hex, with mailto:``).
Record-aware keyed actions (``date_shift``) give no pseudonym of an identifier: they, and
rules that cannot take the identifier, are listed as skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from . import __version__
from .actions import REGISTRY, ActionError, BuildContext
from .actions.scrub import match_pseudonym
from .audit import AuditLog, now
from .canonical import canonical_bytes
from .crypto import hmac_sha256
from .errors import PseudonymError
from .keys import KeyRing
from .policy import Policy
from .record import digest_forms, plain_identifier

DIGEST_PURPOSE = "pseudonym lookup digest v1"
"""The same derivation ``reidentify`` uses for its token digests."""

_EMAIL = re.compile(r"[^@\s:/]+@[^@\s/]+")
_SHA1 = re.compile(r"[0-9a-fA-F]{40}")
_OPENID = re.compile(r"https?://\S+", re.IGNORECASE)


def digest(keys: KeyRing, value: Any) -> str:
    """Keyed digest of a looked-up value: lets a key holder confirm later what was looked
    up, without the audit log revealing it to anyone else."""
    return hmac_sha256(keys.active.derive(DIGEST_PURPOSE), canonical_bytes(value)).hex()


def agent_forms(identifier: Any) -> list[tuple[str, Any]]:
    """The xAPI Agents an identifier may stand for, each with how it was read."""
    if type(identifier) is dict:
        return [("agent", identifier)]
    if type(identifier) is not str:
        return [("account.name", {"account": {"name": identifier}})]
    text = identifier.strip()
    if text.lower().startswith("mailto:"):
        return [("mbox", {"mbox": identifier})]
    forms: list[tuple[str, Any]] = []
    if _EMAIL.fullmatch(text):
        forms.append(("mbox", {"mbox": identifier}))
    elif _SHA1.fullmatch(text):
        forms.append(("mbox_sha1sum", {"mbox_sha1sum": identifier}))
    elif _OPENID.fullmatch(text):
        forms.append(("openid", {"openid": identifier}))
    return [*forms, ("account.name", {"account": {"name": identifier}})]


@dataclass
class LookupResult:
    """``rows``: one per keyed rule, key and way of reading the identifier (rule number,
    path, action, as, key id, active, pseudonym). ``skipped``: the keyed rules that gave
    none, with why (rule, path, action, why); never the identifier."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)


def _readings(action: str, options: Any, identifier: Any) -> list[tuple[str, Any]]:
    if action == "scrub":
        return [("free text", identifier), *_untraced_digests(options, identifier)]
    return agent_forms(identifier) if action == "agent" else [("value", identifier)]


def _untraced_digests(options: Any, identifier: Any) -> list[tuple[str, str]]:
    """The identifier's digests as scrub's ``hex_digest`` detector finds them in records
    that do not hold the identifier: none of their identifiers', they keep the pseudonym
    of their own text."""
    text = str(identifier) if type(identifier) is int else identifier
    if "hex_digest" not in options.detectors or type(text) is not str:
        return []
    return [(f"free text, {how}", hexdigest) for hexdigest, how in digest_forms(text).items()]


def _in_free_text(ctx: BuildContext):
    """The pseudonym a scrub rule writes for the identifier where free text holds it."""
    pseudonym = match_pseudonym(ctx)

    def run(value: Any) -> str:
        if type(value) is int:
            return pseudonym(str(value))
        if type(value) is not str:
            raise ActionError("scrub finds text and numbers in free text")
        return pseudonym(plain_identifier(value))

    return run


def _scrubs_to_pseudonyms(action: str, options: Any) -> bool:
    return action == "scrub" and options.keyed


def lookup(identifier: Any, policy: Policy, *, keys: KeyRing, reason: str,
           audit: AuditLog | None = None) -> LookupResult:
    """The pseudonyms ``identifier`` has under each keyed rule of ``policy`` and each key."""
    if not isinstance(reason, str) or not reason.strip():
        raise PseudonymError("a lookup needs a stated reason")
    if identifier is None or (type(identifier) is str and not identifier.strip()):
        raise PseudonymError("a lookup needs an identifier; the one given is empty, blank "
                             "or null")
    result = LookupResult()
    keyed = []
    for i, (r, o) in enumerate(zip(policy.rules, policy.options, strict=True), 1):
        act = REGISTRY[r.action]
        if _scrubs_to_pseudonyms(r.action, o):
            keyed.append((i, r, o))
            continue
        if not act.keyed:
            continue
        if act.record_aware:
            result.skipped.append({
                "rule": i, "path": r.path, "action": r.action,
                "why": "record-aware: its output depends on the rest of the record, so it "
                       "is no pseudonym of an identifier"})
        else:
            keyed.append((i, r, o))
    if not keyed:
        raise PseudonymError(f"policy {policy.name!r} has no keyed rule that gives a "
                             "pseudonym of an identifier (hash, encrypt, agent, learner_id, "
                             "scrub with replace: pseudonym; "
                             "date_shift is record-aware): its output holds no pseudonym to "
                             "look up")
    failed: dict[int, str] = {}
    for key in keys._keys:
        ctx = BuildContext(policy.domain, KeyRing([key]))
        for i, r, o in keyed:
            fn = (_in_free_text(ctx) if r.action == "scrub"
                  else REGISTRY[r.action].build(o, ctx))
            for read_as, value in _readings(r.action, o, identifier):
                try:
                    out = fn(value) if fn is not None else value
                except ActionError as e:
                    failed.setdefault(i, f"cannot take the identifier: {e}")
                    continue
                if r.action == "agent":
                    out = out.get("account", {}).get("name") if type(out) is dict else None
                    if out is None:
                        failed.setdefault(i, "the agent has no identifier of its own")
                        continue
                result.rows.append({"rule": i, "path": r.path, "action": r.action,
                                    "as": read_as, "key_id": key.key_id,
                                    "active": key is keys.active, "pseudonym": out})
    done = {row["rule"] for row in result.rows}
    result.skipped.extend({"rule": i, "path": r.path, "action": r.action, "why": failed[i]}
                          for i, r, _ in keyed if i in failed and i not in done)
    result.skipped.sort(key=lambda s: s["rule"])
    if audit is not None:
        audit.append({"entry": "lookup", "at": now(), "reason": reason.strip(),
                      "policy": policy.describe(), "key_ids": keys.key_ids,
                      "identifier_digest": digest(keys, identifier),
                      "pseudonyms": len(result.rows),
                      "skipped_rules": [s["rule"] for s in result.skipped],
                      "library": f"pseudonym {__version__}"})
    return result
