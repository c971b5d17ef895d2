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


# -- JSON policies name lines as YAML ones do -----------------------------------------------
JSON_GOOD = """\
{
  "name": "p",
  "version": "1",
  "domain": "d",
  "rules": [
    {"path": "$.a", "action": "keep", "why": "needed"}
  ]
}
"""


def json_problems(tmp_path, text):
    with pytest.raises(PolicyError) as e:
        Policy.load(write(tmp_path, text, "p.json"))
    return e.value, [(p.line, p.rule, p.field) for p in e.value.problems]


def test_json_unknown_and_missing_fields_name_their_lines(tmp_path):
    f = write(tmp_path, JSON_GOOD.replace('  "domain"', '  "colour": "blue",\n  "domain"'),
              "p.json")
    with pytest.raises(PolicyError) as e:
        Policy.load(f)
    assert (e.value.line, e.value.field) == (4, "colour") and f"{f}:4" in str(e.value)
    _, got = json_problems(tmp_path, "\n" + JSON_GOOD.replace('  "domain": "d",\n', ""))
    assert got == [(2, None, "domain")]  # a missing field: the mapping that lacks it
    err, _ = json_problems(tmp_path, '\n["not", "a", "mapping"]\n')
    assert err.line == 2 and "must be a mapping" in err.reason


def test_json_bad_values_at_a_rule_name_their_lines(tmp_path):
    text = JSON_GOOD.replace('"version": "1"', '"version": 1').replace(
        '"why": "needed"}', '"why": "needed"},\n    {"path": "$.b[",\n     "action": "shred"}')
    err, got = json_problems(tmp_path, text)
    assert got == [(3, None, "version"), (7, 2, "path"), (8, 2, "action")]
    assert "3 problems" in str(err) and "p.json:8, rule 2, field 'action'" in str(err)


def test_json_option_errors_name_their_lines_with_the_other_problems(tmp_path):
    text = JSON_GOOD.replace('"why": "needed"}', '"why": "needed"},\n'
                             '    {"path": "$.b", "action": "hash",\n'
                             '     "options": {"length": 16,\n'
                             '                 "encoding": "rot13"}}') + "\n"
    text = text.replace('  "name": "p",', '  "name": "p",\n  "colour": "blue",')
    _, got = json_problems(tmp_path, text)
    assert got == [(3, None, "colour"), (10, 2, "options.encoding")]


def test_json_duplicate_keys_and_constants_name_their_lines(tmp_path):
    twice = JSON_GOOD.replace('"domain": "d"', '"domain": "d",\n"domain": "e"')
    err, _ = json_problems(tmp_path, twice)
    assert err.line == 5 and err.reason == "duplicate key 'domain'"
    inner = twice.replace(
        '"why": "needed"}', '"why": "needed",\n      "why": "again"}')
    err, _ = json_problems(tmp_path, inner)  # json.loads meets the inner mapping's end first
    assert err.line == 8 and err.reason == "duplicate key 'why'"
    for constant in ("NaN", "Infinity", "-Infinity"):
        err, _ = json_problems(tmp_path, JSON_GOOD.replace(
            '"keep",', '"redact",\n      "options": {"value": [1, ' + constant + ']},'))
        assert err.line == 7 and err.reason == f"{constant} is not valid JSON"


@pytest.mark.parametrize("text,line", [
    (JSON_GOOD.replace('"d",', '"d"'), 5),  # a missing comma: where the next key starts
    (JSON_GOOD.replace('"needed"}', '"needed"},'), 7),
    (JSON_GOOD.replace('"p"', "'p'"), 2),
    (JSON_GOOD.replace('"needed"', '"need\x01ed"'), 6),
])
def test_json_syntax_errors_name_their_lines(tmp_path, text, line):
    err, _ = json_problems(tmp_path, text)
    assert err.line == line and err.reason.startswith("not valid JSON")
    assert "need" not in err.reason


def test_json_lines_hold_with_tabs_escapes_non_ascii_and_long_lines(tmp_path):
    """JSON PyYAML would not read (tabs, \\/ escapes, a 100,000-character line) is placed
    all the same, and loads as before."""
    text = ('{\t"name": "p", "version": "1",\r\n\t"domain": "d\\/\\u00e9t\\u00e9",\n'
            '\t"description": "' + "é" * 100_000 + '",\n'
            '\t"rules": [{"path": "$.a", "action": "keep", "why": "a\\/b",\n'
            '\t\t"c\\u006flour": "blue"}]}\n')
    _, got = json_problems(tmp_path, text)
    assert got == [(5, 1, "colour")]
    assert Policy.load(write(tmp_path, text.replace(',\n\t\t"c\\u006flour": "blue"', ""),
                             "p.json")).domain == "d/été"


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
