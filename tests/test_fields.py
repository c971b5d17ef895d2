"""The tracer the DPO tools use must agree with what the engine really does."""

from __future__ import annotations

import gzip
import json
from itertools import islice
from pathlib import Path

import pytest

from pseudonym import KeyRing, Policy, anonymise
from pseudonym.fields import Decision, Tracer, decision_at, get
from pseudonym.policy import builtin_names
from tests.dpo_helpers import BAD, EXAMPLE, ROOT, TRACES

SHARED = ROOT.parent / "shared" / "data" / "ralph-video-statements.jsonl.gz"


def leaves(value, loc=()):
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from leaves(v, (*loc, k))
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            yield from leaves(v, (*loc, i))
    else:
        yield loc


def check_agreement(policy: Policy, records) -> int:
    tracer, keys, n = Tracer(policy), KeyRing.generate(), 0
    for rec in records:
        out = anonymise(rec, policy, keys=keys)
        decisions = tracer.decide(rec)
        for loc in leaves(rec):
            d = decision_at(decisions, loc)
            assert d is not None, loc
            try:
                new = get(out, loc)
                present = True
            except (KeyError, IndexError, TypeError):
                present = False
            if d.treatment == "keep":
                assert present and new == get(rec, loc), loc
            elif d.treatment == "drop":
                assert not present, loc
            n += 1
    return n


POLICIES = [EXAMPLE, BAD / "identifier-kept.yaml", BAD / "overlapping-rules.yaml",
            BAD / "unmatched-keep.yaml", BAD / "unreachable-rule.yaml"]


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: Path(p).stem)
def test_tracer_agrees_with_engine_on_examples(path):
    records = [json.loads(line) for line in TRACES.read_text().splitlines()]
    assert check_agreement(Policy.load(path), records) > 50


def test_tracer_agrees_with_engine_on_real_statements():
    if not SHARED.exists():
        pytest.skip(f"shared data absent: {SHARED}")
    with gzip.open(SHARED, "rt") as f:
        records = [json.loads(line) for line in islice(f, 300)]
    assert check_agreement(Policy.load(EXAMPLE), records) > 1000
    if "xapi" in builtin_names():
        assert check_agreement(Policy.load("xapi"), records) > 1000


def test_tracer_agrees_on_edge_shapes():
    policy = Policy.from_dict({"name": "t", "version": "1", "domain": "d", "rules": [
        {"path": "$.a.b", "action": "keep"}, {"path": "$.c", "action": "drop"},
        {"path": "$.c.d", "action": "keep"}, {"path": "$.l[0]", "action": "keep"}]})
    records = [{"a": {}, "c": [], "l": []}, {"a": {"b": [], "x": 1}, "c": {"d": {}, "e": 2}},
               {"l": [1, 2, {"z": None}], "a": None}, {"a": [{"b": 1}], "c": {"d": None}}]
    assert check_agreement(policy, records) > 5


def test_tracer_follows_json_text_inside_a_field():
    policy = Policy.from_dict({"name": "t", "version": "1", "domain": "d", "rules": [
        {"path": "$.event", "action": "json"}, {"path": "$.event.a", "action": "keep"}]})
    d = Tracer(policy).decide({"event": '{"a": 1, "b": 2}'})
    assert d[("event",)].treatment == "json" and d[("event",)].rule == 1
    assert d[("event", "a")] == Decision("keep", 2)
    assert d[("event", "b")].treatment == "drop" and d[("event", "b")].rule is None
