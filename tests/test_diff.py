"""diff: what a reviewer must see when a policy change exposes more (or less) data."""

from __future__ import annotations

from typing import Any

import pytest

from pseudonym.diff import diff
from pseudonym.policy import Policy
from tests.dpo_helpers import ROOT

BASE: dict[str, Any] = {"name": "t", "version": "1", "domain": "d"}


def policy(*rules: dict[str, Any], version: str = "1") -> Policy:
    return Policy.from_dict({**BASE, "version": version, "rules": list(rules)})


def review(old: Policy, new: Policy) -> str:
    doc, changed = diff(old, new)
    assert changed
    return doc.markdown()


def section(md: str, title: str) -> str:
    return md.split(f"## {title}")[1].split("\n## ")[0]


def test_keeping_untyped_actors_shows_on_the_known_identifiers():
    """An actor without objectType is an Agent: keeping it keeps a name and an e-mail."""
    old = policy({"path": "$.actor", "action": "drop"})
    new = policy({"path": "$.actor", "action": "keep", "when": {"objectType": [None]}},
                 {"path": "$.actor", "action": "drop"}, version="2")
    known = section(review(old, new), "Known identifiers and free text")
    rows = [line for line in known.splitlines() if line.startswith("| `$.actor.mbox`")]
    assert len(rows) == 1, known
    assert "without objectType" in rows[0] and "drop (rule 1)" in rows[0]
    assert "keep (rule 1)" in rows[0]


def test_a_field_changed_the_same_way_for_typed_and_untyped_agents_shows_once():
    old = policy({"path": "$.actor", "action": "drop"})
    new = policy({"path": "$.actor", "action": "keep"}, version="2")
    known = section(review(old, new), "Known identifiers and free text")
    paths = [line.split(" | ")[0] for line in known.splitlines()
             if line.startswith("| `$.actor")]
    assert "| `$.actor.mbox`" in paths and len(paths) == len(set(paths)), known


def rule_row(md: str, path: str) -> str:
    rows = [line for line in section(md, "Rules").splitlines()
            if line.startswith(f"| `{path}` |")]
    assert len(rows) == 1, md
    return rows[0]


def test_identifying_false_on_usernames_shows_in_rules_and_known_identifiers(tmp_path):
    """The reviewer's case: the edx built-in, its username rules marked not identifying,
    then puts usernames back in clear in page URLs."""
    text = (ROOT / "pseudonym" / "policies" / "edx.yaml").read_text()
    for path in ("$.username", "$.context.username"):
        rule = f"  - path: {path}\n    action: learner_id\n"
        text = text.replace(rule, rule + "    identifying: false\n")
    new = tmp_path / "new.yaml"
    new.write_text(text)
    md = review(Policy.load("edx"), Policy.load(new))
    assert "No rule changed" not in md
    for path in ("$.username", "$.context.username"):
        row = rule_row(md, path)
        old_cell, new_cell = row.split(" | ")[1:3]
        assert "not identifying" not in old_cell and "not identifying" in new_cell
        assert "in clear" in new_cell
    known = section(md, "Known identifiers and free text")
    [row] = [line for line in known.splitlines() if line.startswith("| `$.username` |")]
    assert "| learner_id (rule 1), sought in free text and URLs | learner_id (rule 1), " \
           "not sought in free text and URLs |" in row


def test_learner_id_becoming_hash_shows_the_identifying_loss():
    old = policy({"path": "$.username", "action": "learner_id"},
                 {"path": "$.page", "action": "url"})
    new = policy({"path": "$.username", "action": "hash"},
                 {"path": "$.page", "action": "url"}, version="2")
    row = rule_row(review(old, new), "$.username")
    assert "identifying" in row.split(" | ")[1] and "not identifying" in row.split(" | ")[2]


def test_hash_length_and_prefix_changes_are_shown_in_words():
    old = policy({"path": "$.actor.mbox", "action": "hash"})
    new = policy({"path": "$.actor.mbox", "action": "hash",
                  "options": {"length": 16, "prefix": "u-"}}, version="2")
    row = rule_row(review(old, new), "$.actor.mbox")
    old_cell, new_cell = row.split(" | ")[1:3]
    assert "32 characters" in old_cell and "16 characters" in new_cell
    assert "no prefix" in old_cell and '"u-"' in new_cell
    bits = policy({"path": "$.actor.mbox", "action": "hash",
                   "options": {"encoding": "integer", "bits": 32}})
    wider = policy({"path": "$.actor.mbox", "action": "hash",
                    "options": {"encoding": "integer", "bits": 63}}, version="2")
    row = rule_row(review(bits, wider), "$.actor.mbox")
    assert "32-bit" in row.split(" | ")[1] and "63-bit" in row.split(" | ")[2]


def test_encrypt_normalise_change_is_shown():
    old = policy({"path": "$.actor.mbox", "action": "encrypt"})
    new = policy({"path": "$.actor.mbox", "action": "encrypt",
                  "options": {"normalise": ["strip", "lower"]}}, version="2")
    row = rule_row(review(old, new), "$.actor.mbox")
    old_cell, new_cell = row.split(" | ")[1:3]
    assert "strip, lower" in new_cell and "strip" not in old_cell
    assert old_cell != new_cell


def test_a_change_of_why_alone_still_shows_and_moved_rules_do_not():
    a = policy({"path": "$.verb.id", "action": "keep", "why": "what"},
               {"path": "$.actor.mbox", "action": "hash"})
    moved = policy({"path": "$.actor.mbox", "action": "hash"},
                   {"path": "$.verb.id", "action": "keep", "why": "what"}, version="2")
    assert "No rule changed its treatment" in section(review(a, moved), "Rules")
    reasoned = policy({"path": "$.verb.id", "action": "keep", "why": "the verb"},
                      {"path": "$.actor.mbox", "action": "hash"}, version="2")
    assert "(was: what)" in rule_row(review(a, reasoned), "$.verb.id")


@pytest.mark.parametrize(("action", "before", "after"), [
    ("hash", {}, {"length": 40}),
    ("hash", {"prefix": "a-"}, {"prefix": "b-"}),
    ("hash", {"encoding": "base32"}, {"encoding": "base32", "length": 20}),
    ("learner_id", {}, {"prefix": "u"}),
    ("encrypt", {"normalise": ["lower"]}, {"normalise": ["lower", "strip"]}),
    ("generalise", {"kind": "ip"}, {"kind": "ip", "ipv6_prefix": 32}),
    ("scrub", {}, {"replace": "pseudonym"}),
])
def test_every_option_change_shows_in_the_treatments(action, before, after):
    old = policy({"path": "$.x", "action": action, "options": before})
    new = policy({"path": "$.x", "action": action, "options": after}, version="2")
    old_cell, new_cell = rule_row(review(old, new), "$.x").split(" | ")[1:3]
    assert old_cell != new_cell


@pytest.mark.parametrize("after", [{"kind": "number", "bounds": [18, 30, 40]},
                                   {"kind": "number", "width": 10}])
def test_generalise_by_number_diffs_without_crashing(after):
    """Found by review: putting one option back to its default, to see whether the
    treatment mentions it, made an invalid generalise (neither bounds nor width) and
    crashed the command (exit 70)."""
    before = {"kind": "number", "bounds": [18, 25, 35]}
    old = policy({"path": "$.age", "action": "generalise", "options": before})
    new = policy({"path": "$.age", "action": "generalise", "options": after},
                 {"path": "$.n", "action": "generalise", "options": {"kind": "number",
                                                                      "width": 5}}, version="2")
    rules = section(review(old, new), "Rules")
    assert "bounds 18, 25, 35" in rules and "`$.n`" in rules


def test_a_field_taken_over_by_another_rule_of_the_same_action_shows():
    """A new rule decides the mailbox instead of the reviewed one: same action (hash), but
    no normalisation and a shorter pseudonym. The field table compared action names only,
    so the mailbox was not listed."""
    old = policy({"path": "$.actor.mbox", "action": "hash",
                  "options": {"normalise": ["strip", "lower"]}})
    new = policy({"path": "$['actor']['mbox', 'name']", "action": "hash",
                  "options": {"length": 16}},
                 {"path": "$.actor.mbox", "action": "hash",
                  "options": {"normalise": ["strip", "lower"]}}, version="2")
    known = section(review(old, new), "Known identifiers and free text")
    rows = [line for line in known.splitlines() if line.startswith("| `$.actor.mbox`")]
    assert rows, known
    assert "16 characters" in rows[0] and "after strip, lower" in rows[0]


def test_the_same_treatment_under_another_rule_number_does_not_show():
    rule = {"path": "$.actor.mbox", "action": "hash"}
    old = policy(rule)
    new = policy({"path": "$.verb", "action": "keep"}, rule, version="2")
    known = section(review(old, new), "Known identifiers and free text")
    assert "$.actor.mbox" not in known
