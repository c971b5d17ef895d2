"""Every lint finding, each shown by a deliberately bad policy under tests/policies/bad."""

from __future__ import annotations

import json

import pytest

from pseudonym import KeyRing, MasterKey, anonymise
from pseudonym.lint import CODES, exit_status, lint
from pseudonym.policy import Policy
from tests.dpo_helpers import BAD, EXAMPLE, ROOT, run_cli

KEYS = KeyRing([MasterKey.generate()])

# bad policy -> codes it must raise
EXPECTED = {
    "header-missing": {"missing-controller", "missing-dpo-contact", "missing-purpose",
                       "missing-legal-basis", "missing-retention", "missing-recipients"},
    "unmatched-keep": {"unmatched-keep", "identifier-kept", "free-text-kept"},
    "identifier-kept": {"identifier-kept"},
    "free-text": {"free-text-kept"},
    "encrypt-without-reidentification": {"encrypt-without-reidentification"},
    "hash-with-reidentification": {"hash-with-reidentification"},
    "rule-without-why": {"rule-without-why"},
    "overlapping-rules": {"overlapping-rules"},
    "unreachable-rule": {"unreachable-rule"},
    "identifying-false": {"identifying-false"},
    "identifier-not-identifying": {"identifier-not-identifying"},
}


def codes(name: str) -> set[str]:
    return {f.code for f in lint(Policy.load(BAD / f"{name}.yaml"))}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_bad_policy_raises_exactly_its_findings(name):
    assert codes(name) == EXPECTED[name]


def test_every_finding_is_covered_by_a_bad_policy():
    covered = set().union(*EXPECTED.values()) | {"invalid"}
    assert covered == set(CODES)


def test_every_finding_cites_gdpr_or_edpb():
    for code, (_, basis) in CODES.items():
        if code != "invalid":
            assert "GDPR Art." in basis or "EDPB Guidelines 01/2025" in basis, code


def test_example_policy_is_clean():
    assert lint(Policy.load(EXAMPLE)) == []


def test_kept_identifier_names_rule_line_and_path():
    found = [f for f in lint(Policy.load(BAD / "identifier-kept.yaml"))
             if f.path == "$.actor.mbox"]
    assert len(found) == 1
    f = found[0]
    assert (f.severity, f.rule, f.line) == ("error", 1, 12)
    # the hashed account name is not reported: a more specific rule treats it
    assert not [f for f in lint(Policy.load(BAD / "identifier-kept.yaml"))
                if f.path == "$.actor.account.name"]


def test_condition_on_object_type_protects_agent_objects():
    base = {"name": "t", "version": "1", "domain": "d"}
    unsafe = Policy.from_dict({**base, "rules": [{"path": "$.object", "action": "keep"}]})
    safe = Policy.from_dict({**base, "rules": [
        {"path": "$.object", "action": "drop", "when": {"objectType": ["Agent", "Group"]}},
        {"path": "$.object", "action": "keep"}]})
    assert "$.object.mbox" in {f.path for f in lint(unsafe)}
    assert "$.object.mbox" not in {f.path for f in lint(safe)}


def test_sub_statement_agents_are_known_identifiers():
    """A SubStatement object holds its own actor: keep on $.object kept its e-mail address
    in clear, and check (the shipped example policy too) said nothing."""
    base = {"name": "t", "version": "1", "domain": "d"}
    persons = {"path": "$.object", "action": "drop", "when": {"objectType": ["Agent", "Group"]}}
    unsafe = Policy.from_dict({**base, "rules": [persons, {"path": "$.object", "action": "keep"}]})
    sub = {"objectType": "SubStatement", "actor": {"mbox": "mailto:ada@example.org"},
           "verb": {"id": "v"}, "object": {"id": "a"}}
    assert anonymise({"object": sub}, unsafe)["object"]["actor"] == sub["actor"]
    found = {f.path for f in lint(unsafe) if f.code == "identifier-kept"}
    assert {"$.object.actor.mbox", "$.object.object.mbox",
            "$.object.context.instructor.mbox"} <= found
    safe = Policy.from_dict({**base, "rules": [
        {**persons, "when": {"objectType": ["Agent", "Group", "SubStatement"]}},
        {"path": "$.object", "action": "keep"}]})
    assert not [f for f in lint(safe) if f.code == "identifier-kept"]


def test_xapi2_context_agents_are_known_identifiers():
    """keep on $.context kept an xAPI 2.0 context agent's e-mail address in clear, and check
    passed it as long as the instructor and team had their agent rules."""
    agent = {"action": "agent", "options": {"home_page": "https://example.org"}}
    rules = [{"path": "$.actor", **agent}, {"path": "$.context", "action": "keep"},
             {"path": "$.context['instructor', 'team']", **agent}]
    p = Policy.from_dict({"name": "t", "version": "1", "domain": "d", "rules": rules})
    peer = {"mbox": "mailto:peer@example.org"}
    rec = {"context": {"contextAgents": [{"objectType": "contextAgent", "agent": peer}]}}
    assert anonymise(rec, p, keys=KEYS)["context"]["contextAgents"][0]["agent"] == peer
    found = {f.path for f in lint(p) if f.code == "identifier-kept"}
    assert {"$.context.contextAgents[0].agent.mbox",
            "$.context.contextGroups[0].group.member[0].mbox"} <= found
    fixed = [*rules, {"path": "$.context.contextAgents[*].agent", **agent},
             {"path": "$.context.contextGroups[*].group", **agent}]
    p = Policy.from_dict({"name": "t", "version": "1", "domain": "d", "rules": fixed})
    assert not [f for f in lint(p) if f.code == "identifier-kept"]


@pytest.mark.parametrize(("rule", "record", "code"), [
    ({"path": "$.ip", "action": "ipv4_prefix", "options": {"prefix": 32}},
     {"ip": "192.0.2.17"}, "identifier-kept"),
    ({"path": "$.ip", "action": "generalise", "options": {"kind": "ip", "ipv6_prefix": 128}},
     {"ip": "2001:db8::17"}, "identifier-kept"),
    ({"path": "$.event.body", "action": "scrub", "options": {"detectors": [], "record": False}},
     {"event": {"body": "write to ada@example.org"}}, "free-text-kept"),
])
def test_a_treatment_that_changes_nothing_counts_as_keep(rule, record, code):
    """These rules give the value back as it was (an IPv6 address, under generalise), and
    check passed them as if the field were treated."""
    def policy(r):
        return Policy.from_dict({"name": "t", "version": "1", "domain": "d", "rules": [
            {"path": "$.username", "action": "learner_id"}, r]})
    assert anonymise(record, policy(rule), keys=KEYS) == record
    [f] = [f for f in lint(policy(rule)) if f.code == code]
    assert (f.path, f.rule) == (rule["path"], 2)
    defaults = {**rule, "options": {"kind": "ip"} if rule["action"] == "generalise" else {}}
    assert not [f for f in lint(policy(defaults)) if f.code == code]


def test_overlap_reports_winner():
    [f] = [f for f in lint(Policy.load(BAD / "overlapping-rules.yaml"))
           if f.code == "overlapping-rules"]
    assert "rule 1 wins" in f.message and f.rule == 2


def test_exit_status_rules():
    warn = lint(Policy.load(BAD / "rule-without-why.yaml"))
    err = lint(Policy.load(BAD / "identifier-kept.yaml"))
    assert exit_status([], True) == 0
    assert exit_status(warn, False) == 0
    assert exit_status(warn, True) == 2
    assert exit_status(err, False) == 1 and exit_status(err, True) == 1


# -- the command ----------------------------------------------------------------------------
def test_check_cli_exit_codes():
    assert run_cli("check", str(EXAMPLE), "--strict").returncode == 0
    assert run_cli("check", str(BAD / "rule-without-why.yaml")).returncode == 0
    assert run_cli("check", str(BAD / "rule-without-why.yaml"), "--strict").returncode == 2
    assert run_cli("check", str(BAD / "identifier-kept.yaml")).returncode == 1
    r = run_cli("check", str(BAD / "invalid.yaml"))
    assert r.returncode == 1
    assert b"invalid.yaml:12, rule 1, field 'action'" in r.stderr


def test_check_cli_text_cites_basis_and_place():
    r = run_cli("check", str(BAD / "encrypt-without-reidentification.yaml"))
    line = r.stdout.decode().splitlines()[0]
    assert line.startswith(f"{BAD / 'encrypt-without-reidentification.yaml'}:12: rule 1: "
                           "error [encrypt-without-reidentification]")
    assert "Art. 25(2)" in line


def test_check_cli_json():
    r = run_cli("check", "--format", "json", "--strict", str(BAD / "header-missing.yaml"))
    assert r.returncode == 2
    out = json.loads(r.stdout)
    assert out["valid"] and out["errors"] == 0 and out["warnings"] == 6
    assert {f["code"] for f in out["findings"]} == EXPECTED["header-missing"]
    assert all(f["basis"].startswith("GDPR") for f in out["findings"])
    r = run_cli("check", "--format", "json", str(BAD / "invalid.yaml"))
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert not out["valid"] and out["findings"][0]["code"] == "invalid"


def test_json_policy_findings_name_their_rule_and_line(tmp_path):
    p = tmp_path / "p.json"
    p.write_text(json.dumps({"name": "j", "version": "1", "domain": "d", "rules": [
        {"path": "$.id", "action": "keep", "why": "statement id"},
        {"path": "$.actor", "action": "keep", "why": "who"}]}, indent=2))
    found = lint(Policy.load(p))
    kept = [f for f in found if f.code == "identifier-kept"]
    line = next(n for n, text in enumerate(p.read_text().splitlines(), 1) if "$.actor" in text)
    assert kept and all(f.rule == 2 and f.line == line - 1 for f in kept)


def test_rules_below_a_json_field_are_reachable():
    """A decoding action (json) lets the rules below it apply: they are not shadowed."""
    policy = Policy.from_dict({"name": "t", "version": "1", "domain": "d", "rules": [
        {"path": "$.event", "action": "json", "why": "JSON text"},
        {"path": "$.event.username", "action": "hash", "why": "who"},
        {"path": "$.event.body", "action": "keep", "why": "text"}]})
    found = {(f.code, f.rule) for f in lint(policy)}
    assert not [c for c, _ in found if c == "unreachable-rule"]
    assert ("free-text-kept", 3) in found
    # the same rules under a value-replacing action are shadowed
    shadowed = Policy.from_dict({"name": "t", "version": "1", "domain": "d", "rules": [
        {"path": "$.event", "action": "redact", "why": "gone"},
        {"path": "$.event.body", "action": "keep", "why": "text"}]})
    assert ("unreachable-rule", 2) in {(f.code, f.rule) for f in lint(shadowed)}


def test_actor_without_object_type_is_an_agent():
    """xAPI makes objectType optional on an Agent: a rule keeping an actor that has none
    keeps a person's name and e-mail address."""
    policy = Policy.from_dict({"name": "t", "version": "1", "domain": "d", "rules": [
        {"path": "$.actor", "action": "keep", "when": {"objectType": [None]}, "why": "who"},
        {"path": "$.actor", "action": "drop", "why": "who"}]})
    kept = {(f.path, f.rule) for f in lint(policy) if f.code == "identifier-kept"}
    assert {("$.actor.name", 1), ("$.actor.mbox", 1)} <= kept
    for where in ("$.context.instructor", "$.authority"):
        untyped = Policy.from_dict({"name": "t", "version": "1", "domain": "d", "rules": [
            {"path": where, "action": "keep", "when": {"objectType": [None]}, "why": "who"},
            {"path": "$.actor", "action": "drop", "why": "who"}]})
        assert f"{where}.mbox" in {f.path for f in lint(untyped)}


def test_untyped_and_typed_agents_kept_by_one_rule_are_reported_once():
    policy = Policy.from_dict({"name": "t", "version": "1", "domain": "d", "rules": [
        {"path": "$.actor", "action": "keep", "why": "who"}]})
    paths = [f.path for f in lint(policy) if f.code == "identifier-kept"]
    assert len(paths) == len(set(paths)) and "$.actor.mbox" in paths


def test_identifying_false_on_an_identifier_names_rule_and_line():
    [f] = lint(Policy.load(BAD / "identifying-false.yaml"))
    assert (f.severity, f.rule, f.line, f.path) == ("error", 1, 12, "$.username")
    assert "identifying: false" in f.message and "url" in f.message


def test_an_identifier_no_identifying_rule_reaches_is_an_error_until_marked(tmp_path):
    """Hashed by a rule that is not identifying, a username stays in clear in the URLs
    and free text that mention it; marked identifying: true, it is removed there too."""
    [f] = lint(Policy.load(BAD / "identifier-not-identifying.yaml"))
    assert (f.severity, f.rule, f.line, f.path) == ("error", 2, 16, "$.event.username")
    assert "$.event.username" in f.message and "mark rule 2 identifying: true" in f.message
    text = (BAD / "identifier-not-identifying.yaml").read_text()
    event = {"username": "anne", "event": {"username": "jdupont42"},
             "page": "https://lms.example.org/courses/course-v1:FUN+1+1/notes/jdupont42/"}
    before = anonymise(event, Policy.from_text(text), keys=KEYS)
    assert "jdupont42" in before["page"]
    fixed = text.replace("    action: hash\n", "    action: hash\n    identifying: true\n")
    assert lint(Policy.from_text(fixed)) == []
    after = anonymise(event, Policy.from_text(fixed), keys=KEYS)
    assert "jdupont42" not in json.dumps(after)


def test_unnamed_identifiers_are_reported_once_for_unmatched(tmp_path):
    policy = Policy.from_dict({"name": "t", "version": "1", "domain": "d", "rules": [
        {"path": "$.username", "action": "learner_id", "why": "who"},
        {"path": "$.page", "action": "url", "why": "where"}]})
    [f] = [f for f in lint(policy) if f.code == "identifier-not-identifying"]
    assert f.rule is None and "unmatched: drop" in f.message
    assert "$.context.username" in f.message and "$.ip" in f.message
    assert "identifier-not-identifying" not in {f.code for f in lint(Policy.load("edx"))}


def test_a_rule_enclosing_identifiers_is_not_the_one_to_mark(tmp_path):
    """Marked identifying, a rule dropping the whole payload would make every value in it
    an identifier (a position 1 would erase /1/ from URLs): the finding asks for rules
    naming the identifiers instead, and these are enough."""
    rules = [{"path": "$.username", "action": "learner_id", "why": "who"},
             {"path": "$.page", "action": "url", "why": "where"},
             {"path": "$.event", "action": "drop", "why": "payload"},
             {"path": "$['ip', 'context']", "action": "drop", "identifying": True,
              "why": "the rest"}]
    head = {"name": "t", "version": "1", "domain": "d"}
    [f] = [f for f in lint(Policy.from_dict({**head, "rules": rules}))
           if f.code == "identifier-not-identifying"]
    assert f.rule == 3 and "mark rule 3" not in f.message
    assert "name them in rules marked identifying: true" in f.message
    assert "not rule 3: it encloses them" in f.message
    named = {"path": "$.event['username', 'user_id', 'email']", "action": "drop",
             "identifying": True, "why": "who, in the payload"}
    fixed = Policy.from_dict({**head, "rules": [*rules, named]})
    assert "identifier-not-identifying" not in {f.code for f in lint(fixed)}
    event = {"username": "anne", "event": {"username": "jdupont", "chapter": 1},
             "page": "https://lms.example.org/courses/c/chapter/1/jdupont/"}
    assert anonymise(event, fixed, keys=KEYS)["page"].endswith("/chapter/1/_user_/")


def test_date_shift_alone_does_not_ask_for_identifying_rules():
    """date_shift is record-aware (it reads the learner) but removes no identifier from
    text: a policy without scrub or url rules has nothing for identifying rules to serve."""
    policy = Policy.from_dict({"name": "t", "version": "1", "domain": "d", "rules": [
        {"path": "$.username", "action": "learner_id", "why": "who"},
        {"path": "$.time", "action": "date_shift",
         "options": {"learner": "$.username", "days": 30}, "why": "when"}]})
    assert "identifier-not-identifying" not in {f.code for f in lint(policy)}


def test_identifying_false_on_agents_and_builtin_copies_is_an_error(tmp_path):
    """The reviewer's case: the edx built-in with usernames marked not identifying."""
    edx = (ROOT / "pseudonym" / "policies" / "edx.yaml").read_text()
    for path in ("$.username", "$.context.username"):
        rule = f"  - path: {path}\n    action: learner_id\n"
        assert rule in edx
        edx = edx.replace(rule, rule + "    identifying: false\n")
    p = tmp_path / "edx.yaml"
    p.write_text(edx)
    found = [f for f in lint(Policy.load(p)) if f.code == "identifying-false"]
    assert [(f.rule, f.path) for f in found] == [(1, "$.username"), (2, "$.context.username")]
    assert run_cli("check", str(p)).returncode == 1
    agent = Policy.from_dict({"name": "t", "version": "1", "domain": "d", "rules": [
        {"path": "$.actor", "action": "agent", "identifying": False, "why": "who",
         "options": {"home_page": "https://example.org"}}]})
    assert "identifying-false" in {f.code for f in lint(agent)}
    stated = Policy.from_dict({"name": "t", "version": "1", "domain": "d", "rules": [
        {"path": "$.actor", "action": "agent", "identifying": True, "why": "who",
         "options": {"home_page": "https://example.org"}},
        {"path": "$.verb.id", "action": "keep", "identifying": False, "why": "what"}]})
    assert "identifying-false" not in {f.code for f in lint(stated)}
