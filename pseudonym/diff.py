"""What changed between two versions of a policy, field by field, for reviewing a change.

Three views: the header (purpose, domain, ...), the rules (matched by path and ``when``),
and the known identifier and free-text fields of the catalogue, whose treatment is
computed under each version, so that a change made elsewhere (a broader ``keep``, a new
``unmatched``) still shows on the field it affects.

A rule counts as changed when anything that shapes the output changes: its action, any
of its options (a shorter pseudonym, a prefix, a normalisation, even where the one-line
treatment does not mention them), or whether its values are identifying, which decides
whether ``scrub`` and ``url`` remove them from free text and URLs elsewhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .actions import REGISTRY
from .actions.keyed import _B32_DEFAULT, _HEX_DEFAULT
from .catalogue import PLACEHOLDER, Entry, entries, formats_of
from .engine import gatherer, identifying
from .explain import treatment
from .fields import Tracer, decision_at
from .paths import KEY
from .policy import Policy
from .render import Doc

_DEFAULT_LENGTH = {"hex": _HEX_DEFAULT, "base32": _B32_DEFAULT}
_SOUGHT = {True: "sought in free text and URLs", False: "not sought in free text and URLs"}

_HEADER = ["name", "version", "description", "controller", "dpo_contact", "purpose",
           "legal_basis", "retention", "recipients", "domain", "reidentification", "unmatched"]


def _key(rule) -> str:
    return rule.path + (" when " + json.dumps(rule.when, sort_keys=True) if rule.when else "")


@dataclass(frozen=True)
class _Rule:
    number: int
    action: str
    options: dict[str, Any]
    identifying: bool
    why: str

    def same(self, other: _Rule) -> bool:
        return self.treats_alike(other) and (self.identifying, self.why) == (
            other.identifying, other.why)

    def treats_alike(self, other: _Rule) -> bool:
        """Whether both give a field the same output, whatever their number or why
        (whether its values are sought elsewhere is shown apart)."""
        return (self.action, self.options) == (other.action, other.options)


def _numbered(p: Policy) -> list[_Rule]:
    return [_Rule(i, r.action, o.model_dump(), identifying(r), r.why or "")
            for i, (r, o) in enumerate(zip(p.rules, p.options, strict=True), 1)]


def _rules(p: Policy) -> dict[str, _Rule]:
    out: dict[str, _Rule] = {}
    for r, rule in zip(p.rules, _numbered(p), strict=True):
        out.setdefault(_key(r), rule)
    return out


def _option_words(action: str, name: str, opts: dict[str, Any]) -> str:
    """An option's value as the DPO reads it; ``treatment`` leaves some options out."""
    value = opts[name]
    if name == "length":
        if value is None:
            default = _DEFAULT_LENGTH.get(opts.get("encoding", ""))
            return f"{default} characters (the default)" if default else "default length"
        return f"{value} characters"
    if name == "prefix":
        return f"prefixed with {json.dumps(value, ensure_ascii=False)}" if value else "no prefix"
    if name == "bits":
        return f"{value}-bit integers"
    if name == "normalise":
        step = "encryption" if action == "encrypt" else "pseudonymisation"
        return (f"text normalised ({', '.join(value)}) before {step}" if value
                else f"text not normalised before {step}")
    return f"option {name} = {json.dumps(value, ensure_ascii=False, default=str)}"


def _hidden(action: str, opts: dict[str, Any]) -> set[str]:
    """Options set away from their default that ``treatment`` does not mention."""
    model = REGISTRY[action].options
    shown = treatment(action, opts)
    out = set()
    for k, f in model.model_fields.items():
        if f.is_required():
            continue
        default = f.get_default(call_default_factory=True)
        if opts.get(k) == default:
            continue
        swapped = {**opts, k: default}
        try:  # some options need another (generalise by number: bounds or width)
            model.model_validate(swapped)
        except ValueError:
            continue
        if treatment(action, swapped) == shown:
            out.add(k)
    return out


def _describe(r: _Rule, other: _Rule | None) -> str:
    """``r``'s treatment, with what sets it apart from ``other`` spelled out."""
    names = _hidden(r.action, r.options)
    if other is not None and other.action == r.action:
        names |= _hidden(r.action, other.options)
    words = [_option_words(r.action, k, r.options) for k in sorted(names)]
    nature = REGISTRY[r.action].identifies is not None
    if r.identifying != nature or (other is not None and other.identifying != r.identifying):
        words.append("identifying: scrub and url remove its values from free text and URLs "
                     "elsewhere in the record" if r.identifying else
                     "not identifying: scrub and url leave its values in clear in free text "
                     "and URLs elsewhere in the record")
    return "; ".join([treatment(r.action, r.options), *words])


def _fate(rules: list[_Rule], tracer: Tracer, e: Entry) -> tuple[str, _Rule | None]:
    """What happens to the field, and the rule that decides it (None: ``unmatched``)."""
    d = decision_at(tracer.decide(e.record()), e.loc)
    if d is None:
        return "?", None
    if not d.rule:
        return f"{d.treatment} (unmatched)", None
    return f"{d.treatment} (rule {d.rule})", rules[d.rule - 1]


def diff(old: Policy, new: Policy) -> tuple[Doc, bool]:
    """The review document, and whether anything changed."""
    doc = Doc(f"Changes from {old.name} {old.version} to {new.name} {new.version}")
    changed = old.sha256 != new.sha256
    doc.p(f"Old: `{old.source}`, sha256 `{old.sha256}`. New: `{new.source}`, sha256 "
          f"`{new.sha256}`.")
    if not changed:
        doc.p("The two policies are identical (same canonical form).")
        return doc, False
    om, nm = old.model, new.model
    rows = []
    for f in _HEADER:
        a, b = getattr(om, f), getattr(nm, f)
        if a != b:
            rows.append([f, _show(a), _show(b)])
    doc.h2("Header")
    if rows:
        doc.table(["Field", "Old", "New"], rows)
        if om.domain != nm.domain:
            doc.p("The domain changed: pseudonyms made under the new policy cannot be linked "
                  "to those made under the old one.")
    else:
        doc.p("No change.")

    doc.h2("Rules")
    a, b = _rules(old), _rules(new)
    rows = []
    for k in list(a) + [k for k in b if k not in a]:
        if k not in b:
            rows.append([f"`{k}`", f"rule {a[k].number}: {_describe(a[k], None)}",
                         "*rule removed*", ""])
        elif k not in a:
            rows.append([f"`{k}`", "*no rule*", f"rule {b[k].number}: {_describe(b[k], None)}",
                         b[k].why])
        elif not a[k].same(b[k]):
            why = b[k].why if a[k].why == b[k].why else f"{b[k].why} (was: {a[k].why})"
            rows.append([f"`{k}`", _describe(a[k], b[k]), _describe(b[k], a[k]), why])
    if rows:
        doc.table(["Path", "Old treatment", "New treatment", "Why (new)"], rows)
    else:
        doc.p("No rule changed its treatment (rules may have moved).")

    doc.h2("Known identifiers and free text")
    top = set()
    for p in (old, new):
        for r in p.rules:
            for alt in r.parsed_path.alternatives or ():
                if alt and alt[0].kind == KEY:
                    top.add(str(alt[0].value))
    to, tn = Tracer(old), Tracer(new)
    ro, rn = _numbered(old), _numbered(new)
    go, gn = gatherer(old), gatherer(new)
    rows = []
    shown: set[tuple[str, str, str]] = set()
    for e in entries(formats_of(top)):
        (fo, by_o), (fn, by_n) = _fate(ro, to, e), _fate(rn, tn, e)
        moved = fo.split(" ")[0] != fn.split(" ")[0]
        if not moved and by_o and by_n and not by_o.treats_alike(by_n):
            moved = True  # another rule of the same action, with other options
            fo, fn = f"{fo}: {_describe(by_o, by_n)}", f"{fn}: {_describe(by_n, by_o)}"
        if e.kind == "direct":
            so, sn = (PLACEHOLDER in g(e.record()) for g in (go, gn))
            if so != sn:
                moved = True
                fo, fn = f"{fo}, {_SOUGHT[so]}", f"{fn}, {_SOUGHT[sn]}"
        if moved and (e.path, fo, fn) not in shown:
            shown.add((e.path, fo, fn))
            rows.append([f"`{e.path}`", e.label, fo, fn])
    if rows:
        doc.table(["Field", "What it is", "Old", "New"], rows)
    else:
        doc.p("The treatment of every catalogued identifier and free-text field is the same.")
    return doc, True


def _show(v) -> str:
    if v is None or v == []:
        return "*not stated*"
    if isinstance(v, list):
        return ", ".join(map(str, v))
    return str(v)
