"""learner_id and ipv4_prefix: pseudonyms that keep the format downstream tools check.

Open edX consumers (Ralph's edX models among them) expect a username of 2 to 30
characters, an integer ``user_id`` and an IPv4 address or "". ``learner_id`` keeps the
value's type and length bounds; ``ipv4_prefix`` keeps an IPv4 network prefix.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

from pydantic import Field

from ..canonical import canonical_bytes
from .base import FULL_PREFIX, ActionError, BuildContext, Options, action, scalar_identifiers
from .keyed import HashOptions, keyed_encoding


class LearnerOptions(HashOptions):
    encoding: Literal["hex", "base32", "uuid", "integer"] = "base32"
    """base32 (default, 26 characters: a valid edX username) or integer for user ids;
    a string in gets a string out (``"42"`` -> ``"7309..."``)."""


@action("learner_id", LearnerOptions, keyed=True, linkable=True,
        identifies=scalar_identifiers,
        summary="Replace a username or user id with a keyed pseudonym of the same type "
                "(an integer stays an integer, text stays text of 2 to 30 characters with "
                "the default encoding). Empty text and null are kept as they are. With the "
                "same domain, normalisation and encoding, the pseudonym equals the one "
                "`agent` gives an xAPI account holding the same identifier.")
def learner_id(options: LearnerOptions, ctx: BuildContext):
    pseudonym, norm = keyed_encoding(options, ctx, "learner_id")

    def run(value: Any) -> Any:
        t = type(value)
        if value is None or value == "":
            return value
        if t is not str and t is not int:
            raise ActionError("a learner id must be text or an integer")
        out = pseudonym(canonical_bytes(value, norm))
        return str(out) if t is str else out

    return run


class IPv4Options(Options):
    prefix: int = Field(24, ge=0, le=32)
    """Bits kept of an IPv4 address."""

    @property
    def unchanged(self) -> str | None:
        return FULL_PREFIX if self.prefix == 32 else None


@action("ipv4_prefix", IPv4Options, linkable=True,
        summary="Replace an IPv4 address with its network address at `prefix` bits "
                "(default /24). Anything else (IPv6, a name, text) becomes \"\", the value "
                "Open edX uses for an unknown address; null stays null.")
def ipv4_prefix(options: IPv4Options, ctx: BuildContext):
    bits = options.prefix

    def run(value: Any) -> Any:
        if value is None:
            return None
        if type(value) is not str:
            return ""
        try:
            ip = ipaddress.IPv4Address(value.strip())
        except ValueError:
            return ""
        return str(ipaddress.IPv4Network(f"{ip}/{bits}", strict=False).network_address)

    return run
