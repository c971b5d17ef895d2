"""Places in JSON policies: errors name the line of what they are about, whatever the
layout, and reading places never changes what loads."""

from __future__ import annotations

import json
import random

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pseudonym import Policy, PolicyError
from pseudonym.jsonplaces import compose

_SETTINGS = settings(max_examples=200, deadline=None, database=None,
                     suppress_health_check=list(HealthCheck))
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6)
_VALUE = st.recursive(st.none() | st.booleans() | st.integers() | _TEXT
                      | st.floats(allow_nan=False, allow_infinity=False),
                      lambda k: st.lists(k, max_size=3) | st.dictionaries(_TEXT, k, max_size=3),
                      max_leaves=12)
_SPACES = ["", " ", "\t", "\n", "\r\n", " \n\t"]


def laid_out(value, seed: int, ensure_ascii: bool) -> str:
    """``value`` as JSON with random spaces, tabs and line ends between tokens."""
    r = random.Random(seed)
    text = json.dumps(value, ensure_ascii=ensure_ascii)
    out, in_string, escaped = [], False, False
    for c in text:
        out.append(c)
        if in_string:
            in_string = escaped or c != '"'
            escaped = not escaped and c == "\\"
        elif c == '"':
            in_string = True
        elif c in "{[,:":
            out.append(r.choice(_SPACES))
    return r.choice(_SPACES) + "".join(out) + r.choice(_SPACES)


def read_back(node, text: str):
    """The value the places describe, each checked to start where its line says."""
    assert node.start_mark.line == text.count("\n", 0, node.start_mark.index)
    if isinstance(node, yaml.MappingNode):
        assert text[node.start_mark.index] == "{"
        for k, _ in node.value:
            assert k.start_mark.line == text.count("\n", 0, k.start_mark.index)
        return {k.value: read_back(v, text) for k, v in node.value}
    if isinstance(node, yaml.SequenceNode):
        assert text[node.start_mark.index] == "["
        return [read_back(v, text) for v in node.value]
    return node.value if text[node.start_mark.index] == '"' else json.loads(node.value)


@_SETTINGS
@given(value=_VALUE, seed=st.integers(), ensure_ascii=st.booleans())
def test_places_are_those_of_the_values_json_reads(value, seed, ensure_ascii):
    text = laid_out(value, seed, ensure_ascii)
    assert read_back(compose(text), text) == json.loads(text)


@_SETTINGS
@given(extra=st.dictionaries(_TEXT, _VALUE, max_size=2), rule=st.dictionaries(
    st.sampled_from(["path", "action", "options", "when", "why", "note"]), _VALUE, max_size=4),
    seed=st.integers(), ensure_ascii=st.booleans())
def test_a_json_policy_loads_as_its_data_and_each_problem_names_its_line(
        extra, rule, seed, ensure_ascii):
    data = {"name": "p", "version": "1", "domain": "d", **extra,
            "rules": [{"path": "$.a", "action": "keep"}, rule]}
    text = laid_out(data, seed, ensure_ascii)
    try:
        expected = Policy.from_dict(data).sha256
    except PolicyError as e:
        expected = {(p.rule, p.field, p.reason) for p in e.problems}
    try:
        got = Policy.from_text(text, json_syntax=True).sha256
    except PolicyError as e:
        got = {(p.rule, p.field, p.reason) for p in e.problems}
        lines = text.split("\n")
        for p in e.problems:
            assert p.line is not None, str(p)
            named = rule if p.rule == 2 else data if p.rule is None else {}
            if p.field in named:  # a field itself (unknown, or a bad value): its key's line
                assert json.dumps(p.field, ensure_ascii=ensure_ascii) in lines[p.line - 1]
    assert got == expected
