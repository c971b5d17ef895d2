"""Built-in policies are signable: allow-lists, a full Art. 30 header, a why on every rule."""

from __future__ import annotations

import pytest

from pseudonym import Policy
from pseudonym.engine import compile_plan
from pseudonym.policy import builtin_names


@pytest.mark.parametrize("name", ["xapi", "edx"])
def test_builtin_policy_is_complete(name, keys):
    assert name in builtin_names()
    policy = Policy.load(name)
    m = policy.model
    assert m.unmatched == "drop"
    for field in ("description", "controller", "dpo_contact", "purpose", "legal_basis",
                  "retention"):
        assert getattr(m, field), field
    assert m.reidentification is None, "one-way pseudonyms only: no re-identification need"
    assert not any(policy.rules[i].action == "encrypt" for i in range(len(m.rules)))
    assert m.recipients
    for i, rule in enumerate(m.rules, 1):
        assert rule.why and len(rule.why) > 20 and "placeholder" not in rule.why, i
    plan = compile_plan(policy, keys)
    assert all(r.alternatives is not None for r in plan.rules), "no per-record JSONPath"
