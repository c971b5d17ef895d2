"""Policy files: what loads, what is refused, and how refusals name the place."""

from __future__ import annotations

import json

import pytest

from pseudonym import Policy, PolicyError, anonymise
from pseudonym.actions import REGISTRY
from pseudonym.policy import json_schema

from .conftest import EXAMPLES

GOOD = """\
name: p
version: "1"
domain: d
rules:
  - path: $.a
    action: keep
    why: needed
"""


def write(tmp_path, text, name="p.yaml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_example_policy_loads_with_header_and_fingerprint():
    p = Policy.load(EXAMPLES / "research.yaml")
    assert p.name == "video-research" and p.domain == "fun-research-video-2026"
    assert p.model.legal_basis == "public_task" and p.model.unmatched == "drop"
    assert len(p.sha256) == 64


def test_unknown_top_level_key_names_file_line_and_field(tmp_path):
    f = write(tmp_path, GOOD + "colour: blue\n")
    with pytest.raises(PolicyError) as e:
        Policy.load(f)
    assert e.value.source == str(f) and e.value.line == 8 and e.value.field == "colour"
    assert f"{f}:8" in str(e.value)


def test_bad_option_names_rule_and_option(tmp_path):
    text = GOOD + "  - path: $.b\n    action: hash\n    options: {encoding: rot13}\n"
    with pytest.raises(PolicyError) as e:
        Policy.load(write(tmp_path, text))
    assert e.value.rule == 2 and e.value.field == "options.encoding" and e.value.line == 10


def test_bad_jsonpath_is_a_load_error_naming_the_rule(tmp_path):
    text = GOOD + "  - path: $.a[\n    action: keep\n"
    with pytest.raises(PolicyError) as e:
        Policy.load(write(tmp_path, text))
    assert e.value.rule == 2 and e.value.field == "path" and "JSONPath" in str(e.value)


@pytest.mark.parametrize("path", ["$&actor.mbox", "$.a[?(@.b & @.c)]", "$.a.(b & c)"])
def test_jsonpath_that_jsonpath_ng_cannot_evaluate_is_a_load_error(tmp_path, path):
    """Found by fuzzing: '&' parses but raised NotImplementedError on the first record."""
    text = GOOD + f"  - path: {path!r}\n    action: keep\n"
    with pytest.raises(PolicyError) as e:
        Policy.load(write(tmp_path, text))
    assert e.value.rule == 2 and e.value.field == "path"


@pytest.mark.parametrize("path", ["$.scores[/raw]", "$.scores.`sorted`", "$.a.`parent`",
                                  "$.a.`len`", "$.a.`keys`", "$.a.`str()`", "$.a * 2"])
def test_jsonpath_named_operators_are_a_load_error(tmp_path, path):
    """A sorted copy was read as the record itself: keep on $.scores[/raw] kept the whole
    record, free text and addresses included, under unmatched: drop."""
    text = GOOD + f"  - path: {path!r}\n    action: keep\n"
    with pytest.raises(PolicyError) as e:
        Policy.load(write(tmp_path, text))
    assert e.value.rule == 2 and e.value.field == "path" and "not supported" in str(e.value)


def test_jsonpath_named_operators_may_test_in_filters():
    p = Policy.from_dict({"name": "p", "version": "1", "domain": "d", "rules": [
        {"path": "$.a[?(@.tags.`len` > 1)].n", "action": "redact"}]})
    rec = {"a": [{"tags": [1], "n": "x"}, {"tags": [1, 2], "n": "y"}]}
    assert anonymise(rec, p) == {"a": [{"n": "[REDACTED]"}]}


def test_unknown_action_lists_known_ones(tmp_path):
    with pytest.raises(PolicyError) as e:
        Policy.load(write(tmp_path, GOOD.replace("action: keep", "action: shred")))
    assert e.value.rule == 1 and "unknown action 'shred'" in str(e.value) and "hash" in str(e.value)


def test_all_problems_reported_together(tmp_path):
    text = GOOD.replace("action: keep", "action: shred") + "colour: blue\n"
    with pytest.raises(PolicyError) as e:
        Policy.load(write(tmp_path, text))
    assert len(e.value.problems) == 2 and "2 problems" in str(e.value)


def test_option_errors_come_with_the_other_rules_errors_in_one_load():
    """A policy author fixing a file sees every mistake at once, not the option errors
    only once the rest is right."""
    data = {"name": "p", "version": "1", "domain": "d", "colour": "blue", "rules": [
        {"path": "$.a", "action": "shred"},
        {"path": "$.b", "action": "hash", "options": {"lenght": 16}},
        {"path": "$.c", "action": "keep", "options": {}, "note": "x"},
        {"path": "$.d", "action": "drop", "options": {"why": 1}, "note": "x"},
    ]}
    with pytest.raises(PolicyError) as e:
        Policy.from_dict(data)
    found = {(p.rule, p.field) for p in e.value.problems}
    assert {(1, "action"), (2, "options.lenght"), (4, "options.why")} <= found
    assert len(e.value.problems) == 6
    data["rules"] = "not a list"
    with pytest.raises(PolicyError) as e:
        Policy.from_dict(data)
    assert len(e.value.problems) == 2


def test_yaml_aliases_are_refused(tmp_path):
    bomb = 'a: &a ["x","x"]\nb: &b [*a,*a]\nc: [*b,*b]\n'
    with pytest.raises(PolicyError) as e:
        Policy.load(write(tmp_path, bomb))
    assert "aliases" in str(e.value) and e.value.line == 2


def test_duplicate_keys_are_refused(tmp_path):
    with pytest.raises(PolicyError) as e:
        Policy.load(write(tmp_path, GOOD + "domain: other\n"))
    assert "duplicate key 'domain'" in str(e.value) and e.value.line == 8


def test_yaml_code_tags_are_not_executed(tmp_path):
    with pytest.raises(PolicyError):
        Policy.load(write(tmp_path, GOOD + "x: !!python/object/apply:os.system ['true']\n"))


def test_json_policy_is_equivalent_to_yaml(tmp_path):
    y = Policy.load(write(tmp_path, GOOD))
    j = Policy.load(write(tmp_path, json.dumps(y.model.model_dump(mode="json")), "p.json"))
    assert j.sha256 == y.sha256


def test_fingerprint_ignores_formatting_but_not_meaning(tmp_path):
    a = Policy.load(write(tmp_path, GOOD, "a.yaml"))
    b = Policy.load(write(tmp_path, "# comment\n" + GOOD.replace("why: needed", "why:   needed"),
                          "b.yaml"))
    c = Policy.load(write(tmp_path, GOOD.replace("action: keep", "action: drop"), "c.yaml"))
    assert a.sha256 == b.sha256 != c.sha256


def test_empty_and_non_utf8_files(tmp_path):
    with pytest.raises(PolicyError, match="empty"):
        Policy.load(write(tmp_path, "  \n"))
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(GOOD.replace("needed", "nécessaire").encode("latin-1"))
    with pytest.raises(PolicyError, match="not UTF-8"):
        Policy.load(bad)


def test_unknown_builtin_name_lists_builtins():
    with pytest.raises(PolicyError, match="no policy file and no built-in policy named"):
        Policy.load("no-such-policy")


def test_schema_checks_action_options():
    schema = json_schema()
    rule = schema["$defs"]["Rule"]
    assert "hash" in rule["properties"]["action"]["enum"]
    hash_branch = next(b for b in rule["allOf"]
                       if b["if"]["properties"]["action"]["const"] == "hash")
    assert "encoding" in hash_branch["then"]["properties"]["options"]["properties"]
    described = {}
    for b in rule["allOf"]:
        name = b["if"]["properties"]["action"]["const"]
        props = b["then"]["properties"]["options"].get("properties", {})
        described[name] = {k: v.get("description") for k, v in props.items()}
        assert described[name] == REGISTRY[name].options.option_docs()
        assert None not in described[name].values(), name
    # an option redeclared in a subclass has the subclass's docstring, others the parent's
    assert described["agent"]["encoding"].startswith("As for ``hash``")
    assert not described["hash"]["encoding"].startswith("As for")
    assert described["agent"]["bits"] == described["hash"]["bits"]
    assert schema["additionalProperties"] is False
