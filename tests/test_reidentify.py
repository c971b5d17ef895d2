"""reidentify and lookup at their edges: rotated keys, odd tokens and values, odd input."""

from __future__ import annotations

import json

import pytest

from pseudonym import AuditLog, KeyRing, KeyRingError, MasterKey, anonymise, reidentify
from tests.conftest import make_policy
from tests.dpo_helpers import run_cli

POLICY = make_policy([{"path": "$.a", "action": "encrypt"}])


def test_the_entry_names_the_key_that_opened_the_token(tmp_path):
    """Found by review: after a rotation the entry named the active key, not the older
    one that made the token, misleading whoever scopes a key's compromise."""
    old, new = MasterKey.generate(), MasterKey.generate()
    token = anonymise({"a": "alice"}, POLICY, keys=KeyRing([old]))["a"]
    with AuditLog.open(tmp_path / "audit.jsonl") as audit:
        assert reidentify(token, POLICY, keys=KeyRing([new, old]), reason="r",
                          audit=audit) == "alice"
    entry = json.loads((tmp_path / "audit.jsonl").read_text())
    assert entry["key_id"] == old.key_id and entry["digest_key_id"] == new.key_id


def test_a_token_that_holds_no_json_fails_and_is_audited(tmp_path):
    """Only a key holder can make one; it was an internal error before the entry."""
    keys = KeyRing([MasterKey.generate()])
    token = keys.cipher(POLICY.domain).seal(b"\xff not json")
    with AuditLog.open(tmp_path / "audit.jsonl") as audit, pytest.raises(KeyRingError):
        reidentify(token, POLICY, keys=keys, reason="r", audit=audit)
    assert json.loads((tmp_path / "audit.jsonl").read_text())["outcome"] == "failed"


def test_a_value_with_a_lone_surrogate_is_printed_escaped(tmp_path):
    """Found by review: printing it failed (exit 70) after the entry said ok."""
    key = MasterKey.generate()
    policy = tmp_path / "p.yaml"
    policy.write_text("name: p\nversion: '1'\ndomain: test-domain\nrules:\n"
                      "  - {path: $.a, action: encrypt}\n")
    token = anonymise({"a": "zoé\ud800"}, POLICY, keys=KeyRing([key]))["a"]
    r = run_cli("reidentify", "-p", str(policy), "--reason", "r", "-a",
                str(tmp_path / "audit.jsonl"), token, env={"PSEUDONYM_KEY": key.text})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == "zoé\ud800" and r.stdout.isascii()


@pytest.mark.parametrize(("value", "message"), [
    ("NaN", b"not a JSON value (NaN and infinities are not)"),
    ("1e400", b"not a JSON value (NaN and infinities are not)"),
    ("[" * 5000, b"nested too deeply"), ("[" * 2000 + "]" * 2000, b"nested too deeply")])
def test_lookup_refuses_json_no_record_could_hold(tmp_path, value, message):
    """Found by review: each was an internal error (exit 70)."""
    r = run_cli("lookup", "-p", "xapi", "--reason", "r", "-a",
                str(tmp_path / "audit.jsonl"), "--json", value,
                env={"PSEUDONYM_KEY": MasterKey.generate().text})
    assert r.returncode == 2 and b"--json: IDENTIFIER is " + message in r.stderr


def test_a_failed_reidentification_shows_in_the_audit_report(tmp_path):
    """Found by review: a token no key in the ring made is recorded with a null key id,
    and the report listed the entry as unreadable, as if tampered with."""
    key = MasterKey.generate()
    policy = tmp_path / "p.yaml"
    policy.write_text("name: p\nversion: '1'\ndomain: test-domain\nrules:\n"
                      "  - {path: $.a, action: encrypt}\n")
    audit = tmp_path / "audit.jsonl"
    r = run_cli("reidentify", "-p", str(policy), "--reason", "probe", "-a", str(audit),
                "pse1.deadbeef.AAAA", env={"PSEUDONYM_KEY": key.text})
    assert r.returncode == 2 and json.loads(audit.read_text())["key_id"] is None
    r = run_cli("audit", "report", str(audit))
    assert r.returncode == 0, r.stdout + r.stderr
    row = [x for x in r.stdout.decode().splitlines() if "probe" in x]
    assert len(row) == 1 and "failed" in row[0] and "unknown" in row[0]
    assert b"cannot read" not in r.stdout
