"""diff: what a reviewer must see when a policy change exposes more (or less) data."""

from __future__ import annotations

from typing import Any

from pseudonym.diff import diff
from pseudonym.policy import Policy

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
