"""A policy as the document a DPO signs: its header, then what happens to each field.

With a sample trace, the document also shows that trace before and after, and which rule
changed each field, using the engine itself for the "after" and the compiled tree for
the attribution (``fields.Tracer``), so the document says what the code does.
"""

from __future__ import annotations

import json
from typing import Any

from .actions import REGISTRY
from .actions.generalise import _num
from .engine import anonymise
from .fields import Decision, Loc, Tracer, decision_at, get, loc_text
from .keys import KeyRing
from .policy import LEGAL_BASES, Policy
from .render import Doc

UNMATCHED_TEXT = {
    "drop": "removed (allow-list: only what a rule names is kept)",
    "keep": "kept as is (not an allow-list: new fields pass through)",
    "reject": "the whole record is rejected (only what a rule names is allowed)",
}


def treatment(action: str, opts: Any) -> str:
    """What an action with its options does to a value, in a sentence fragment."""
    o = opts.model_dump() if hasattr(opts, "model_dump") else dict(opts or {})
    if action == "keep":
        return "kept as is"
    if action == "drop":
        return "removed"
    if action == "hash":
        how = f"keyed one-way pseudonym (HMAC-SHA-256, {o['encoding']}"
        if o.get("normalise"):
            how += ", after " + ", ".join(o["normalise"])
        return how + ")"
    if action == "encrypt":
        return "reversible token (AES-SIV, key id inside)"
    if action == "redact":
        return f"replaced by the constant {json.dumps(o['value'], ensure_ascii=False)}"
    if action == "generalise":
        if o["kind"] == "timestamp":
            return f"timestamp truncated to the {o['unit']}"
        if o["kind"] == "ip":
            return f"IP address cut to its network (IPv4 /{o['ipv4_prefix']}, " \
                   f"IPv6 /{o['ipv6_prefix']})"
        if o.get("bounds"):
            return "number replaced by its bucket (bounds " + \
                ", ".join(str(_num(b)) for b in o["bounds"]) + ")"
        start = f"{_num(o['origin'])} plus " if o["origin"] else ""
        return f"number rounded down to {start}a multiple of {_num(o['width'])}"
    a = REGISTRY.get(action)
    first = a.summary.split(". ")[0].split(" (")[0].rstrip(".") if a is not None else action
    defaults = {}
    if a is not None:
        defaults = {k: f.get_default(call_default_factory=True)
                    for k, f in a.options.model_fields.items() if not f.is_required()}
    extra = {k: v for k, v in o.items() if k not in defaults or defaults[k] != v}
    shown = f" (options: {json.dumps(extra, ensure_ascii=False, default=str)})" if extra else ""
    return f"`{action}`: {first}{shown}"


def properties(action: str, opts: Any = None) -> tuple[str, str, str]:
    """(reversible, linkable across records, linkable across domains) for an action."""
    if action == "scrub" and opts is not None and opts.keyed:
        return "no", "yes (through the pseudonyms it writes)", "no (keyed per domain)"
    if action == "reject":
        return "no (not written)", "no", "no"
    a = REGISTRY[action]
    if a.decode:
        inside = "as the rules below decide"
        return inside, inside, inside
    if a.structural == "drop":
        return "no (removed)", "no", "no"
    if a.structural == "keep":
        return "not transformed", "yes", "yes (value in clear)"
    reversible = "yes, by a key holder (`pseudonym reidentify`)" if a.reversible else "no"
    if action == "generalise":
        return reversible, "only through the coarse value", "only through the coarse value"
    across = "yes" if a.linkable else "no"
    domains = "no (keyed per domain)" if a.keyed else across
    return reversible, across, domains


def header_rows(policy: Policy) -> list[list[str]]:
    m = policy.model
    missing = "*not stated*"
    basis = f"{m.legal_basis} (GDPR {LEGAL_BASES[m.legal_basis]})" if m.legal_basis else missing
    return [
        ["Policy", f"`{m.name}` version {m.version}"],
        ["SHA-256", f"`{policy.sha256}`"],
        ["Controller", m.controller or missing],
        ["DPO contact", m.dpo_contact or missing],
        ["Purpose", m.purpose or missing],
        ["Legal basis", basis],
        ["Retention", m.retention or missing],
        ["Recipients", ", ".join(m.recipients) or missing],
        ["Pseudonymisation domain", f"`{m.domain}`"],
        ["Re-identification", m.reidentification or "not foreseen"],
        ["Fields no rule names", UNMATCHED_TEXT[m.unmatched]],
    ]


def rule_rows(policy: Policy) -> list[list[str]]:
    rows = []
    for i, (r, opts) in enumerate(zip(policy.rules, policy.options, strict=True), 1):
        where = f"`{r.path}`"
        if r.when:
            where += " when " + "; ".join(
                (f"{k[1:]} is none of " + ", ".join(json.dumps(v) for v in vs))
                if k.startswith("!") else (f"{k} is " + " or ".join(json.dumps(v) for v in vs))
                for k, vs in r.when.items())
        what = treatment(r.action, opts)
        rows.append([str(i), where, what, *properties(r.action, opts),
                     r.why or "*no reason given*"])
    um = policy.model.unmatched
    rows.append(["", "any other field", UNMATCHED_TEXT[um],
                 *properties("reject" if um == "reject" else um), "policy default (`unmatched`)"])
    return rows


def explain(policy: Policy, sample: dict[str, Any] | None = None,
            keys: KeyRing | None = None) -> Doc:
    m = policy.model
    doc = Doc(f"Policy {m.name}, version {m.version}")
    if m.description:
        doc.p(m.description.strip())
    doc.h2("Processing")
    doc.table(["", ""], header_rows(policy))
    doc.h2("Treatment of each field")
    doc.p("Where several rules match a field, the most specific decides (more named steps; "
          "on a tie, the first in the file). `keep` and `drop` on an object or array set the "
          "default for what is inside; other treatments replace the whole value. Linkable "
          "across domains means that the same value in two data sets made under different "
          "domains (or keys) can be joined.")
    doc.table(["Rule", "Field", "Treatment", "Reversible", "Linkable across records",
               "Linkable across domains", "Why"], rule_rows(policy))
    if sample is not None:
        _sample(doc, policy, sample, keys)
    return doc


def _sample(doc: Doc, policy: Policy, sample: dict[str, Any], keys: KeyRing | None) -> None:
    throwaway = keys is None
    ring = keys if keys is not None else KeyRing.generate()
    after = anonymise(sample, policy, keys=ring)
    decisions = Tracer(policy).decide(sample)
    doc.h2("Sample trace")
    note = ("Pseudonyms below were made with a throwaway key, so they match no real data "
            "set." if throwaway else "Pseudonyms below were made with the given key.")
    doc.p("One trace before and after the policy. " + note)
    doc.p("Before:")
    doc.code(json.dumps(sample, indent=2, ensure_ascii=False), "json")
    doc.p("After:")
    doc.code(json.dumps(after, indent=2, ensure_ascii=False), "json")
    rows, unchanged = [], 0
    for loc in _leaves(sample):
        d = decision_at(decisions, loc)
        new = _get_or_missing(after, loc)
        if new is not _MISSING and new == get(sample, loc):
            unchanged += 1
            continue
        rows.append([f"`{loc_text(loc)}`", _what(d, new), _by(policy, d)])
    doc.p(f"Changed fields ({len(rows)}; {unchanged} kept unchanged):")
    doc.table(["Field", "What happened", "Decided by"], rows)


_MISSING = object()


def _get_or_missing(rec: Any, loc: Loc) -> Any:
    try:
        return get(rec, loc)
    except (KeyError, IndexError, TypeError):
        return _MISSING


def _leaves(value: Any, loc: Loc = ()) -> list[Loc]:
    if type(value) is dict and value:
        return [x for k, v in value.items() for x in _leaves(v, (*loc, k))]
    if type(value) is list and value:
        return [x for i, v in enumerate(value) for x in _leaves(v, (*loc, i))]
    return [loc]


def _what(d: Decision | None, new: Any) -> str:
    if d is None:
        return "changed"
    if new is _MISSING:
        return "removed" if d.treatment in ("drop", "keep") else f"{d.treatment} (removed)"
    return d.treatment + (" (whole enclosing value)" if d.whole else "")


def _by(policy: Policy, d: Decision | None) -> str:
    if d is None or d.rule is None:
        return f"`unmatched: {policy.model.unmatched}`"
    r = policy.rules[d.rule - 1]
    return f"rule {d.rule} (`{r.action}` `{r.path}`)"
