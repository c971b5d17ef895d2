"""agent: an xAPI Agent or Group, replaced by a valid one whose only identifier is a
keyed account pseudonym.

Identity (what the pseudonym is computed from) is chosen so that one person gets one
pseudonym wherever they stand:

- ``account``: the account ``name`` alone, taken as ``hash`` takes a value, so an xAPI
  ``account.name`` holding an LMS username or user id gets the very pseudonym that
  ``learner_id`` gives that username or user id in Open edX logs (see ``linkage``);
- ``mbox`` and ``mbox_sha1sum``: the SHA-1 of the (stripped, lower-cased) ``mailto:`` IRI,
  so a mailbox and its published SHA-1 give one pseudonym;
- ``openid``: the URI.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import field_validator

from ..canonical import canonical_bytes
from .base import ActionError, BuildContext, action
from .keyed import HashOptions, keyed_encoding

_IFIS = ("mbox", "mbox_sha1sum", "openid", "account")
_KINDS = ("Agent", "Group")


class AgentOptions(HashOptions):
    home_page: str
    """The IRI put in every pseudonymous account's ``homePage``."""
    encoding: Literal["hex", "base32", "uuid", "integer"] = "base32"
    """As for ``hash`` (default base32, 26 characters: the same as ``learner_id``'s, so
    xAPI accounts and Open edX usernames link when domain and normalisation agree)."""

    @field_validator("home_page")
    @classmethod
    def _iri(cls, v: str) -> str:
        scheme, sep, rest = v.partition(":")
        if not sep or not scheme[:1].isalpha() or not rest or any(c.isspace() for c in v):
            raise ValueError("home_page must be an absolute IRI such as https://example.org")
        return v


def identity(agent: dict[str, Any], norm: Any = None) -> bytes | None:
    """The bytes one Agent's pseudonym is made from, or None when it has no identifier."""
    if type(agent) is not dict:
        return None
    account = agent.get("account")
    if type(account) is dict:
        name = account.get("name")
        if type(name) in (str, int) and str(name).strip():
            return canonical_bytes(name, norm)
    mbox = agent.get("mbox")
    if type(mbox) is str and mbox.strip():
        iri = mbox.strip().lower()
        if not iri.startswith("mailto:"):
            iri = "mailto:" + iri
        return b"mbox_sha1sum:" + hashlib.sha1(iri.encode("utf-8", "surrogatepass")).hexdigest(
        ).encode()
    sha = agent.get("mbox_sha1sum")
    if type(sha) is str and sha.strip():
        return b"mbox_sha1sum:" + sha.strip().lower().encode("utf-8", "surrogatepass")
    openid = agent.get("openid")
    if type(openid) is str and openid.strip():
        return b"openid:" + openid.strip().encode("utf-8", "surrogatepass")
    return None


def agent_identifiers(value: Any) -> list[str]:
    """Everything in an Agent or Group that names someone (for record-aware scrubbing)."""
    out: list[str] = []
    if type(value) is not dict:
        return out
    for key in ("mbox", "mbox_sha1sum", "openid", "name"):
        v = value.get(key)
        if type(v) is str and v.strip():
            out.append(v.strip())
    account = value.get("account")
    if type(account) is dict:
        name = account.get("name")
        if type(name) in (str, int) and str(name).strip():
            out.append(str(name).strip())
    members = value.get("member")
    if type(members) is list:
        for m in members:
            out.extend(agent_identifiers(m))
    return out


@action("agent", AgentOptions, keyed=True, linkable=True, identifies=agent_identifiers,
        summary="Replace an xAPI Agent or Group with a valid one: its identifier becomes "
                "account {homePage: home_page, name: keyed pseudonym}, its name goes, and "
                "a Group's members are treated alike. One person, one pseudonym: the same "
                "account, mailbox (mbox or mbox_sha1sum) or openid gives the same account "
                "wherever it stands. An Agent with no identifier rejects the record.")
def agent(options: AgentOptions, ctx: BuildContext):
    pseudonym, norm = keyed_encoding(options, ctx, "agent")
    home = options.home_page

    def account(ident: bytes) -> dict[str, Any]:
        return {"homePage": home, "name": str(pseudonym(ident))}

    def one(value: Any, depth: int) -> dict[str, Any]:
        if type(value) is not dict:
            raise ActionError("an agent must be a JSON object")
        kind = value.get("objectType")
        if kind is not None and kind not in _KINDS:
            raise ActionError("an agent's objectType must be Agent or Group")
        out: dict[str, Any] = {} if kind is None else {"objectType": kind}
        ident = identity(value, norm)
        members = value.get("member")
        if kind == "Group" and depth == 0 and members is not None:
            if type(members) is not list:
                raise ActionError("a group's member must be an array")
            treated = [one(m, 1) for m in members]
            if ident is not None:
                out["account"] = account(ident)
            if treated:
                out["member"] = treated
            if ident is None and not treated:
                raise ActionError("an anonymous group has no members")
            return out
        if ident is None:
            raise ActionError("an agent has no identifier (mbox, mbox_sha1sum, openid, "
                              "account)")
        out["account"] = account(ident)
        return out

    def run(value: Any) -> Any:
        if value is None:
            return None
        return one(value, 0)

    return run


__all__ = ["agent", "agent_identifiers", "identity"]
