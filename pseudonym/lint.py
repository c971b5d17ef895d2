"""Lint findings for a valid policy: what a DPO reviewer would object to, with the text
each objection rests on (GDPR article or EDPB Guidelines 01/2025 on pseudonymisation).

Errors are treatments that expose data the policy should protect (an identifier kept in
clear, here or, through ``identifying: false`` or no identifying rule reaching it, in the
free text and URLs that mention it, a reversible pseudonym nobody declared a need for);
warnings are gaps in what the policy documents or rules that do not do what they seem to.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from .actions import REGISTRY
from .catalogue import PLACEHOLDER, entries, formats_of
from .engine import gatherer
from .fields import Loc, Tracer, decision_at, overlaps, reachable
from .jsonplaces import compose
from .paths import ANY, INDEX, KEY
from .policy import Policy

Severity = Literal["error", "warning"]
EDPB = "EDPB Guidelines 01/2025 on pseudonymisation"

# code -> (severity, basis)
CODES: dict[str, tuple[Severity, str]] = {
    "invalid": ("error", "the policy cannot be loaded, so it cannot be applied"),
    "missing-controller": ("warning", "GDPR Art. 30(1)(a)"),
    "missing-dpo-contact": ("warning", "GDPR Art. 30(1)(a), Art. 37(7)"),
    "missing-purpose": ("warning", "GDPR Art. 30(1)(b), Art. 5(1)(b)"),
    "missing-legal-basis": ("warning", "GDPR Art. 6(1), Art. 5(2)"),
    "missing-retention": ("warning", "GDPR Art. 30(1)(f), Art. 5(1)(e)"),
    "missing-recipients": ("warning", "GDPR Art. 30(1)(d)"),
    "unmatched-keep": ("warning", "GDPR Art. 25(2) (data protection by default)"),
    "identifier-kept": ("error", f"GDPR Art. 4(5), Art. 25(1); {EDPB}"),
    "identifying-false": ("error", f"GDPR Art. 4(5), Art. 25(1); {EDPB}"),
    "identifier-not-identifying": ("error", f"GDPR Art. 4(5), Art. 25(1); {EDPB}"),
    "free-text-kept": ("warning", "GDPR Art. 5(1)(c) (data minimisation)"),
    "encrypt-without-reidentification": ("error", f"GDPR Art. 5(1)(c), Art. 25(2); {EDPB}"),
    "hash-with-reidentification": ("warning", f"GDPR Art. 25(1); {EDPB}"),
    "rule-without-why": ("warning", "GDPR Art. 5(2) (accountability)"),
    "overlapping-rules": ("warning", "GDPR Art. 5(2), Art. 25(1)"),
    "unreachable-rule": ("warning", "GDPR Art. 5(2), Art. 25(1)"),
}

REMOVERS = ("scrub", "url")
"""The actions that remove the record's identifiers from the values they treat
(``date_shift`` is record-aware too, but only reads whose record it is)."""

_HEADER = [
    ("controller", "missing-controller", "no controller: say who the controller is"),
    ("dpo_contact", "missing-dpo-contact", "no dpo_contact: give a way to reach the DPO"),
    ("purpose", "missing-purpose", "no purpose: state the purpose of the processing"),
    ("legal_basis", "missing-legal-basis", "no legal_basis: name the Art. 6(1) basis"),
    ("retention", "missing-retention", "no retention: give the time limit for erasure"),
    ("recipients", "missing-recipients", "no recipients: list who receives the output"),
]


@dataclass(frozen=True)
class Finding:
    code: str
    message: str
    rule: int | None = None
    line: int | None = None
    path: str | None = None

    @property
    def severity(self) -> Severity:
        return CODES[self.code][0]

    @property
    def basis(self) -> str:
        return CODES[self.code][1]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "severity": self.severity, "basis": self.basis}

    def text(self, source: str) -> str:
        where = source + (f":{self.line}" if self.line else "")
        if self.rule is not None:
            where += f": rule {self.rule}"
        return f"{where}: {self.severity} [{self.code}]: {self.message} ({self.basis})"


def lint(policy: Policy) -> list[Finding]:
    """Every finding for ``policy``, errors first, then in rule order."""
    lines = _lines(policy)
    m = policy.model
    out: list[Finding] = []

    def add(code: str, message: str, rule: int | None = None, key: str | None = None,
            path: str | None = None) -> None:
        line = lines.get(rule) if rule is not None else lines.get(key or "")
        out.append(Finding(code, message, rule, line, path))

    for attr, code, message in _HEADER:
        value = getattr(m, attr)
        if not value or (isinstance(value, str) and not value.strip()):
            add(code, message)
    if m.unmatched == "keep":
        add("unmatched-keep", "unmatched: keep lets every field no rule names through, "
            "including identifiers added to the source later; use drop or reject",
            key="unmatched")

    tracer = Tracer(policy)
    top = {alt[0].value for r in policy.rules if r.parsed_path.alternatives
           for alt in r.parsed_path.alternatives if alt and alt[0].kind == KEY}
    reported: set[tuple[str, int | None]] = set()
    gather = gatherer(policy) if any(r.action in REMOVERS for r in policy.rules) else None
    unknown: dict[int | None, list[str]] = {}
    enclosing: set[int] = set()
    for e in entries(formats_of({str(t) for t in top})):
        record = e.record()
        d = decision_at(tracer.decide(record), e.loc)
        if d is None or (e.path, d.rule) in reported:
            continue
        as_is = _as_is(policy, d.rule)
        if d.treatment != "keep" and as_is is None:
            if (gather is not None and e.kind == "direct" and d.treatment != "reject"
                    and not _flagged_false(policy, d.rule)
                    and not any(PLACEHOLDER in v for v in gather(record))):
                reported.add((e.path, d.rule))
                unknown.setdefault(d.rule, []).append(e.path)
                if d.rule and not _names(policy.rules[d.rule - 1], e.loc):
                    enclosing.add(d.rule)
            continue
        reported.add((e.path, d.rule))
        by = f"rule {d.rule} keeps it" if d.rule else "unmatched: keep keeps it"
        if as_is:
            by = f"rule {d.rule} ({as_is}) keeps it"
        if e.kind == "direct":
            add("identifier-kept", f"{e.path} ({e.label}) is a direct identifier and {by} "
                "as is; drop, hash or encrypt it", rule=d.rule, key="unmatched", path=e.path)
        else:
            add("free-text-kept", f"{e.path} ({e.label}) is free text and {by} without "
                "scrubbing; drop it unless the purpose needs it", rule=d.rule,
                key="unmatched", path=e.path)

    for rule, paths in unknown.items():
        by = (f"rule {rule} ({policy.rules[rule - 1].action})" if rule else
              f"unmatched: {m.unmatched}")
        fix = (f"mark rule {rule} identifying: true" if rule and rule not in enclosing else
               "name them in rules marked identifying: true (drop works" +
               (f"; not rule {rule}: it encloses them, and every value in it would count "
                "as an identifier)" if rule else ")"))
        add("identifier-not-identifying", f"{by} treats direct identifiers that no "
            f"identifying rule reaches ({', '.join(paths)}): scrub and url rules leave "
            "their values in clear wherever else the record holds them (free text, URLs); "
            f"{fix}, or treat them with agent or learner_id", rule=rule, key="unmatched",
            path=policy.rules[rule - 1].path if rule else None)

    reid = bool(m.reidentification and m.reidentification.strip())
    has_encrypt = any(REGISTRY[r.action].reversible for r in policy.rules)
    can = reachable(tracer)
    for i, r in enumerate(policy.rules, 1):
        if REGISTRY[r.action].reversible and not reid:
            add("encrypt-without-reidentification", f"{r.path} is made reversible ({r.action}) but "
                "the policy declares no need for re-identification (reidentification:); "
                "use hash, or state who may re-identify and why", rule=i, path=r.path)
        if _flagged_false(policy, i):
            add("identifying-false", f"{r.path} ({r.action}) holds identifiers but is marked "
                "identifying: false, so scrub and url rules leave its values in clear "
                "wherever else the record holds them (free text, URLs); remove "
                "identifying: false", rule=i, path=r.path)
        if r.action == "hash" and reid and not has_encrypt:
            add("hash-with-reidentification", f"{r.path} is hashed (one-way) but the policy "
                "declares a need for re-identification that no encrypt rule serves; use "
                "encrypt for the fields to reverse, or remove reidentification", rule=i,
                path=r.path)
        if not (r.why and r.why.strip()):
            add("rule-without-why", f"{r.path} ({r.action}) has no why: say why the field "
                "is needed and why this treatment", rule=i, path=r.path)
        if r.when and any(not v for k, v in r.when.items() if not k.startswith("!")):
            add("unreachable-rule", f"{r.path}: a when condition lists no value, so the "
                "rule never applies", rule=i, path=r.path)
        elif can.get(i) is False:
            add("unreachable-rule", f"{r.path} never decides any field: a rule that treats "
                "a whole enclosing value, or an earlier or more specific rule for the same "
                "place, always wins", rule=i, path=r.path)
    for winner, loser, where in overlaps(tracer):
        w, lo = policy.rules[winner - 1], policy.rules[loser - 1]
        add("overlapping-rules", f"rules {winner} ({w.action} {w.path}) and {loser} "
            f"({lo.action} {lo.path}) both match {where}; rule {winner} wins there",
            rule=loser, path=lo.path)
    return sorted(out, key=lambda f: (f.severity != "error", f.rule or 0))


def _flagged_false(policy: Policy, rule: int | None) -> bool:
    """The rule is an identifying action marked identifying: false (its own finding)."""
    if rule is None:
        return False
    r = policy.rules[rule - 1]
    return r.identifying is False and REGISTRY[r.action].identifies is not None


def _as_is(policy: Policy, rule: int | None) -> str | None:
    """Why a rule whose action seems to treat its values gives them back unchanged, if it
    does: such a rule keeps an identifier or free text as surely as ``keep``."""
    return None if rule is None else policy.options[rule - 1].unchanged


def _names(rule: Any, loc: Loc) -> bool:
    """The rule's path ends at ``loc`` itself, not at a value enclosing it (marked
    identifying, such a rule would make every value under it an identifier)."""
    return any(len(steps) == len(loc) and all(
        s.kind == ANY or (s.kind in (KEY, INDEX) and s.value == p)
        for s, p in zip(steps, loc, strict=True))
        for steps in rule.parsed_path.alternatives or ())


def _lines(policy: Policy) -> dict[Any, int]:
    """Line numbers of header keys (by name) and rules (by number) in the policy file."""
    src = policy.source
    suffix = Path(src).suffix.lower()
    try:
        if src.startswith("builtin:"):
            text = (resources.files("pseudonym.policies") / f"{src[8:]}.yaml").read_text("utf-8")
        elif suffix in (".yaml", ".yml", ".json"):
            text = Path(src).read_text("utf-8-sig")
        else:
            return {}
        node = compose(text) if suffix == ".json" else yaml.compose(text, Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    out: dict[Any, int] = {}
    if not isinstance(node, yaml.MappingNode):
        return out
    for k, v in node.value:
        out[k.value] = k.start_mark.line + 1
        if k.value == "rules" and isinstance(v, yaml.SequenceNode):
            for i, item in enumerate(v.value, 1):
                out[i] = item.start_mark.line + 1
    return out


def exit_status(findings: list[Finding], strict: bool) -> int:
    """0 clean, 1 errors, 2 warnings only and ``strict``."""
    if any(f.severity == "error" for f in findings):
        return 1
    if strict and findings:
        return 2
    return 0
