"""Properties that must hold for every trace (hypothesis)."""

from __future__ import annotations

import copy
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pseudonym import AuditLog, KeyRing, MasterKey, anonymise, reidentify
from pseudonym.audit import read_entries

from .conftest import make_policy

KEYS = KeyRing([MasterKey(b"k" * 32)])
OTHER_KEYS = KeyRing([MasterKey(b"o" * 32)])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                    st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=20))
json_values = st.recursive(scalars, lambda c: st.one_of(
    st.lists(c, max_size=4), st.dictionaries(st.text(max_size=6), c, max_size=4)),
    max_leaves=12)
identifiers = st.text(min_size=1, max_size=30)
traces = st.fixed_dictionaries(
    {"actor": st.fixed_dictionaries({"mbox": identifiers, "name": st.text(max_size=20)}),
     "verb": st.text(max_size=10),
     "extra": json_values})

RULES = [{"path": "$.actor.mbox", "action": "hash"},
         {"path": "$.actor.name", "action": "encrypt"},
         {"path": "$.verb", "action": "keep"}]
POLICY = make_policy(RULES)
POLICY_B = make_policy(RULES, domain="another-domain")
settings.register_profile("ci", deadline=None, max_examples=150,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")


@given(traces)
def test_deterministic_within_a_domain(trace):
    assert anonymise(trace, POLICY, keys=KEYS) == anonymise(copy.deepcopy(trace), POLICY,
                                                          keys=KEYS)


@given(identifiers, identifiers)
def test_different_domain_or_key_gives_different_pseudonyms(a, b):
    pa = anonymise({"actor": {"mbox": a}}, POLICY, keys=KEYS)["actor"]["mbox"]
    assert pa != anonymise({"actor": {"mbox": a}}, POLICY_B, keys=KEYS)["actor"]["mbox"]
    assert pa != anonymise({"actor": {"mbox": a}}, POLICY, keys=OTHER_KEYS)["actor"]["mbox"]
    pb = anonymise({"actor": {"mbox": b}}, POLICY, keys=KEYS)["actor"]["mbox"]
    assert (pa == pb) == (a == b)


@given(json_values)
def test_encrypt_round_trips(value):
    p = make_policy([{"path": "$.v", "action": "encrypt"}])
    out = anonymise({"v": value}, p, keys=KEYS)
    if value is None:
        assert out == {"v": None}
    else:
        assert reidentify(out["v"], p, keys=KEYS, reason="property test") == value


@given(traces)
def test_input_not_mutated(trace):
    before = copy.deepcopy(trace)
    anonymise(trace, POLICY, keys=KEYS)
    assert trace == before


def _paths(value, prefix=()):
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list) and value:
        for v in value:
            yield from _paths(v, (*prefix, "*"))
    else:
        yield prefix


@given(traces)
def test_with_unmatched_drop_only_rule_covered_paths_survive(trace):
    out = anonymise(trace, POLICY, keys=KEYS)
    covered = {("actor", "mbox"), ("actor", "name"), ("verb",)}
    assert set(_paths(out)) <= covered | {()}


marked = st.text(max_size=20).map(lambda s: "\u00a7" + s)
marked_traces = st.fixed_dictionaries(
    {"actor": st.fixed_dictionaries({"mbox": marked, "name": marked}), "verb": marked,
     "extra": st.dictionaries(marked, marked, max_size=3)})


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(marked_traces, min_size=1, max_size=5))
def test_audit_holds_no_input_value(tmp_path_factory, batch):
    path = tmp_path_factory.mktemp("audit") / "audit.jsonl"
    with AuditLog.open(path) as audit:
        list(anonymise(batch, POLICY, keys=KEYS, audit=audit))
    entry = read_entries(path)[0]
    text = json.dumps(entry, ensure_ascii=False)
    assert "\u00a7" not in text
