"""What changed between two versions of a policy, field by field, for reviewing a change.

Three views: the header (purpose, domain, ...), the rules (matched by path and ``when``),
and the known identifier and free-text fields of the catalogue, whose treatment is
computed under each version, so that a change made elsewhere (a broader ``keep``, a new
``unmatched``) still shows on the field it affects.
"""

from __future__ import annotations

import json

from .catalogue import entries, formats_of
from .explain import treatment
from .fields import Tracer, decision_at
from .paths import KEY
from .policy import Policy
from .render import Doc

_HEADER = ["name", "version", "description", "controller", "dpo_contact", "purpose",
           "legal_basis", "retention", "recipients", "domain", "reidentification", "unmatched"]


def _key(rule) -> str:
    return rule.path + (" when " + json.dumps(rule.when, sort_keys=True) if rule.when else "")


def _rules(p: Policy) -> dict[str, tuple[int, str, str]]:
    out: dict[str, tuple[int, str, str]] = {}
    for i, (r, o) in enumerate(zip(p.rules, p.options, strict=True), 1):
        out.setdefault(_key(r), (i, treatment(r.action, o), r.why or ""))
    return out


def _fate(p: Policy, tracer: Tracer, e) -> str:
    d = decision_at(tracer.decide(e.record()), e.loc)
    if d is None:
        return "?"
    by = f"rule {d.rule}" if d.rule else "unmatched"
    return f"{d.treatment} ({by})"


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
            rows.append([f"`{k}`", f"rule {a[k][0]}: {a[k][1]}", "*rule removed*", ""])
        elif k not in a:
            rows.append([f"`{k}`", "*no rule*", f"rule {b[k][0]}: {b[k][1]}", b[k][2]])
        elif a[k][1:] != b[k][1:]:
            why = b[k][2] if a[k][2] == b[k][2] else f"{b[k][2]} (was: {a[k][2]})"
            rows.append([f"`{k}`", a[k][1], b[k][1], why])
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
    rows = []
    shown: set[tuple[str, str, str]] = set()
    for e in entries(formats_of(top)):
        fo, fn = _fate(old, to, e), _fate(new, tn, e)
        if fo.split(" ")[0] != fn.split(" ")[0] and (e.path, fo, fn) not in shown:
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
