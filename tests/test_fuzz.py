"""Fuzzing in CI: the targets in ``fuzz/targets.py`` under atheris (coverage-guided,
about 30 s each) and under hypothesis (always, a bounded number of random inputs);
every input that once crashed is replayed, and each bug found has a plain test below.

An exception other than the library's declared errors (``PseudonymError`` and its
kinds) fails the test with the input that caused it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pseudonym import KeyRing, Policy, PolicyError, RecordError, anonymise
from pseudonym.actions import REGISTRY

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
sys.path.insert(0, str(FUZZ))
import targets  # noqa: E402

SECONDS = int(os.environ.get("PSEUDONYM_FUZZ_SECONDS", "30"))
TARGETS = {"policy": targets.policy, "anonymise": targets.anonymise_one}


def _inputs(kind: str) -> list[Path]:
    return sorted(p for p in (FUZZ / kind).glob("*/*") if p.is_file())


@pytest.mark.parametrize("path", _inputs("seeds") + _inputs("regressions"),
                         ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}/{p.name}")
def test_seed_and_regression_inputs_pass_the_targets(path: Path) -> None:
    TARGETS[path.parent.name](path.read_bytes())


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                    reason="atheris is not installed; the hypothesis fuzz tests still run")
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_atheris(target: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(FUZZ / "seeds" / target, corpus)
    r = subprocess.run([sys.executable, str(FUZZ / "run.py"), target, str(corpus),
                        f"-max_total_time={SECONDS}", "-timeout=10", "-rss_limit_mb=2048",
                        f"-artifact_prefix={tmp_path}/", "-print_final_stats=1"],
                       capture_output=True, text=True, timeout=SECONDS + 120)
    crashes = sorted(tmp_path.glob("crash-*")) + sorted(tmp_path.glob("timeout-*"))
    assert r.returncode == 0 and not crashes, (
        f"fuzz target {target!r} failed; input saved in {crashes}: copy it to "
        f"fuzz/regressions/{target}/ and fix the bug\n" + r.stderr[-4000:])
    assert "stat::number_of_executed_units" in r.stderr


_FUZZ_SETTINGS = settings(max_examples=300, deadline=None, database=None,
                          suppress_health_check=list(HealthCheck))


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                     lambda k: st.lists(k, max_size=3)
                     | st.dictionaries(st.text(max_size=6), k, max_size=3), max_leaves=6)
_option_names = sorted({f for a in REGISTRY.values() for f in a.options.model_fields})
_rule = st.fixed_dictionaries(
    {"path": st.sampled_from(["$.a", "$..b", "$.a[*].c", "$[0]", "$.a[?(@.x == 1)]", "$.a[1:]",
                              "$['x y']", "$.a.*", "$", "a", "$.."]) | st.text(max_size=10),
     "action": st.sampled_from(sorted(REGISTRY)) | st.text(max_size=6)},
    optional={"options": st.dictionaries(st.sampled_from(_option_names), _json, max_size=3)
              | _json,
              "when": st.dictionaries(st.text(max_size=4), st.lists(_json, max_size=3)) | _json,
              "why": _json})
_policy = st.fixed_dictionaries(
    {"name": st.sampled_from(["p", "a.b-c"]) | st.text(max_size=5),
     "version": st.sampled_from(["1"]) | _json, "domain": st.sampled_from(["d"]) | _json},
    optional={"rules": st.lists(_rule, max_size=5) | _json,
              "unmatched": st.sampled_from(["drop", "keep", "reject"]) | _json,
              "legal_basis": st.sampled_from(["consent", "public_task"]) | _json})


@_FUZZ_SETTINGS
@given(data=st.binary(max_size=2000)
       | _policy.map(lambda d: yaml.safe_dump(d, allow_unicode=True).encode("utf-8",
                                                                              "surrogatepass"))
       | _policy.map(lambda d: json.dumps(d).encode()))
def test_hypothesis_fuzz_policy(data: bytes) -> None:
    targets.policy(data)


@_FUZZ_SETTINGS
@given(pick=st.integers(0, 255), record=st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    | st.sampled_from(["2026-03-01T10:20:30Z", "10.0.0.1", "::1", "fe80::1%eth0", "secret"]),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
        st.sampled_from(["id", "actor", "name", "mbox", "account", "timestamp", "ip", "score",
                         "age", "tags", "note", "items", "kind", "n", "when", "list",
                         "context", "extensions", "objectType"]), kids, max_size=5),
    max_leaves=25))
def test_hypothesis_fuzz_anonymise(pick: int, record) -> None:
    raw = json.dumps(record, allow_nan=True).encode("utf-8", "surrogatepass")
    targets.anonymise_one(bytes([pick]) + raw)


# -- bugs the fuzzers found, as plain tests -------------------------------------------------
KEYS = KeyRing.generate()


def _generalise(options: dict) -> Policy:
    return Policy.from_dict({"name": "g", "version": "1", "domain": "d",
                             "rules": [{"path": "$.v", "action": "generalise",
                                        "options": options}]})


@pytest.mark.parametrize("value", [1e20, -1e18, 10**400])
def test_epoch_seconds_out_of_range_reject_the_record(value) -> None:
    """Found by atheris: OverflowError from datetime crashed the run."""
    with pytest.raises(RecordError) as e:
        anonymise({"v": value}, _generalise({"kind": "timestamp", "unit": "hour"}))
    assert e.value.kind == "action-failed" and "out of the range of dates" in str(e.value)


@pytest.mark.parametrize("options,value", [
    ({"kind": "number", "width": 0.5}, 10**400),
    ({"kind": "number", "width": 1e-300}, 1e308),
    ({"kind": "number", "width": 1, "origin": -1e308}, 1e308),
    ({"kind": "number", "bounds": [1, 2]}, -(10**400)),
])
def test_numbers_beyond_a_double_reject_the_record(options, value) -> None:
    """Found while fixing the above: OverflowError from float arithmetic."""
    with pytest.raises(RecordError) as e:
        anonymise({"v": value}, _generalise(options))
    assert e.value.kind == "action-failed" and "too large" in str(e.value)


def test_policy_with_a_control_character_is_a_policy_error() -> None:
    """Found by atheris: PyYAML's ReaderError escaped, raised before the error handling."""
    with pytest.raises(PolicyError) as e:
        Policy.from_text('name: p\nversion: "1"\ndomain: "d\x00"\n')
    assert e.value.line == 3 and "U+0000 is not allowed" in str(e.value)
