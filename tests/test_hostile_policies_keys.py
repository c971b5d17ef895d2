"""Broken and hostile policy files and keys: a clear error naming the place, no value or
key material echoed, and a command that stops before reading any data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pseudonym import KeyRing, KeyRingError, MasterKey, Policy, PolicyError
from pseudonym.crypto import b64u

HEADER = 'name: p\nversion: "1"\ndomain: d\n'


def load(tmp_path: Path, text: str | bytes, name: str = "policy.yaml") -> Policy:
    p = tmp_path / name
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return Policy.load(p)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if k != "PSEUDONYM_KEY"}
    return subprocess.run([sys.executable, "-m", "pseudonym", *args], capture_output=True,
                          text=True, env={**e, **(env or {})}, input="", timeout=60)


# -- policies ------------------------------------------------------------------------------
def test_unknown_action(tmp_path):
    with pytest.raises(PolicyError) as e:
        load(tmp_path, HEADER + "rules:\n  - {path: $.a, action: keep}\n"
                                "  - {path: $.b, action: pseudonymise}\n")
    assert (e.value.line, e.value.rule, e.value.field) == (6, 2, "action")
    assert "unknown action 'pseudonymise'" in str(e.value) and "hash" in str(e.value)


@pytest.mark.parametrize("name", ["policy.json", "policy.yaml"])
@pytest.mark.parametrize("rule,line,field", [
    ('{"path": "$.a\\udc00", "action": "keep"}', 3, "path"),
    ('{"path": "$.a", "action": "pseudonymise\\ud800"}', 3, "action"),
    ('{"path": "$.a", "action": "keep",\n  "why": "x\\ud800"}', 4, "why"),
    ('{"path": "$.a", "action": "redact",\n  "options": {"value": ["x", "\\ud800"]}}', 4,
     "options.value.1"),
    ('{"path": "$.a", "action": "keep",\n  "when": {"x\\ud800": ["Agent"]}}', 4, "when"),
])
def test_a_lone_surrogate_is_refused_where_it_is(tmp_path, name, rule, line, field):
    """``\\ud800`` in JSON (or in YAML's double quotes) is no character: refused naming its
    place, never an internal error, a misleading reason or a message that cannot be
    printed."""
    text = ('{"name": "p", "version": "1", "domain": "d",\n'
            f' "rules": [{{"path": "$.b", "action": "keep"}},\n {rule}]}}')
    with pytest.raises(PolicyError) as e:
        load(tmp_path, text, name)
    assert (e.value.line, e.value.rule, e.value.field) == (line, 2, field)
    assert e.value.reason == "not Unicode text: a lone surrogate (\\ud800 to \\udfff)"
    str(e.value).encode("utf-8")


@pytest.mark.parametrize("name", ["policy.json", "policy.yaml"])
@pytest.mark.parametrize("rule", ['{"path": "$.b", "action": "pseudonymise"}',
                                  '{"path": "$.b"}', '"keep"'])
def test_a_name_holding_a_lone_surrogate_is_no_internal_error(tmp_path, name, rule):
    """pydantic stops at such a name without reading the rules, whose options were then
    checked as if the model had found them right: a rule it would have refused (an
    unknown action, none, not a mapping) was an internal error."""
    text = ('{"name": "p", "version": "1", "domain": "d",\n "x\\ud800": 1,\n'
            f' "rules": [{{"path": "$.a", "action": "keep"}}, {rule}]}}')
    with pytest.raises(PolicyError) as e:
        load(tmp_path, text, name)
    assert (e.value.line, e.value.rule, e.value.field) == (2, None, None)
    assert e.value.reason == "not Unicode text: a lone surrogate (\\ud800 to \\udfff)"


@pytest.mark.parametrize("name", ["policy.json", "policy.yaml"])
def test_a_surrogate_pair_is_the_character_it_stands_for(tmp_path, name):
    """JSON written with escapes (json.dumps by default) spells an emoji as the pair
    \\ud83d\\ude00, and JSON is YAML: PyYAML read the pair as two lone surrogates,
    refused as no Unicode text. Read as one character, the policy is the one written with
    the emoji itself."""
    data = {"name": "p", "version": "1", "domain": "d", "description": "ok \U0001F600",
            "rules": [{"path": "$.a", "action": "keep", "why": "\U0001F4DA course"}]}
    escaped = load(tmp_path, json.dumps(data), name)
    assert escaped.sha256 == Policy.from_dict(data).sha256
    assert "\\ud83d\\ude00" in json.dumps(data)


@pytest.mark.parametrize("name", ["policy.json", "policy.yaml"])
@pytest.mark.parametrize("options,line,field,reason", [
    ('{"detectors": ["email"],\n  "\\ud83d\\ude00": 1}', 4, "options.\U0001F600",
     "Extra inputs are not permitted"),
    ('{"detectors": ["email"],\n  "\\ud83d\\ude00\\ud800": 1}', 4, "options",
     "not Unicode text: a lone surrogate (\\ud800 to \\udfff)"),
    ('{"\\ud83d\\ude00": {"a": 1,\n  "b": "\\ud800"}}', 4, "options.\U0001F600.b",
     "not Unicode text: a lone surrogate (\\ud800 to \\udfff)"),
])
def test_a_name_spelled_with_a_surrogate_pair_is_placed(tmp_path, name, options, line,
                                                        field, reason):
    """Found by review: YAML placed a problem by the names as written, the pair's halves,
    so below a name holding a pair it named the line of the mapping the name is in, where
    the same text read as JSON names the line of the name or value itself."""
    text = ('{"name": "p", "version": "1", "domain": "d",\n'
            f' "rules": [{{"path": "$.b", "action": "scrub",\n "options": {options}}}]}}')
    with pytest.raises(PolicyError) as e:
        load(tmp_path, text, name)
    assert (e.value.line, e.value.rule, e.value.field, e.value.reason) == (line, 1, field,
                                                                          reason)


@pytest.mark.parametrize("path", ["$.a[", "a.b", "$.a[?(@.x ==", "$..", ""])
def test_bad_jsonpath(tmp_path, path):
    with pytest.raises(PolicyError) as e:
        load(tmp_path, HEADER + f"rules:\n  - path: '{path}'\n    action: keep\n")
    assert (e.value.line, e.value.rule, e.value.field) == (5, 1, "path")


def test_wrong_types_are_all_reported_with_their_lines(tmp_path):
    text = ("name: p\nversion: 1\ndomain: [d]\nunmatched: maybe\n"
            "rules:\n  - {path: $.a, action: hash, options: {length: long}}\n")
    with pytest.raises(PolicyError) as e:
        load(tmp_path, text)
    where = {(p.line, p.field) for p in e.value.problems}
    assert {(2, "version"), (3, "domain"), (4, "unmatched")} <= where
    text = HEADER + "rules:\n  - {path: $.a, action: hash, options: {length: long, x: 1}}\n"
    with pytest.raises(PolicyError) as e:
        load(tmp_path, text)
    got = {(p.rule, p.field) for p in e.value.problems}
    assert got == {(1, "options.length"), (1, "options.x")}


def test_yaml_alias_bomb_is_refused_at_once(tmp_path):
    """'Billion laughs': nine levels of aliases expand to 10**9 strings if followed."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    start = time.perf_counter()
    with pytest.raises(PolicyError) as e:
        load(tmp_path, HEADER + "\n".join(lines) + "\n")
    assert time.perf_counter() - start < 5
    assert e.value.line == 5 and "aliases" in str(e.value)


def test_yaml_tags_that_run_code_are_refused(tmp_path):
    with pytest.raises(PolicyError) as e:
        load(tmp_path, '!!python/object/apply:os.system ["touch pwned"]\n')
    assert "not valid YAML" in str(e.value)
    assert not (tmp_path / "pwned").exists()


def test_duplicate_policy_keys_are_refused(tmp_path):
    """A reviewer must not read one value while the tool uses another (YAML and JSON)."""
    with pytest.raises(PolicyError) as e:
        load(tmp_path, HEADER + "domain: other\n")
    assert e.value.line == 4 and "duplicate key 'domain'" in str(e.value)
    with pytest.raises(PolicyError, match="duplicate key 'domain'"):
        load(tmp_path, '{"name": "p", "version": "1", "domain": "d", "domain": "e"}', "p.json")


@pytest.fixture
def default_int_digits():
    """Python's default limit on the digits it converts, whatever PYTHONINTMAXSTRDIGITS says."""
    digits = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(4300)
    yield
    sys.set_int_max_str_digits(digits)


@pytest.mark.parametrize("value,kind", [
    ("2020-13-45", "timestamp"), ('!!int ""', "int"), ("!!int x9", "int"),
    ("!!float x9", "float"), ("!!bool x9", "bool"), ("!!int " + "9" * 5000, "int"),
    ("!!timestamp x9", "timestamp"), ('!!timestamp ""', "timestamp"),
])
def test_values_yaml_cannot_build_are_refused_with_their_line(tmp_path, default_int_digits,
                                                              value, kind):
    """Found by a fuzz comparing YAML readers: PyYAML's constructors raised ValueError,
    IndexError or AttributeError, which escaped as an internal error naming no place."""
    with pytest.raises(PolicyError) as e:
        load(tmp_path, HEADER + f"rules:\n  - path: $.a\n    action: redact\n"
                                f"    options: {{value: {value}}}\n")
    assert e.value.line == 7 and f"the value is not a valid {kind}" in str(e.value)
    assert "x9" not in e.value.reason and "45" not in e.value.reason


@pytest.mark.parametrize("value", ["!!map rules", "!!set abc", "!!omap abc", "!!str [1]"])
def test_a_tag_on_the_wrong_kind_of_node_is_refused_with_its_line(tmp_path, value):
    """Found by fuzzing: "!!map" on a scalar reached the duplicate-key check, which
    failed with an internal error instead of PyYAML's own refusal."""
    with pytest.raises(PolicyError) as e:
        load(tmp_path, HEADER + f"x: {value}\n")
    assert e.value.line == 4 and "not valid YAML: expected a" in e.value.reason


def test_json_policy_with_a_number_python_will_not_read_is_refused(tmp_path,
                                                                   default_int_digits):
    with pytest.raises(PolicyError, match="not valid JSON: a number is too long") as e:
        load(tmp_path, '{"name": "p", "version": "1",\n "x": ' + "9" * 5000 + "}", "p.json")
    assert e.value.line == 2


@pytest.mark.parametrize("line", ["!!binary ZG9tYWlu: other",  # base64 of "domain"
                                  "1: a", "on: a", "x: {? !!set {a}: 1}", "[1]: a"])
def test_policy_mapping_keys_must_be_text(tmp_path, line):
    """As in JSON. Found by review: a "!!binary" key is bytes, so it dodged the duplicate
    check and pydantic then read it as the text it encodes; a set key was an internal
    error."""
    with pytest.raises(PolicyError) as e:
        load(tmp_path, HEADER + line + "\n")
    assert e.value.line == 4 and e.value.reason == "a mapping key must be text (quote it)"


@pytest.mark.parametrize("action", ["redact", "json"])
@pytest.mark.parametrize("value", ["!!set {a: null}", "!!binary YQ==", "2020-01-01"])
def test_a_constant_must_be_a_json_value(tmp_path, action, value):
    """Found by review: a set or bytes loaded, then every record was rejected, and a set's
    order (so the policy's fingerprint) depended on the hash seed."""
    with pytest.raises(PolicyError) as e:
        load(tmp_path, HEADER + f"rules:\n  - path: $.a\n    action: {action}\n"
                                f"    options: {{value: {value}}}\n")
    assert e.value.line == 7 and "not a valid JSON value" in str(e.value)


@pytest.mark.parametrize("action", ["redact", "json"])
@pytest.mark.parametrize("value", [".nan", "-.inf", "[1, .inf]", "{a: {b: .NaN}}"])
def test_a_constant_must_be_finite(tmp_path, action, value):
    """YAML reads .nan and .inf as floats no JSON writer can write: every record would
    have had null where the policy said NaN."""
    with pytest.raises(PolicyError) as e:
        load(tmp_path, HEADER + f"rules:\n  - path: $.a\n    action: {action}\n"
                                f"    options: {{value: {value}}}\n")
    assert e.value.line == 7 and "NaN and infinities are not JSON values" in str(e.value)


def test_policy_not_utf8(tmp_path):
    with pytest.raises(PolicyError) as e:
        load(tmp_path, HEADER.encode() + b"description: caf\xe9\n")
    assert "not UTF-8 text (bad byte at offset 47)" in str(e.value)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "---\n...\n"])
def test_empty_policy(tmp_path, text):
    with pytest.raises(PolicyError, match="the policy is empty"):
        load(tmp_path, text)


def test_policy_errors_through_the_cli_are_one_line_each_and_stop_the_run(tmp_path):
    bad = tmp_path / "policy.yaml"
    bad.write_text(HEADER + "rules:\n  - {path: $.a, action: pseudonymise}\n")
    r = run_cli("check", str(bad))
    assert r.returncode == 1
    assert r.stderr.strip() == (f"{bad}:5, rule 1, field 'action': unknown action "
                                "'pseudonymise'; known actions: " + r.stderr.split(": ")[-1]
                                ).strip()
    key = MasterKey.generate().text
    r = run_cli("anonymise", "-p", str(bad), env={"PSEUDONYM_KEY": key})
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stdout == ""


# -- keys ----------------------------------------------------------------------------------
POLICY = HEADER + "rules:\n  - {path: $.a, action: hash}\n"


@pytest.fixture()
def policy_file(tmp_path: Path) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(POLICY)
    return p


def short_key_text(n: int) -> str:
    return f"psk1.000000000000.{b64u(b'k' * n)}"


@pytest.mark.parametrize("text,reason", [
    ("correct horse battery staple", "not a pseudonym master key"),
    ("psk1.abc", "not a pseudonym master key"),
    ("psk1.abc.!!!notbase64", "not base64url"),
    (short_key_text(16), "too short (128 bits; at least 256 needed)"),
    (short_key_text(65), "too long (520 bits; at most 512)"),
])
def test_wrong_key_formats(policy_file, text, reason):
    with pytest.raises(KeyRingError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        KeyRing.parse(text)
    r = run_cli("anonymise", "-p", str(policy_file), env={"PSEUDONYM_KEY": text})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "$PSEUDONYM_KEY" in r.stderr and reason in r.stderr
    assert text.split(".")[-1] not in r.stderr


def test_damaged_key_is_caught_by_its_key_id():
    text = MasterKey.generate().text
    damaged = text[:-2] + ("A" if text[-2] != "A" else "B") + text[-1]
    with pytest.raises(KeyRingError, match="damaged") as e:
        KeyRing.parse(damaged)
    assert damaged.split(".")[-1] not in str(e.value)


def test_no_key_for_a_keyed_policy(policy_file):
    r = run_cli("anonymise", "-p", str(policy_file))
    assert r.returncode == 2 and "needs a key" in r.stderr


def test_key_file_readable_by_others_warns_on_the_command_line(tmp_path, policy_file):
    key = MasterKey.generate()
    kf = tmp_path / "pseudonym.key"
    kf.write_text(key.text + "\n")
    kf.chmod(0o644)
    r = run_cli("anonymise", "-p", str(policy_file), "--key-file", str(kf))
    assert r.returncode == 0
    assert r.stderr == (f"pseudonym: warning: {kf}: key file can be read by other users; "
                        "chmod 600 it\n")
    kf.chmod(0o600)
    r = run_cli("anonymise", "-p", str(policy_file), "--key-file", str(kf))
    assert r.returncode == 0 and r.stderr == ""




def test_key_file_missing_or_not_text(tmp_path, policy_file):
    r = run_cli("anonymise", "-p", str(policy_file), "--key-file", str(tmp_path / "nope"))
    assert r.returncode == 2 and "cannot read key file (No such file or directory)" in r.stderr
    kf = tmp_path / "bin.key"
    kf.write_bytes(b"\xff\xfe\x00")
    kf.chmod(0o600)
    r = run_cli("anonymise", "-p", str(policy_file), "--key-file", str(kf))
    assert r.returncode == 2 and "key file is not UTF-8 text" in r.stderr


@pytest.mark.parametrize("text,name", [
    ("[" * 5000, "policy.yaml"),
    ("- " * 5000 + "1\n", "policy.yaml"),
    ('{"a":' * 5000, "policy.json"),
    (HEADER + "rules:\n  - {path: $.a, action: redact, options: {value: "
     + "[" * 300 + "]" * 300 + "}}\n", "policy.yaml"),
])
def test_deeply_nested_policy_is_a_policy_error(tmp_path, text, name):
    """Found by hand after fuzzing: PyYAML's composer and pydantic's serialiser raised
    RecursionError / ValueError, which escaped as internal errors (or, for the policy
    fingerprint, only when the run started)."""
    with pytest.raises(PolicyError, match="nested too deeply"):
        load(tmp_path, text, name)
