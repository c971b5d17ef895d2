"""The meaning of a policy: which rule decides which field (plan.py's docstring)."""

from __future__ import annotations

import json

import pytest

from pseudonym import RecordError, anonymise

from .conftest import make_policy


def run(rules, record, keys=None, **header):
    return anonymise(record, make_policy(rules, **header), keys=keys)


def test_unmatched_fields_are_dropped_by_default():
    assert run([{"path": "$.a", "action": "keep"}], {"a": 1, "b": 2, "c": {"d": 3}}) == {"a": 1}


def test_unmatched_keep_and_reject():
    rec = {"a": 1, "b": 2}
    assert run([{"path": "$.a", "action": "drop"}], rec, unmatched="keep") == {"b": 2}
    with pytest.raises(RecordError) as e:
        run([{"path": "$.a", "action": "keep"}], rec, unmatched="reject")
    assert e.value.kind == "unmatched-field" and "$[*]" in e.value.reason


def test_inner_rule_beats_enclosing_keep(keys):
    rec = {"actor": {"name": "Alice", "mbox": "mailto:a@x.fr", "objectType": "Agent"}}
    out = run([{"path": "$.actor", "action": "keep"},
               {"path": "$.actor.name", "action": "drop"},
               {"path": "$.actor.mbox", "action": "hash"}], rec, keys)
    assert out["actor"]["objectType"] == "Agent" and "name" not in out["actor"]
    assert out["actor"]["mbox"] != "mailto:a@x.fr"


def test_inner_keep_survives_enclosing_drop():
    rec = {"context": {"registration": "r1", "extensions": {"x": 1}}}
    out = run([{"path": "$.context", "action": "drop"},
               {"path": "$.context.registration", "action": "keep"}], rec, unmatched="keep")
    assert out == {"context": {"registration": "r1"}}


def test_named_key_beats_wildcard_whatever_the_order():
    rec = {"ext": {"session": "s", "time": 3}}
    for rules in ([{"path": "$.ext[*]", "action": "drop"},
                   {"path": "$.ext.time", "action": "keep"}],
                  [{"path": "$.ext.time", "action": "keep"},
                   {"path": "$.ext[*]", "action": "drop"}]):
        assert run(rules, rec) == {"ext": {"time": 3}}


def test_tie_goes_to_the_first_rule():
    rec = {"a": {"b": 1}}
    first_keep = [{"path": "$.a[*]", "action": "keep"}, {"path": "$[*].b", "action": "drop"}]
    first_drop = list(reversed(first_keep))
    assert run(first_keep, rec) == {"a": {"b": 1}}
    assert run(first_drop, rec) == {}


def test_value_action_takes_the_whole_value(keys):
    rec = {"a": {"b": 1, "c": 2}}
    out = run([{"path": "$.a", "action": "redact"}, {"path": "$.a.b", "action": "keep"}], rec)
    assert out == {"a": "[REDACTED]"}


def test_wildcards_over_arrays_and_objects(keys):
    rec = {"members": [{"mbox": "mailto:a@x.fr", "name": "A"}, {"mbox": "mailto:b@x.fr"}]}
    out = run([{"path": "$.members[*].mbox", "action": "hash"}], rec, keys)
    assert len(out["members"]) == 2 and all(set(m) == {"mbox"} for m in out["members"])
    assert out["members"][0]["mbox"] != out["members"][1]["mbox"]


def test_index_steps():
    rec = {"a": [1, 2, 3]}
    assert run([{"path": "$.a[1]", "action": "keep"}], rec) == {"a": [2]}


def test_recursive_descent_reaches_every_depth(keys):
    rec = {"actor": {"mbox": "m1"}, "object": {"actor": {"mbox": "m2"}},
           "context": {"team": {"member": [{"mbox": "m3"}]}}}
    out = run([{"path": "$..mbox", "action": "hash"}], rec, keys)
    assert out["actor"]["mbox"] != "m1" and out["object"]["actor"]["mbox"] != "m2"
    assert out["context"]["team"]["member"][0]["mbox"] != "m3"
    assert "m1" not in str(out) and "m2" not in str(out) and "m3" not in str(out)


def test_union_of_keys():
    assert run([{"path": "$['a','b']", "action": "keep"}], {"a": 1, "b": 2, "c": 3}) == \
        {"a": 1, "b": 2}


def test_iri_keys_with_dots():
    key = "https://w3id.org/xapi/video/extensions/time"
    rec = {"result": {"extensions": {key: 12.5, "https://x.org/other.ext": 1}}}
    assert run([{"path": f"$.result.extensions['{key}']", "action": "keep"}], rec) == \
        {"result": {"extensions": {key: 12.5}}}


def test_filter_paths_use_jsonpath_per_record(keys):
    rules = [{"path": "$.members[?(@.kind == 'person')].id", "action": "hash"},
             {"path": "$.members[*].kind", "action": "keep"},
             {"path": "$.members[*].id", "action": "keep"}]
    out = run(rules, {"members": [{"kind": "person", "id": "alice"},
                                  {"kind": "bot", "id": "crawler"}]}, keys)
    assert out["members"][0]["id"] != "alice" and out["members"][1]["id"] == "crawler"


def test_when_condition_selects_the_rule(keys):
    rules = [{"path": "$.object", "action": "hash", "when": {"objectType": ["Agent"]}},
             {"path": "$.object", "action": "keep"}]
    activity = {"object": {"objectType": "Activity", "id": "http://a"}}
    agent = {"object": {"objectType": "Agent", "mbox": "mailto:a@x.fr"}}
    assert run(rules, activity, keys) == activity
    assert isinstance(run(rules, agent, keys)["object"], str)


def test_when_null_means_absent():
    rules = [{"path": "$.object", "action": "keep", "when": {"objectType": [None, "Activity"]}}]
    assert run(rules, {"object": {"id": "x"}}) == {"object": {"id": "x"}}
    assert run(rules, {"object": {"id": "x", "objectType": "Agent"}}) == {}


def test_emptied_containers_are_removed_but_empty_inputs_stay():
    rules = [{"path": "$.a.keep", "action": "keep"}, {"path": "$.b", "action": "keep"}]
    assert run(rules, {"a": {"secret": 1}, "b": {}}) == {"b": {}}


def test_scalar_where_an_object_was_expected_is_dropped_not_leaked():
    rules = [{"path": "$.actor.objectType", "action": "keep"}]
    assert run(rules, {"actor": "alice@example.org"}) == {}


def test_field_order_is_kept(keys):
    rec = {"z": 1, "a": 2, "m": {"y": 1, "b": 2}}
    out = run([{"path": "$.z", "action": "keep"}, {"path": "$.a", "action": "hash"},
               {"path": "$.m", "action": "keep"}], rec, keys)
    assert list(out) == ["z", "a", "m"] and list(out["m"]) == ["y", "b"]


def test_input_is_not_mutated(keys):
    import copy
    rec = {"a": {"b": "x", "c": [1, {"d": "y"}]}, "e": "z"}
    before = copy.deepcopy(rec)
    run([{"path": "$.a.b", "action": "hash"}, {"path": "$.a.c[*].d", "action": "drop"},
         {"path": "$.a.c", "action": "keep"}], rec, keys)
    assert rec == before


def test_not_an_object_is_rejected():
    with pytest.raises(RecordError) as e:
        anonymise([[1, 2]], make_policy([{"path": "$.a", "action": "keep"}])).__next__()
    assert e.value.kind == "not-an-object" and e.value.position == 1


def test_when_negated_field_applies_unless_one_of_the_listed_values():
    rules = [{"path": "$.e", "action": "redact", "options": {"value": {}},
              "when": {"!setting": [None, "lang"]}},
             {"path": "$.e", "action": "keep"}]
    assert run(rules, {"e": {"setting": "lang", "v": 1}}) == {"e": {"setting": "lang", "v": 1}}
    assert run(rules, {"e": {"v": 1}}) == {"e": {"v": 1}}
    assert run(rules, {"e": {"setting": "name", "v": "Jean"}}) == {"e": {}}
    assert run(rules, {"e": {"setting": ["lang"], "v": "Jean"}}) == {"e": {}}
    assert run(rules, {"e": "not an object"}) == {"e": "not an object"}


def test_a_condition_before_a_json_rule_sees_the_object_inside_json_text():
    rules = [{"path": "$.e", "action": "redact", "options": {"value": {}},
              "when": {"!setting": [None, "lang"]}},
             {"path": "$.e", "action": "json"}, {"path": "$.e.*", "action": "keep"}]
    assert run(rules, {"e": '{"setting": "name", "v": "Jean"}'}) == {"e": "{}"}
    assert run(rules, {"e": {"setting": "name", "v": "Jean"}}) == {"e": {}}
    assert json.loads(run(rules, {"e": '{"setting": "lang", "v": "fr"}'})["e"]) == {
        "setting": "lang", "v": "fr"}
    drop_first = [{"path": "$.e", "action": "drop", "when": {"kind": ["secret"]}},
                  {"path": "$.e", "action": "json"}, {"path": "$.e.id", "action": "keep"}]
    assert run(drop_first, {"e": '{"kind": "secret", "id": 1, "v": 2}'},
               unmatched="keep") == {"e": '{"id": 1}'}
    assert run(drop_first, {"e": '{"kind": "open", "id": 1, "v": 2}'},
               unmatched="keep") == {"e": '{"kind": "open", "id": 1, "v": 2}'}


def test_when_compares_json_kinds_not_python_equality():
    rules = [{"path": "$.o", "action": "keep", "when": {"k": [1]}}]
    assert run(rules, {"o": {"k": 1, "x": "y"}}) == {"o": {"k": 1, "x": "y"}}
    assert run(rules, {"o": {"k": True, "secret": "x"}}) == {}
    assert run(rules, {"o": {"k": "1", "secret": "x"}}) == {}
    assert run(rules, {"o": {"k": [1], "secret": "x"}}) == {}


def test_dict_subclasses_cannot_slip_past_inner_rules(keys):
    from collections import OrderedDict
    rules = [{"path": "$.actor", "action": "keep"}, {"path": "$.actor.mbox", "action": "drop"}]
    for sneaky in (OrderedDict(mbox="mailto:a@b.c"), ({"mbox": "mailto:a@b.c"},)):
        with pytest.raises(RecordError) as e:
            run(rules, {"actor": sneaky})
        assert e.value.kind == "not-json" and "a@b.c" not in str(e.value)
