"""anonymise: one record or a stream, lazily, failing closed."""

from __future__ import annotations

import json
import pickle
from collections import Counter
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pseudonym import RecordError, anonymise, compile_plan, engine
from pseudonym.engine import RunStats, anonymise_lines, run_lines

from .conftest import make_policy

POLICY_RULES = [{"path": "$.user", "action": "hash"}, {"path": "$.n", "action": "keep"},
                {"path": "$.t", "action": "generalise",
                 "options": {"kind": "timestamp", "unit": "hour"}}]


def test_one_dict_in_one_dict_out(keys):
    out = anonymise({"user": "alice", "n": 1}, make_policy(POLICY_RULES), keys=keys)
    assert isinstance(out, dict) and out["n"] == 1 and out["user"] != "alice"


def test_stream_is_lazy_and_ordered(keys):
    seen = []

    def source():
        for i in range(5):
            seen.append(i)
            yield {"user": f"u{i}", "n": i}

    it = anonymise(source(), make_policy(POLICY_RULES), keys=keys)
    assert seen == []
    first = next(it)
    assert seen == [0] and first["n"] == 0
    assert [r["n"] for r in it] == [1, 2, 3, 4]


def test_same_learner_same_pseudonym_across_records(keys):
    out = list(anonymise([{"user": "alice"}, {"user": "bob"}, {"user": "alice"}],
                         make_policy(POLICY_RULES), keys=keys))
    assert out[0]["user"] == out[2]["user"] != out[1]["user"]


def test_failing_record_is_never_emitted_and_error_names_position_not_content(keys):
    records = [{"user": "a", "t": "2026-01-01T10:11:12Z"},
               {"user": "b", "t": "call me at alice@example.org"},
               {"user": "c", "t": "2026-01-01T10:11:12Z"}]
    p = make_policy(POLICY_RULES)
    it = anonymise(records, p, keys=keys)
    assert next(it)["t"] == "2026-01-01T10:00:00Z"
    with pytest.raises(RecordError) as e:
        next(it)
    assert e.value.position == 2 and e.value.rule == 3 and "alice" not in str(e.value)
    kept = list(anonymise(records, p, keys=keys, on_error="skip"))
    assert len(kept) == 2 and all(r["t"] == "2026-01-01T10:00:00Z" for r in kept)


def test_one_record_error_has_position_one(keys):
    with pytest.raises(RecordError) as e:
        anonymise({"t": "not a time"}, make_policy(POLICY_RULES), keys=keys)
    assert e.value.position == 1


def test_bad_on_error_and_bad_input_types(keys):
    p = make_policy(POLICY_RULES)
    with pytest.raises(ValueError):
        anonymise([], p, keys=keys, on_error="ignore")
    with pytest.raises(TypeError):
        anonymise('{"user": "alice"}', p, keys=keys)


def test_raw_lines_in_bytes_out(keys):
    lines = [b'{"user":"alice","n":1}', b"", b"not json", b'{"n":2}']
    p = make_policy(POLICY_RULES)
    out = list(anonymise_lines(lines, p, keys=keys, on_error="skip"))
    assert len(out) == 2 and out[1] == b'{"n":2}' and b"alice" not in out[0]
    with pytest.raises(RecordError) as e:
        list(anonymise_lines(lines, p, keys=keys))
    assert e.value.position == 3 and e.value.kind == "invalid-json"


def test_strings_json_allows_but_utf8_cannot_hold_survive(keys):
    p = make_policy([{"path": "$.n", "action": "keep"}])
    out = list(anonymise_lines([b'{"n":"\\ud800x","m":1}'], p))
    import json
    assert json.loads(out[0]) == {"n": "\ud800x"}


def test_value_action_on_the_whole_record_is_refused():
    from pseudonym import PolicyError
    with pytest.raises(PolicyError, match="whole record"):
        make_policy([{"path": "$", "action": "hash"}])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.one_of(st.integers(-30, 30),
                                   st.tuples(st.sampled_from(["kept", "dropped"]),
                                             st.sampled_from(["$.a", "$.b[*]"]))),
                         max_size=6), max_size=40))
def test_run_counts_equal_hit_by_hit_counts_and_stay_bounded(seqs):
    """Hits are counted per record shape (one tuple per record) and folded when too many
    shapes pile up: the audit's counts must be those of counting every hit one by one,
    also once pickled (back from a worker) or merged, and what is held stays bounded."""
    want = Counter(h for hits in seqs for h in hits)
    stats = RunStats()
    with patch.object(engine, "MAX_RUNS", 3), patch.object(engine, "MAX_RUN_HITS", 4):
        for hits in seqs:
            stats.commit(list(hits))
            assert len(stats.runs) <= 3
            assert all(len(seq) <= 4 for seq in stats.runs)
    assert stats.written == len(seqs)
    travelled = pickle.loads(pickle.dumps(stats))
    assert not travelled.runs
    merged = RunStats()
    merged.merge(travelled)
    assert stats.hits == travelled.hits == merged.hits == want


def test_audit_counts_survive_many_record_shapes(keys):
    """More distinct record shapes (lists of every length) than a run holds unfolded."""
    policy = make_policy([{"path": "$.xs[*]", "action": "hash"}])
    stats = RunStats()
    lines = [json.dumps({"xs": [str(i)] * n}).encode() for n in range(40) for i in (0, 1)]
    with patch.object(engine, "MAX_RUNS", 8):
        out = list(run_lines(compile_plan(policy, keys), lines, stats))
        assert len(stats.runs) <= 8
    assert len(out) == stats.written == stats.read == len(lines)
    assert stats.transformed[1] == sum(range(40)) * 2
