"""explain, diff, audit report, lookup and reidentify, through the real command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pseudonym.policy import builtin_names
from tests.dpo_helpers import EXAMPLE, TRACES, key_env, run_cli

POLICIES = [str(EXAMPLE), *builtin_names()]

CONTACT = """\
name: follow-up
version: "1"
controller: FUN
dpo_contact: dpo@example.org
purpose: Contact learners who agreed to a follow-up interview.
legal_basis: consent
retention: 6 months
recipients: [study team]
domain: follow-up-2026
reidentification: The study team contacts learners who consented to an interview.
rules:
  - path: $.actor.account.name
    action: encrypt
    why: Reversed only for learners who consented to be contacted.
  - path: $.verb.id
    action: keep
    why: What the learner did.
"""


def first_trace() -> dict:
    return json.loads(TRACES.read_text().splitlines()[0])


@pytest.mark.parametrize("policy", POLICIES)
def test_check_and_explain_work_on_shipped_policies(policy):
    r = run_cli("check", policy)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    r = run_cli("explain", policy)
    assert r.returncode == 0
    assert "## Treatment of each field" in r.stdout.decode()


def test_explain_markdown_rows_follow_rules():
    md = run_cli("explain", str(EXAMPLE)).stdout.decode()
    assert "| Legal basis | public_task (GDPR Art. 6(1)(e)) |" in md
    row = next(line for line in md.splitlines() if line.startswith("| 4 |"))
    assert "`$.actor.account.name`" in row and "keyed one-way pseudonym" in row
    assert "| no | yes | no (keyed per domain) |" in row
    ts = next(line for line in md.splitlines() if line.startswith("| 14 |"))
    assert "timestamp truncated to the minute" in ts
    assert "any other field" in md and "removed (allow-list" in md


def test_explain_states_number_buckets_exactly():
    """The signed document said 1.23457e+06 for a bound of 1234567, and "a multiple of 10"
    for buckets starting at 5 (17 becomes 15)."""
    from pseudonym.explain import explain
    from pseudonym.policy import Policy
    policy = Policy.from_dict({"name": "t", "version": "1", "domain": "d", "rules": [
        {"path": "$.d", "action": "generalise",
         "options": {"kind": "number", "bounds": [60, 1234567]}},
        {"path": "$.a", "action": "generalise",
         "options": {"kind": "number", "width": 10, "origin": 5}}]})
    md = explain(policy).render("md")
    assert "bounds 60, 1234567)" in md
    assert "number rounded down to 5 plus a multiple of 10" in md


def test_explain_sample_attributes_changes(tmp_path):
    r = run_cli("explain", str(EXAMPLE), "--sample", str(TRACES), env=key_env())
    assert r.returncode == 0
    md = r.stdout.decode()
    assert "Pseudonyms below were made with the given key" in md
    table = md.split("Changed fields")[1]
    assert "| `$.actor.account.name` | hash | rule 4 (`hash` `$.actor.account.name`) |" in table
    assert ("| `$.context.extensions['https://w3id.org/xapi/video/extensions/user-agent']` "
            "| removed | `unmatched: drop` |") in table
    after = md.split("After:")[1]
    assert "learner-0000" not in after and "Mozilla" not in after


def test_explain_html_is_a_standalone_page(tmp_path):
    out = tmp_path / "p.html"
    r = run_cli("explain", str(EXAMPLE), "--format", "html", "--sample", str(TRACES),
                "-o", str(out))
    assert r.returncode == 0 and r.stdout == b""
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "<td><code>$.actor.account.name</code></td>" in html
    assert "throwaway key" in html


def test_diff_shows_changed_treatments(tmp_path):
    same = run_cli("diff", str(EXAMPLE), str(EXAMPLE))
    assert same.returncode == 0 and b"identical" in same.stdout
    text = EXAMPLE.read_text()
    new = tmp_path / "new.yaml"
    new.write_text(text.replace("domain: fun-research-video-2026", "domain: other")
                   .replace("  - path: $.actor.mbox\n    action: hash\n"
                            "    options: {encoding: uuid, normalise: [strip, lower]}",
                            "  - path: $.actor.mbox\n    action: keep")
                   .replace("unit: minute", "unit: hour"))
    r = run_cli("diff", str(EXAMPLE), str(new))
    assert r.returncode == 1
    md = r.stdout.decode()
    assert "| domain | fun-research-video-2026 | other |" in md
    assert "cannot be linked" in md
    assert ("| `$.timestamp` | timestamp truncated to the minute | timestamp truncated to the "
            "hour |") in md
    assert "| `$.actor.mbox` | actor: e-mail address (mailto: IRI) | hash (rule 5) | " \
           "keep (rule 5) |" in md


def test_lookup_finds_the_pseudonyms_anonymise_wrote(tmp_path):
    env = key_env()
    audit = tmp_path / "audit.jsonl"
    out = tmp_path / "out.jsonl"
    r = run_cli("anonymise", "--policy", str(EXAMPLE), "--input", str(TRACES), "--output",
                str(out), "--audit", str(audit), env=env)
    assert r.returncode == 0, r.stderr
    r = run_cli("lookup", "--policy", str(EXAMPLE), "--reason", "DSR-1 Art. 15",
                "--audit", str(audit), "--format", "json", "learner-0000", env=env)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    mine = next(x["pseudonym"] for x in rows if x["path"] == "$.actor.account.name")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    sources = [json.loads(line) for line in TRACES.read_text().splitlines()]
    expected = sum(1 for s in sources
                   if s["actor"].get("account", {}).get("name") == "learner-0000")
    found = [x for x in records if x["actor"].get("account", {}).get("name") == mine]
    assert expected >= 1 and len(found) == expected
    entry = json.loads(audit.read_text().splitlines()[-1])
    assert entry["entry"] == "lookup" and entry["reason"] == "DSR-1 Art. 15"
    assert len(entry["identifier_digest"]) == 64
    assert "learner-0000" not in audit.read_text()
    assert run_cli("audit", "verify", str(audit)).returncode == 0


def test_lookup_covers_older_keys_and_needs_reason_and_key(tmp_path):
    from pseudonym.keys import MasterKey
    old, new = MasterKey.generate(), MasterKey.generate()
    env = {"PSEUDONYM_KEY": f"{new.text}\n{old.text}"}
    audit = tmp_path / "a.jsonl"
    r = run_cli("lookup", "-p", str(EXAMPLE), "--reason", "r", "-a", str(audit), "x", env=env)
    lines = r.stdout.decode().splitlines()
    assert any(f"key {old.key_id} (older key)" in line for line in lines)
    assert any(f"key {new.key_id}\t" in line for line in lines)
    assert run_cli("lookup", "-p", str(EXAMPLE), "-a", str(audit), "x", env=env).returncode == 2
    r = run_cli("lookup", "-p", str(EXAMPLE), "--reason", "r", "-a", str(audit), "x")
    assert r.returncode == 2 and b"no key" in r.stderr


def test_reidentify_reverses_and_audits_without_clear_values(tmp_path):
    env = key_env()
    policy = tmp_path / "contact.yaml"
    policy.write_text(CONTACT)
    audit = tmp_path / "audit.jsonl"
    r = run_cli("anonymise", "--policy", str(policy), env=env,
                stdin=json.dumps(first_trace()).encode() + b"\n")
    token = json.loads(r.stdout)["actor"]["account"]["name"]
    assert token.startswith("pse1.")
    r = run_cli("reidentify", "--policy", str(policy), "--reason", "consented, ticket 881",
                "--audit", str(audit), token, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == "learner-0000"
    log = audit.read_text()
    assert token not in log and "learner-0000" not in log
    entry = json.loads(log)
    assert entry["entry"] == "reidentify" and entry["outcome"] == "ok"
    # another key cannot open it, and the failure is audited too
    r = run_cli("reidentify", "--policy", str(policy), "--reason", "x", "--audit", str(audit),
                token, env=key_env())
    assert r.returncode == 2 and b"learner" not in r.stderr
    assert json.loads(audit.read_text().splitlines()[-1])["outcome"] == "failed"


def test_audit_report(tmp_path):
    env = key_env()
    audit = tmp_path / "audit.jsonl"
    for _ in range(2):
        run_cli("anonymise", "-p", str(EXAMPLE), "-i", str(TRACES), "-o", str(tmp_path / "o"),
                "-a", str(audit), env=env)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(TRACES.read_bytes() + b"not json\n")
    run_cli("anonymise", "-p", str(EXAMPLE), "-i", str(bad), "-o", str(tmp_path / "o"),
            "-a", str(audit), env=env)
    run_cli("lookup", "-p", str(EXAMPLE), "--reason", "DSR-7 erasure", "-a", str(audit),
            "learner-0001", env=env)
    n = len(TRACES.read_text().splitlines())
    r = run_cli("audit", "report", str(audit))
    assert r.returncode == 0, r.stderr
    md = r.stdout.decode()
    assert "The log verifies: intact: 4 entries" in md
    row = next(line for line in md.splitlines() if line.startswith("| `video-research` 1.1"))
    cells = [c.strip() for c in row.split("|")]
    assert cells[5:10] == ["3 (3 completed)", str(3 * n + 1), str(3 * n), "1",
                           "invalid-json: 1"]
    assert "| lookup | `video-research` 1.1 |" in md and "DSR-7 erasure" in md
    html = run_cli("audit", "report", str(audit), "--format", "html").stdout.decode()
    assert "<h2>Lookups and re-identifications</h2>" in html
    lines = audit.read_text().splitlines()
    Path(audit).write_text("\n".join([lines[0], lines[2], lines[1], lines[3]]) + "\n")
    r = run_cli("audit", "report", str(audit))
    assert r.returncode == 1 and "does not verify" in r.stdout.decode()


@pytest.mark.parametrize("line", [b'{"entry":"run","records":{"read":"x"}}',
                                  b'{"entry":"run","policy":"xapi"}',
                                  b'{"entry":"run","keys":["k"]}', b'{"entry":["run"]}'])
def test_audit_report_on_a_tampered_log_says_it_does_not_verify(tmp_path, line):
    audit = tmp_path / "audit.jsonl"
    r = run_cli("anonymise", "-p", str(EXAMPLE), "-i", str(TRACES), "-o", str(tmp_path / "o"),
                "-a", str(audit), env=key_env())
    assert r.returncode == 0, r.stderr
    audit.write_bytes(audit.read_bytes() + line + b"\n")
    r = run_cli("audit", "report", str(audit))
    assert r.returncode == 1 and r.stderr == b""
    md = r.stdout.decode()
    assert "**The log does not verify**: broken at entry 2" in md
    assert "| 2 | ? |" in md.split("## Unverified entries")[1]


def test_lookup_reads_stdin_and_matches_encrypt_tokens(tmp_path):
    env = key_env()
    policy = tmp_path / "contact.yaml"
    policy.write_text(CONTACT)
    r = run_cli("anonymise", "--policy", str(policy), env=env,
                stdin=json.dumps(first_trace()).encode() + b"\n")
    token = json.loads(r.stdout)["actor"]["account"]["name"]
    audit = tmp_path / "a.jsonl"
    r = run_cli("lookup", "-p", str(policy), "--reason", "DSR-3", "-a", str(audit),
                "--format", "json", "-", env=env, stdin=b"learner-0000\n")
    assert r.returncode == 0, r.stderr
    [row] = json.loads(r.stdout)
    assert row["action"] == "encrypt" and row["pseudonym"] == token
    r = run_cli("reidentify", "-p", str(policy), "--reason", "DSR-3", "-a", str(audit), "-",
                env=env, stdin=token.encode())
    assert json.loads(r.stdout) == "learner-0000"
    assert "learner-0000" not in audit.read_text() and token not in audit.read_text()


def test_lookup_json_identifier_matches_integer_user_ids(tmp_path):
    env = key_env()
    policy = tmp_path / "edx.yaml"
    policy.write_text("name: e\nversion: '1'\ndomain: d\nrules:\n"
                      "  - {path: $.context.user_id, action: hash, why: user}\n")
    r = run_cli("anonymise", "-p", str(policy), env=env,
                stdin=b'{"context": {"user_id": 12345}}\n')
    pseudonym = json.loads(r.stdout)["context"]["user_id"]
    r = run_cli("lookup", "-p", str(policy), "--reason", "r", "-a", str(tmp_path / "a"),
                "--json", "--format", "json", "12345", env=env)
    assert json.loads(r.stdout)[0]["pseudonym"] == pseudonym


def test_lookup_prints_the_actor_pseudonym_an_xapi_statement_gets(tmp_path):
    env = key_env()
    statement = {**first_trace(), "actor": {"mbox": "mailto:ada@example.org"}}
    r = run_cli("anonymise", "-p", "xapi", env=env, stdin=json.dumps(statement).encode() + b"\n")
    assert r.returncode == 0, r.stderr
    actor = json.loads(r.stdout)["actor"]["account"]["name"]
    audit = tmp_path / "a.jsonl"
    r = run_cli("lookup", "-p", "xapi", "--reason", "DSR-4", "-a", str(audit), "-", env=env,
                stdin=b"mailto:ada@example.org\n")
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.decode().splitlines() if "\tagent\t$.actor (as mbox)\t" in x)
    assert line.endswith(json.dumps(actor))
    assert "ada@example.org" not in audit.read_text()


def test_lookup_with_a_date_shift_rule_notes_the_skipped_rule(tmp_path):
    policy = tmp_path / "shift.yaml"
    policy.write_text("name: s\nversion: '1'\ndomain: d\nrules:\n"
                      "  - {path: $.u, action: hash, why: user}\n"
                      "  - {path: $.t, action: date_shift, options: {days: 10, learner: $.u},"
                      " why: when}\n")
    r = run_cli("lookup", "-p", str(policy), "--reason", "r", "-a", str(tmp_path / "a"),
                "--format", "json", "learner-0042", env=key_env())
    assert r.returncode == 0, r.stderr
    assert [row["rule"] for row in json.loads(r.stdout)] == [1]
    err = r.stderr.decode()
    assert "rule 2" in err and "date_shift" in err and "learner-0042" not in err


def test_explain_says_scrub_pseudonyms_link_records():
    """A scrub rule with replace: pseudonym writes the same keyed pseudonym for an address
    in every record: the signed document said it linked nothing."""
    from pseudonym.explain import explain
    from pseudonym.policy import Policy
    rules = [{"path": "$.a", "action": "scrub", "options": {"replace": "pseudonym"}},
             {"path": "$.b", "action": "scrub"}]
    md = explain(Policy.from_dict({"name": "t", "version": "1", "domain": "d",
                                   "rules": rules})).render("md")
    pseudonyms = next(line for line in md.splitlines() if line.startswith("| 1 |"))
    assert "| no | yes (through the pseudonyms it writes) | no (keyed per domain) |" in pseudonyms
    tokens = next(line for line in md.splitlines() if line.startswith("| 2 |"))
    assert "| no | no | no |" in tokens


@pytest.mark.parametrize("identifier", ["", "  ", "\t"])
def test_lookup_refuses_a_blank_identifier(tmp_path, identifier):
    """An empty username is what Open edX logs for anonymous events, which learner_id
    keeps as it is: a blank identifier (an unset shell variable) 'found' every anonymous
    event, to be handed over or erased."""
    audit = tmp_path / "audit.jsonl"
    r = run_cli("lookup", "-p", "edx", "--reason", "DSR-5", "-a", str(audit), identifier,
                env=key_env())
    assert r.returncode == 2 and r.stdout == b""
    assert b"identifier" in r.stderr and b"blank" in r.stderr
    r = run_cli("lookup", "-p", "edx", "--reason", "DSR-5", "-a", str(audit), "-",
                env=key_env(), stdin=identifier.encode() + b"\n")
    assert r.returncode == 2 and r.stdout == b""


def test_lookup_refuses_a_null_identifier(tmp_path):
    """null is what every keyed action keeps as it is: its 'pseudonyms' were null."""
    r = run_cli("lookup", "-p", "edx", "--reason", "DSR-6", "-a", str(tmp_path / "a.jsonl"),
                "--json", "null", env=key_env())
    assert r.returncode == 2 and r.stdout == b"" and b"null" in r.stderr
