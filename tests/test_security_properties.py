"""Properties over generated nested traces and generated policies (hypothesis).

Every string and integer in a generated trace is a unique marker, so "does this value
appear in the output?" is a substring test. Which values a policy must hide is decided
by ``fate``, a small independent model of the documented semantics (plan.py's module
docstring): at each field, the most specific matching rule decides (more named steps,
then first in file); keep/drop set the default inside; other actions replace the
whole value; the rest follows ``unmatched``. The model also checks the other way round
(what is kept must appear), so a wrong model cannot make the leak test pass vacuously.
"""

from __future__ import annotations

import copy
import hashlib
import json
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pseudonym import AuditLog, KeyRing, Policy, RecordError, anonymise, reidentify

KEY_A, KEY_B = KeyRing.generate(), KeyRing.generate()
NAMES = ["a", "b", "c"]
HIDING = {"hash", "encrypt", "redact", "drop", "unmatched-drop", "scrub"}
"""Fates after which a value must not appear. Every string marker is e-mail shaped, so
``scrub`` must find it; numbers are not what scrub is for (it keeps them)."""
SHOWING = {"keep", "unmatched-keep"}

# -- generated traces ---------------------------------------------------------------------
_leaf = st.sampled_from(["str", "str", "str", "int", "int", None, True, 1.5])
_key = st.sampled_from([*NAMES, "other"])
_tree = st.recursive(_leaf, lambda kids: st.lists(kids, max_size=3)
                     | st.dictionaries(_key, kids, max_size=3), max_leaves=16)
_shapes = st.dictionaries(_key, _tree, max_size=4)


def _mark(shape: Any, n: count) -> Any:
    """Unique markers: no marker is a substring of another, none of a pseudonym."""
    if shape == "str":
        return f"<s{next(n):05d}@example.org>"
    if shape == "int":
        return 7_000_000_000_000 + next(n) * 1_000_003
    if isinstance(shape, list):
        return [_mark(x, n) for x in shape]
    if isinstance(shape, dict):
        return {(f"<k{next(n):05d}>" if k == "other" else k): _mark(v, n)
                for k, v in shape.items()}
    return shape


traces = _shapes.map(lambda s: _mark(s, count()))

# -- generated policies -------------------------------------------------------------------
_step = st.one_of(st.tuples(st.just("key"), st.sampled_from(NAMES)),
                  st.tuples(st.just("any"), st.none()),
                  st.tuples(st.just("desc"), st.sampled_from(NAMES)))
_action = st.sampled_from(["keep", "drop", "encrypt", "redact", "scrub", "hash"]).flatmap(
    lambda a: st.builds(lambda e: ("hash", {"encoding": e}),
                        st.sampled_from(["hex", "base32", "uuid", "integer"]))
    if a == "hash" else st.just((a, {})))
_rule = st.tuples(st.lists(_step, min_size=1, max_size=2), _action)


def path_text(steps: list[tuple[str, Any]]) -> str:
    return "$" + "".join(f".{v}" if k == "key" else "[*]" if k == "any" else f"..{v}"
                         for k, v in steps)


def make_policy(rules: list, unmatched: str, domain: str = "prop-a") -> Policy:
    return Policy.from_dict({
        "name": "generated", "version": "1", "domain": domain, "unmatched": unmatched,
        "rules": [{"path": path_text(s), "action": a, "options": o} for s, (a, o) in rules]})


policies = st.tuples(st.lists(_rule, min_size=1, max_size=6),
                    st.sampled_from(["drop", "keep", "reject"]))


# -- the model ----------------------------------------------------------------------------
def _matches(steps: list, path: tuple) -> bool:
    def m(i: int, j: int) -> bool:
        if i == len(steps):
            return j == len(path)
        kind, v = steps[i]
        if kind == "desc":
            return any(path[t] == v and m(i + 1, t + 1) for t in range(j, len(path)))
        if j == len(path):
            return False
        return (kind == "any" or path[j] == v) and m(i + 1, j + 1)
    return m(0, 0)


def fate(rules: list, unmatched: str, path: tuple) -> str:
    """What the documented semantics do to the value at ``path``."""
    mode = None
    for i in range(1, len(path) + 1):
        cands = [(-sum(k != "any" for k, _ in s), n, a) for n, (s, (a, _)) in enumerate(rules)
                 if _matches(s, path[:i])]
        if cands:
            action = min(cands)[2]
            if action not in ("keep", "drop"):
                return action
            mode = action
    return mode or f"unmatched-{unmatched}"


def leaves(value: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    """(path, value) of every scalar and empty container; list indices are ints."""
    if isinstance(value, dict) and value:
        return [x for k, v in value.items() for x in leaves(v, (*path, k))]
    if isinstance(value, list) and value:
        return [x for i, v in enumerate(value) for x in leaves(v, (*path, i))]
    return [(path, value)]


def markers(value: Any) -> list[str]:
    """Every marker (value or key) in a trace, as it reads in JSON text."""
    text = json.dumps(value)
    found = [w for w in text.replace('"', " ").split() if w.startswith("<") and w.endswith(">")]
    return found + [str(v) for _, v in leaves(value) if type(v) is int]


def digests(text: str) -> list[str]:
    """Unkeyed digests of a value, as hex prefixes long enough to be unmistakable (a
    pseudonym may be a truncated digest)."""
    raw = text.encode()
    return [hashlib.new(h, raw).hexdigest()[:16] for h in ("md5", "sha1", "sha256")]


# -- properties ---------------------------------------------------------------------------
SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@SETTINGS
@given(trace=traces, pol=policies)
def test_no_leak_and_nothing_outside_the_rules_survives(tmp_path: Path, trace, pol) -> None:
    rules, unmatched = pol
    policy = make_policy(rules, unmatched)
    before = copy.deepcopy(trace)
    fates = [(p, v, fate(rules, unmatched, p)) for p, v in leaves(trace) if p]
    audit_path = tmp_path / "audit.jsonl"
    audit_path.unlink(missing_ok=True)
    audit = AuditLog.open(audit_path)

    if unmatched == "reject" and any(f == "unmatched-reject" for _, _, f in fates):
        with pytest.raises(RecordError) as e:
            anonymise(trace, policy, keys=KEY_A, audit=audit)
        assert e.value.kind == "unmatched-field"
        out_text = ""
    else:
        out_text = json.dumps(anonymise(trace, policy, keys=KEY_A, audit=audit),
                              ensure_ascii=False)

    # the input is never mutated (same values, same types, same key order)
    assert json.dumps(trace) == json.dumps(before)
    for path, value, f in fates:
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            continue
        text = json.dumps(value)
        if f == "scrub" and not isinstance(value, str):
            continue
        if f in HIDING:  # never there, raw or as an unkeyed digest
            assert text not in out_text, (path, f)
            for d in digests(value if isinstance(value, str) else text):
                assert d not in out_text, (path, f)
        elif f in SHOWING and out_text:  # the model agrees with the engine
            assert text in out_text, (path, f)
    # the audit log holds no value and no key of the input, and no key material
    audit_text = audit_path.read_text()
    for m in markers(trace):
        assert m not in audit_text
    assert KEY_A.active.text.split(".")[-1] not in audit_text + out_text


@SETTINGS
@given(trace=traces, action=_action.filter(lambda a: a[0] in ("hash", "encrypt", "scrub")))
def test_every_string_under_a_hiding_action_is_gone_in_every_form(trace, action) -> None:
    """The same promise, with one rule over every top-level field so that every marker
    is under it: not raw, not as an unkeyed MD5/SHA-1/SHA-256 digest (or its prefix)."""
    policy = make_policy([([("any", None)], action)], "drop")
    out_text = json.dumps(anonymise(trace, policy, keys=KEY_A), ensure_ascii=False)
    for _, value in leaves(trace):
        if isinstance(value, str):
            assert value not in out_text
            assert not [d for d in digests(value) if d in out_text]


@SETTINGS
@given(trace=traces, pol=policies)
def test_deterministic_within_a_domain(trace, pol) -> None:
    rules, unmatched = pol
    if unmatched == "reject":
        unmatched = "drop"
    one = anonymise(trace, make_policy(rules, unmatched), keys=KEY_A)
    again = anonymise(copy.deepcopy(trace), make_policy(rules, unmatched),
                      keys=KeyRing.parse(KEY_A.active.text))
    assert json.dumps(one) == json.dumps(again)


def _fresh(out: Any, trace: Any) -> set:
    """Values the policy made (pseudonyms, tokens), not copied from the input, nor constants
    (redact's, scrub's placeholders)."""
    seen = {json.dumps(v) for _, v in leaves(trace)}
    return {json.dumps(v) for _, v in leaves(out)
            if v is not None and v != "[REDACTED]" and not isinstance(v, (bool, dict, list))
            and json.dumps(v) not in seen and "[EMAIL]" not in str(v)}


@SETTINGS
@given(trace=traces, rules=st.lists(_rule, min_size=1, max_size=6))
def test_no_shared_pseudonyms_across_domains_or_keys(trace, rules) -> None:
    base = _fresh(anonymise(trace, make_policy(rules, "keep"), keys=KEY_A), trace)
    other_domain = anonymise(trace, make_policy(rules, "keep", domain="prop-b"), keys=KEY_A)
    other_key = anonymise(trace, make_policy(rules, "keep"), keys=KEY_B)
    assert not base & _fresh(other_domain, trace)
    assert not base & _fresh(other_key, trace)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**64, max_value=2**200)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec=None, exclude_categories=())),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=5), kids,
                                                              max_size=4),
    max_leaves=12)

ENCRYPT = Policy.from_dict({"name": "enc", "version": "1", "domain": "prop-enc",
                            "rules": [{"path": "$.v", "action": "encrypt"}]})


@SETTINGS
@given(value=json_values)
def test_encrypt_round_trips_every_json_value(value) -> None:
    out = anonymise({"v": value}, ENCRYPT, keys=KEY_A)
    if value is None:  # null stays null: there is nothing to hide
        assert out == {"v": None}
        return
    token = out["v"]
    assert token.startswith(f"pse1.{KEY_A.active.key_id}.")
    back = reidentify(token, ENCRYPT, keys=KEY_A, reason="property test")
    assert json.dumps(back, sort_keys=True) == json.dumps(value, sort_keys=True)


_dynamic_path = st.sampled_from([
    "$.a[?(@.b)]", "$[?(@.a)]", "$.a[?(@.b)].c", "$..a[?(@.c)]", "$.a[-1]", "$.a[-1].b",
    "$.b[0:2]", "$.b[1:].a", "$[?(@.a)].b"])


@SETTINGS
@given(trace=traces, rules=st.lists(st.tuples(st.one_of(_dynamic_path, st.builds(
    path_text, st.lists(_step, min_size=1, max_size=3))), _action), min_size=1, max_size=5),
    unmatched=st.sampled_from(["drop", "keep"]))
def test_audit_holds_no_input_value_with_dynamic_paths(tmp_path: Path, trace, rules,
                                                       unmatched) -> None:
    """Filters, slices and negative indices find locations in the record itself; the
    path shapes the audit log counts must still not name a key taken from the record."""
    policy = Policy.from_dict({"name": "dyn", "version": "1", "domain": "prop-dyn",
                               "unmatched": unmatched,
                               "rules": [{"path": p, "action": a, "options": o}
                                         for p, (a, o) in rules]})
    audit_path = tmp_path / "audit.jsonl"
    audit_path.unlink(missing_ok=True)
    anonymise(trace, policy, keys=KEY_A, audit=AuditLog.open(audit_path))
    audit_text = audit_path.read_text()
    for m in markers(trace):
        assert m not in audit_text


# -- regressions these properties found -----------------------------------------------------
RECORD_KEYED = {"answers": {"alice@example.org": {"ok": 1, "x": 2, "y": 3},
                            "bob@example.org": {"ok": 0}},
                "list": [{"p": 2, "q": 1}, {"p": 3, "q": 4}]}


def _one_rule(path: str) -> Policy:
    return Policy.from_dict({"name": "r", "version": "1", "domain": "d",
                             "rules": [{"path": path, "action": "keep"}]})


@pytest.mark.parametrize("path", ["$.answers[?(@.ok == 1)].x", "$.answers[?(@.ok)].y",
                                  "$[?(@.alice)].x"])
def test_keys_found_by_a_filter_never_reach_the_audit_log(tmp_path: Path, path: str) -> None:
    """The audit log counted dropped fields under shapes built from the record's own keys
    (``$.answers['alice@example.org'][*]``): now ``$.answers[*][*]``."""
    audit = AuditLog.open(tmp_path / "audit.jsonl")
    anonymise(RECORD_KEYED, _one_rule(path), audit=audit)
    text = (tmp_path / "audit.jsonl").read_text()
    assert "example.org" not in text
    assert "$.answers[*][*]" in text or "$.answers" not in path


@pytest.mark.parametrize("path,kept", [
    ("$.list[-1]", {"list": [{"p": 3, "q": 4}]}),
    ("$.list[-1].p", {"list": [{"p": 3}]}),
    ("$.list[-2].q", {"list": [{"q": 1}]}),
])
def test_negative_indices_count_from_the_end(path: str, kept: dict) -> None:
    """A keep rule with a negative index kept nothing: jsonpath-ng names the location
    ``[-1]`` and the walk looks indices up from the start."""
    assert anonymise(RECORD_KEYED, _one_rule(path)) == kept


def test_an_empty_container_no_rule_keeps_does_not_carry_its_key_out() -> None:
    """``{"answers": {"alice@example.org": {}}}`` under ``$.answers[*].correct``: the empty
    object no rule keeps was written back, and with it a key from the record."""
    policy = _one_rule("$.answers[*].correct")
    assert anonymise({"answers": {"alice@example.org": {}, "bob": []}}, policy) == {}
    assert anonymise({"answers": {"bob": {"correct": []}}}, policy) == {
        "answers": {"bob": {"correct": []}}}
