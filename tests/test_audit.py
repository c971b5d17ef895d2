"""The audit log: what an entry holds, that it holds no value, and that tampering shows."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re

import pytest

from pseudonym import AuditError, AuditLog, KeyRing, MasterKey, RecordError, anonymise
from pseudonym.audit import Anchor, entry_hash, read_entries, verify
from pseudonym.canonical import dumps

from .conftest import make_policy
from .dpo_helpers import EXAMPLE, TRACES, key_env, run_cli

RULES = [{"path": "$.actor.mbox", "action": "hash"}, {"path": "$.verb", "action": "keep"},
         {"path": "$.t", "action": "generalise", "options": {"kind": "timestamp", "unit": "day"}}]
RECORDS = [
    {"actor": {"mbox": "mailto:alice@example.org", "name": "Alice Martin"}, "verb": "played",
     "t": "2026-01-02T03:04:05Z", "context": {"extensions": {"http://x/ip": "10.1.2.3"}}},
    {"actor": {"mbox": "mailto:bob@example.org"}, "verb": "paused", "t": "Bob's birthday"},
    {"actor": {"mbox": "mailto:carol@example.org"}, "verb": "played", "t": "2026-01-03"},
]


def run_with_audit(tmp_path, keys, key=None, on_error="skip"):
    path = tmp_path / "audit.jsonl"
    with AuditLog.open(path, key) as audit:
        out = list(anonymise(RECORDS, make_policy(RULES), keys=keys, audit=audit,
                             on_error=on_error))
    return path, out


def test_entry_counts_what_happened(tmp_path, keys):
    path, out = run_with_audit(tmp_path, keys)
    assert len(out) == 2
    (entry,) = read_entries(path)
    assert entry["status"] == "completed" and entry["records"] == {
        "read": 3, "written": 2, "rejected": 1}
    assert entry["errors"] == {"action-failed": {"count": 1, "records": [2]}}
    by_rule = {r["path"]: r for r in entry["rules"]}
    assert by_rule["$.actor.mbox"]["matched"] == 2 and by_rule["$.actor.mbox"]["transformed"] == 2
    assert by_rule["$.verb"]["transformed"] == 0
    assert entry["unmatched"]["dropped"] == {"$.actor[*]": 1, "$[*]": 1}
    assert entry["policy"]["sha256"] == make_policy(RULES).sha256
    assert entry["keys"] == [{"key_id": keys.active.key_id, "domain": "test-domain"}]
    assert entry["prev"] == "0" * 64 and entry["seq"] == 1 and "hmac" not in entry


def test_audit_holds_no_input_value_and_no_key(tmp_path, keys):
    path, _ = run_with_audit(tmp_path, keys, MasterKey.generate())
    text = path.read_text()
    for value in ("alice", "Alice", "Martin", "bob", "Bob", "birthday", "carol", "10.1.2.3",
                  "played", "2026-01-02", "http://x/ip", keys.active.text.split(".")[2]):
        assert value not in text


def test_chain_verifies_and_edits_are_caught(tmp_path, keys):
    path, _ = run_with_audit(tmp_path, keys)
    run_with_audit(tmp_path, keys)
    run_with_audit(tmp_path, keys)
    assert verify(path).ok and verify(path).entries == 3
    lines = path.read_bytes().splitlines(keepends=True)
    tampered = json.loads(lines[1])
    tampered["records"]["rejected"] = 0
    path.write_bytes(lines[0] + json.dumps(tampered, sort_keys=True,
                                           separators=(",", ":")).encode() + b"\n" + lines[2])
    result = verify(path)
    assert not result.ok and result.broken_at == 2 and "changed" in result.reason
    path.write_bytes(lines[0] + lines[2])
    result = verify(path)
    assert result.broken_at == 2 and "removed" in result.reason
    path.write_bytes(lines[1] + lines[2])
    assert verify(path).broken_at == 1
    path.write_bytes(lines[0] + lines[2] + lines[1])
    assert verify(path).broken_at == 2


@pytest.mark.parametrize("seq", ["true", "1.0"])
def test_an_entry_whose_seq_is_not_a_whole_number_is_out_of_sequence(tmp_path, keys, seq):
    """Found by review: ``seq`` compared equal to 1 as ``true`` or ``1.0``; pseudonym only
    writes whole numbers, so such a line was written by something else."""
    path, _ = run_with_audit(tmp_path, keys)
    line = path.read_bytes()
    path.write_bytes(line.replace(b'"seq":1,', b'"seq":' + seq.encode() + b",", 1))
    assert path.read_bytes() != line
    result = verify(path)
    assert not result.ok and result.broken_at == 1 and "out of sequence" in result.reason


def test_hmac_catches_a_rewritten_chain(tmp_path, keys):
    key = MasterKey.generate()
    path, _ = run_with_audit(tmp_path, keys, key)
    assert verify(path, key).ok and verify(path, key).hmac_checked
    forged = tmp_path / "forged.jsonl"
    with AuditLog.open(forged) as log:
        entry = read_entries(path)[0]
        entry.pop("hmac")
        entry["records"]["rejected"] = 0
        log.append(entry)
    assert verify(forged).ok
    assert not verify(forged, key).ok
    assert not verify(path, MasterKey.generate()).ok


def test_failed_run_is_recorded_as_failed(tmp_path, keys):
    path = tmp_path / "a.jsonl"
    with AuditLog.open(path) as audit, pytest.raises(RecordError) as e:
        list(anonymise(RECORDS, make_policy(RULES), keys=keys, audit=audit))
    assert e.value.position == 2
    assert read_entries(path)[0]["status"] == "failed"


def test_abandoned_stream_is_recorded_as_interrupted(tmp_path, keys):
    path = tmp_path / "a.jsonl"
    with AuditLog.open(path) as audit:
        it = anonymise(RECORDS, make_policy(RULES), keys=keys, audit=audit)
        next(it)
        it.close()
    (entry,) = read_entries(path)
    assert entry["status"] == "interrupted" and entry["records"]["written"] == 1


def test_a_write_cut_short_by_the_file_size_limit_leaves_the_log_as_it_was(tmp_path):
    resource = pytest.importorskip("resource")
    path = tmp_path / "a.jsonl"
    log = AuditLog.open(path)
    log.append({"entry": "note"})
    before = path.read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if hard != resource.RLIM_INFINITY and hard < len(before) + 100:
        pytest.skip("the hard file size limit is too low")
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) + 100, hard))
    try:
        with pytest.raises(AuditError, match="cannot write audit entry") as e:
            log.append({"entry": "note", "pad": "x" * 500})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert str(path) in str(e.value) and "left as it was" in str(e.value)
    assert path.read_bytes() == before
    log.append({"entry": "note"})
    assert verify(path).ok and verify(path).entries == 2


def test_a_failed_fsync_takes_the_entry_back_and_still_fails(tmp_path, monkeypatch):
    path = tmp_path / "a.jsonl"
    log = AuditLog.open(path)
    log.append({"entry": "note"})
    before = path.read_bytes()

    def fsync(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(AuditError, match="cannot write audit entry"):
        log.append({"entry": "note"})
    monkeypatch.undo()
    assert path.read_bytes() == before and verify(path).ok


def test_a_keyed_log_refuses_an_entry_without_its_key(tmp_path):
    key = MasterKey.generate()
    path = tmp_path / "a.jsonl"
    AuditLog.open(path, key).append({"entry": "note"})
    before = path.read_bytes()
    for other, why in ((None, "no audit key was given"),
                       (MasterKey.generate(), "does not verify its last entry (entry 1)")):
        with pytest.raises(AuditError, match=re.escape(why)) as e:
            AuditLog.open(path, other)
        assert str(e.value).startswith(f"{path}: ")
        with pytest.raises(AuditError, match=re.escape(why)):
            AuditLog(path, other).append({"entry": "note"})
    assert path.read_bytes() == before
    AuditLog.open(path, key).append({"entry": "note"})
    assert verify(path, key).ok and verify(path, key).entries == 2


def test_a_log_without_hmacs_refuses_an_audit_key(tmp_path):
    path = tmp_path / "a.jsonl"
    AuditLog.open(path).append({"entry": "note"})
    with pytest.raises(AuditError, match=r"carry no HMAC.*start a new log"):
        AuditLog.open(path, MasterKey.generate())
    with pytest.raises(AuditError, match="carry no HMAC"):
        AuditLog(path, MasterKey.generate()).append({"entry": "note"})
    assert verify(path).ok and verify(path).entries == 1


def _three_entries(path, key):
    with AuditLog.open(path, key) as log:
        for i in range(3):
            log.append({"entry": "note", "i": i})
    return path.read_bytes().splitlines(keepends=True)


def test_an_edited_prev_is_blamed_on_its_own_entry_when_the_hmac_says_so(tmp_path):
    key = MasterKey.generate()
    path = tmp_path / "a.jsonl"
    lines = _three_entries(path, key)
    edited = json.loads(lines[1])
    edited["prev"] = "1" * 64
    path.write_bytes(lines[0] + dumps(edited).encode() + b"\n" + lines[2])
    result = verify(path, key)
    assert (result.broken_at, result.entries) == (2, 1) and "HMAC" in result.reason
    no_key = verify(path)
    assert no_key.broken_at == 1 and "or entry 2's prev" in no_key.reason


def test_an_entry_with_a_valid_hmac_blames_the_one_before_it(tmp_path):
    key = MasterKey.generate()
    lines = _three_entries(tmp_path / "a.jsonl", key)
    with AuditLog.open(tmp_path / "fork.jsonl", key) as log:
        log.append({"entry": "note", "i": "another"})
    path = tmp_path / "spliced.jsonl"
    path.write_bytes((tmp_path / "fork.jsonl").read_bytes() + lines[1] + lines[2])
    result = verify(path, key)
    assert (result.broken_at, result.entries) == (1, 0)
    assert "entry 2, whose HMAC is valid" in result.reason


@pytest.mark.parametrize("value", ["NaN", "-Infinity", "1e999"])
def test_a_number_json_cannot_hold_is_a_broken_entry_not_a_crash(tmp_path, value):
    key = MasterKey.generate()
    path = tmp_path / "a.jsonl"
    AuditLog.open(path, key).append({"entry": "note"})
    path.write_bytes(path.read_bytes() + f'{{"prev":"{"0" * 64}","seq":2,"x":{value}}}\n'
                     .encode())
    for k in (None, key):
        result = verify(path, k)
        assert (result.broken_at, result.reason) == (2, "not a JSON entry")
    with pytest.raises(AuditError, match="last entry is damaged"):
        AuditLog(path, key).append({"entry": "note"})


def _report(path, key=None):
    from pseudonym.report import report
    doc, ok = report(path, key)
    return doc.render("md"), ok


@pytest.mark.parametrize("line", [
    '{"entry":"run","records":{"read":"x"}}', '{"entry":"run","policy":"xapi"}',
    '{"entry":"run","keys":["k"]}', '{"entry":["run"]}', '{"entry":{"a":1}}',
    '{"entry":"run","errors":{"x":5}}', '{"entry":"lookup","policy":[1],"key_ids":7}',
    '{"entry":"reidentify","key_id":5}', '{"entry":"lookup"}', "[1]", "not json",
    '{"entry":"run","x":NaN}', "",
])
def test_report_on_a_tampered_log_says_so_and_flags_what_it_cannot_read(tmp_path, keys, line):
    path, _ = run_with_audit(tmp_path, keys)
    path.write_bytes(path.read_bytes() + line.encode() + b"\n")
    md, ok = _report(path)
    assert not ok and "**The log does not verify**: broken at entry 2" in md
    unverified = md.split("## Unverified entries")[1]
    assert "| 2 |" in unverified and "cannot be read" in unverified
    assert "| 1 (1 completed) | 3 | 2 | 1 |" in md.split("## Unverified entries")[0]


def test_report_totals_only_verified_entries_and_lists_the_others(tmp_path, keys):
    path, _ = run_with_audit(tmp_path, keys)
    run_with_audit(tmp_path, keys)
    run_with_audit(tmp_path, keys)
    lines = path.read_bytes().splitlines(keepends=True)
    edited = json.loads(lines[1])
    edited["records"]["read"] = 1000
    path.write_bytes(lines[0] + dumps(edited).encode() + b"\n" + lines[2])
    md, ok = _report(path)
    assert not ok and "broken at entry 2" in md
    verified, unverified = md.split("## Unverified entries")
    assert "| 1 (1 completed) | 3 | 2 | 1 |" in verified and "1000" not in verified
    assert "Entries 2 to 3 are unverified" in verified
    md, _ = _report(path, MasterKey.generate())
    assert "HMACs were not checked" not in md
    assert "| 2 | `run` |" in unverified and "read 1000, written 2, rejected 1" in unverified
    assert "| 3 | `run` |" in unverified


def test_report_shows_the_whole_policy_digest(tmp_path, keys):
    path, _ = run_with_audit(tmp_path, keys)
    md, ok = _report(path)
    assert ok and f"`{make_policy(RULES).sha256}`" in md and "Unverified" not in md


@pytest.mark.parametrize("mode", [0o644, 0o640])
def test_an_audit_key_file_others_can_read_warns_like_the_master_key(tmp_path, mode):
    from pseudonym.keys import KeyFileWarning
    key = MasterKey.generate()
    f = tmp_path / "audit.key"
    f.write_text(key.text + "\n")
    f.chmod(mode)
    with pytest.warns(KeyFileWarning, match=f"{f}: audit key file can be read by other users"):
        assert MasterKey.from_file(f, what="audit key file").key_id == key.key_id


def test_audit_verify_warns_when_others_can_read_the_audit_key_file(tmp_path):
    key = MasterKey.generate()
    f = tmp_path / "audit.key"
    f.write_text(key.text + "\n")
    f.chmod(0o644)
    r = run_cli("audit", "verify", str(tmp_path / "none.jsonl"), "--audit-key-file", str(f))
    assert r.stderr.decode().startswith(
        f"pseudonym: warning: {f}: audit key file can be read by other users; chmod 600 it\n")
    assert key.text.split(".")[2] not in r.stderr.decode()
    f.chmod(0o600)
    (tmp_path / "a.jsonl").touch()
    r = run_cli("audit", "verify", str(tmp_path / "a.jsonl"), "--audit-key-file", str(f))
    assert r.returncode == 0 and r.stderr == b""


def test_the_master_key_is_refused_as_the_audit_key(tmp_path):
    key = MasterKey.generate()
    path = tmp_path / "a.jsonl"
    for ring in (KeyRing([key]), KeyRing([MasterKey.generate(), key])):
        with pytest.raises(AuditError, match=f"is also a master key in use \\(key {key.key_id}\\)"):
            list(anonymise(RECORDS, make_policy(RULES), keys=ring, audit=AuditLog.open(path, key),
                           on_error="skip"))
    assert path.read_bytes() == b""


def test_lookup_refuses_the_master_key_as_the_audit_key(tmp_path):
    key = tmp_path / "pseudonym.key"
    key.write_text(MasterKey.generate().text + "\n")
    key.chmod(0o600)
    audit = tmp_path / "audit.jsonl"
    r = run_cli("lookup", "-p", str(EXAMPLE), "--reason", "DSR-1", "-a", str(audit),
                "--key-file", str(key), "--audit-key-file", str(key), "learner-0001")
    assert r.returncode == 2 and r.stdout == b""
    assert f"{audit}: the audit key is also a master key in use" in r.stderr.decode()
    assert audit.read_bytes() == b""


def test_key_ids_known_only_at_the_end_of_a_run_are_checked_too(tmp_path):
    """A Dask client learns the key ids from its workers when the run ends."""
    from types import SimpleNamespace

    from pseudonym.engine import RunStats
    key = MasterKey.generate()
    path = tmp_path / "a.jsonl"
    plan = SimpleNamespace(policy=make_policy(RULES), key_uses=[], rules=[])
    run = AuditLog.open(path, key).start(plan)
    plan.key_uses = [(key.key_id, "test-domain")]
    with pytest.raises(AuditError, match="is also a master key in use"):
        run.finish(RunStats(), "completed")
    assert path.read_bytes() == b""


def test_lookup_without_the_audit_key_leaves_a_keyed_log_alone(tmp_path):
    env = key_env()
    audit, audit_key = tmp_path / "audit.jsonl", tmp_path / "audit.key"
    audit_key.write_text(run_cli("keygen").stdout.decode())
    audit_key.chmod(0o600)
    r = run_cli("anonymise", "-p", str(EXAMPLE), "-i", str(TRACES), "-o", str(tmp_path / "o"),
                "-a", str(audit), "--audit-key-file", str(audit_key), env=env)
    assert r.returncode == 0, r.stderr
    before = audit.read_bytes()
    r = run_cli("lookup", "-p", str(EXAMPLE), "--reason", "DSR-9", "-a", str(audit),
                "learner-0001", env=env)
    assert r.returncode == 2 and r.stdout == b""
    assert f"{audit}: its entries carry an HMAC" in r.stderr.decode()
    assert b"learner-0001" not in r.stderr and audit.read_bytes() == before
    r = run_cli("audit", "verify", str(audit), "--audit-key-file", str(audit_key))
    assert r.returncode == 0, r.stderr


# -- a copy of an entry kept elsewhere (the anchor) ---------------------------------------
def _runs(tmp_path, keys, key, n, name="audit.jsonl"):
    path = tmp_path / name
    for _ in range(n):
        with AuditLog.open(path, key) as audit:
            list(anonymise(RECORDS, make_policy(RULES), keys=keys, audit=audit, on_error="skip"))
    return path


def _kept(path, as_line):
    last = path.read_bytes().splitlines()[-1]
    return last if as_line else hashlib.sha256(last).hexdigest()


@pytest.mark.parametrize("with_key", [False, True], ids=["chain", "hmac"])
@pytest.mark.parametrize("as_line", [True, False], ids=["line", "hash"])
def test_a_truncated_log_is_refused_against_the_entry_kept_elsewhere(tmp_path, keys, with_key,
                                                                     as_line):
    key = MasterKey.generate() if with_key else None
    path = _runs(tmp_path, keys, key, 3)
    kept = _kept(path, as_line)
    path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:2]))
    assert verify(path, key).ok
    result = verify(path, key, anchor=kept)
    assert not result.ok and result.entries == 2 and result.last_hash is None
    if as_line:
        assert str(result) == ("entry 3, kept elsewhere, is missing: the log ends at entry 2; "
                               "its last entries were removed, or the copy is of another log")
    else:
        assert str(result).startswith(f"no entry has the hash kept elsewhere ({kept}): entries "
                                      "were removed from the end of the log")
    path.write_bytes(b"")
    assert not verify(path, key, anchor=kept).ok


@pytest.mark.parametrize("with_key", [False, True], ids=["chain", "hmac"])
@pytest.mark.parametrize("as_line", [True, False], ids=["line", "hash"])
def test_an_intact_or_grown_log_holds_the_entry_kept_elsewhere(tmp_path, keys, with_key,
                                                               as_line):
    key = MasterKey.generate() if with_key else None
    path = _runs(tmp_path, keys, key, 2)
    kept = _kept(path, as_line)
    result = verify(path, key, anchor=kept)
    assert result.ok and result.anchored_at == 2 and result.hmac_checked == with_key
    assert result.last_hash == hashlib.sha256(path.read_bytes().splitlines()[-1]).hexdigest()
    assert str(result).endswith("verified; entry 2 is the one kept elsewhere")
    before = result.last_hash
    _runs(tmp_path, keys, key, 2)
    result = verify(path, key, anchor=kept)
    assert result.ok and (result.entries, result.anchored_at) == (4, 2)
    assert result.last_hash == _kept(path, as_line=False) != before


def test_the_whole_line_kept_may_have_been_reformatted(tmp_path, keys):
    """A ticket or a wiki may re-indent the JSON it is pasted into: the entry is the same."""
    path = _runs(tmp_path, keys, None, 2)
    pretty = json.dumps(json.loads(_kept(path, as_line=True)), indent=4).encode()
    assert verify(path, anchor=pretty + b"\r\n").anchored_at == 2
    assert verify(path, anchor=_kept(path, as_line=False).upper()).anchored_at == 2


@pytest.mark.parametrize("as_line", [True, False], ids=["line", "hash"])
def test_a_forged_copy_is_refused(tmp_path, keys, as_line):
    key = MasterKey.generate()
    path = _runs(tmp_path, keys, key, 3)
    if as_line:
        entry = json.loads(_kept(path, as_line=True))
        entry["records"]["rejected"] = 0
        forged = dumps(entry).encode()
    else:
        digest = _kept(path, as_line=False)
        forged = ("0" if digest[0] != "0" else "1") + digest[1:]
    assert not verify(path, anchor=forged).ok
    result = verify(path, key, anchor=forged)
    assert not result.ok and result.entries == 3
    if as_line:
        assert str(result) == ("the copy of entry 3 kept elsewhere does not verify under the "
                               "audit key: it was changed, or is of a log under another key")


@pytest.mark.parametrize("with_key", [False, True], ids=["chain", "hmac"])
@pytest.mark.parametrize("as_line", [True, False], ids=["line", "hash"])
def test_a_copy_from_another_log_is_refused(tmp_path, keys, with_key, as_line):
    key = MasterKey.generate() if with_key else None
    path = _runs(tmp_path, keys, key, 3)
    other = _runs(tmp_path, keys, key, 3, name="other.jsonl")
    result = verify(path, key, anchor=_kept(other, as_line))
    assert not result.ok and "the copy is of another log" in str(result)
    assert result.anchored_at is None


def test_a_broken_chain_is_named_before_the_copy_is_looked_for(tmp_path, keys):
    path = _runs(tmp_path, keys, None, 3)
    kept = _kept(path, as_line=False)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + lines[2])
    result = verify(path, anchor=kept)
    assert not result.ok and result.broken_at == 2 and "removed" in result.reason


@pytest.mark.parametrize("copy", [b"", b"not an entry alice@example.org", b"[1]",
                                  b'{"seq":"3","who":"alice@example.org"}', b"abc123",
                                  b'{"seq":0}', "a" * 63, b"\xff\xfe", b'{"seq":1,"x":NaN}',
                                  b'{"seq":1,"x":"\\ud800"}', b"[" * 100_000])
def test_a_copy_that_is_neither_an_entry_nor_its_hash_is_refused(tmp_path, copy):
    path = tmp_path / "a.jsonl"
    AuditLog.open(path).append({"entry": "note"})
    with pytest.raises(AuditError) as e:
        verify(path, anchor=copy)
    assert str(e.value).startswith("anchor: neither a line of the audit log nor an entry's "
                                   "SHA-256 (64 hex digits)")
    assert "alice" not in str(e.value)


def test_an_empty_log_does_not_hold_the_entry_kept(tmp_path):
    path = tmp_path / "a.jsonl"
    kept = _three_entries(path, None)[2]
    path.write_bytes(b"")
    assert str(verify(path, anchor=kept)) == ("entry 3, kept elsewhere, is missing: the log "
                                              "is empty; its entries were removed, or the "
                                              "copy is of another log")


def test_a_copy_of_several_entries_is_refused(tmp_path):
    path = tmp_path / "a.jsonl"
    lines = _three_entries(path, None)
    for copies in (lines[1] + lines[2], b"\n".join(entry_hash(x.rstrip()).encode()
                                                   for x in lines)):
        with pytest.raises(AuditError) as e:
            Anchor.parse(copies, "kept.jsonl")
        assert str(e.value).startswith("kept.jsonl: holds ")
        assert str(e.value).endswith(" lines; give one entry, the last one kept (tail -n 1)")


def test_a_missing_entry_is_named_without_quoting_the_copy(tmp_path):
    """A lookup's reason may name the person who asked: the copy is never echoed."""
    with AuditLog.open(tmp_path / "other.jsonl") as other:
        other.append({"entry": "lookup", "reason": "request from Alice Martin"})
    kept = (tmp_path / "other.jsonl").read_bytes()
    path = tmp_path / "a.jsonl"
    _three_entries(path, None)
    result = verify(path, anchor=kept)
    assert not result.ok and "entry 1 is not the one kept elsewhere" in str(result)
    assert "Alice" not in str(result) and "request" not in str(result)


def _keyed_cli_log(tmp_path, with_key, runs=2):
    audit, args = tmp_path / "audit.jsonl", []
    if with_key:
        audit_key = tmp_path / "audit.key"
        audit_key.write_text(MasterKey.generate().text + "\n")
        audit_key.chmod(0o600)
        args = ["--audit-key-file", str(audit_key)]
    env = key_env()
    for _ in range(runs):
        r = run_cli("anonymise", "-p", str(EXAMPLE), "-i", str(TRACES), "-o",
                    str(tmp_path / "out.jsonl"), "-a", str(audit), *args, env=env)
        assert r.returncode == 0, r.stderr
    return audit, args


@pytest.mark.parametrize("with_key", [False, True], ids=["chain", "hmac"])
def test_audit_verify_prints_the_hash_to_keep_and_refuses_a_log_without_it(tmp_path, with_key):
    audit, args = _keyed_cli_log(tmp_path, with_key)
    last = audit.read_bytes().splitlines()[-1]
    digest = hashlib.sha256(last).hexdigest()
    r = run_cli("audit", "verify", str(audit), *args)
    assert r.returncode == 0 and r.stderr == b""
    assert r.stdout.decode().splitlines() == [
        f"{audit}: intact: 2 entries, {'hash chain and HMACs' if with_key else 'hash chain'} "
        "verified", f"{audit}: last entry 2, sha256 {digest}"]
    kept = tmp_path / "kept.jsonl"
    kept.write_bytes(last + b"\n")
    copies = [(digest, None), (str(kept), None), ("-", last + b"\n")]
    for anchor, stdin in copies:
        r = run_cli("audit", "verify", str(audit), "--anchor", anchor, *args, stdin=stdin)
        assert r.returncode == 0, r.stderr
        assert r.stdout.decode().splitlines()[0].endswith(
            "verified; entry 2 is the one kept elsewhere")

    audit.write_bytes(audit.read_bytes().splitlines(keepends=True)[0])
    assert run_cli("audit", "verify", str(audit), *args).returncode == 0
    for anchor, stdin in copies:
        r = run_cli("audit", "verify", str(audit), "--anchor", anchor, *args, stdin=stdin)
        assert r.returncode == 1 and r.stdout == b""
        missing = (f"no entry has the hash kept elsewhere ({digest}): entries were removed "
                   "from the end of the log, it was rewritten, or the copy is of another log"
                   if anchor == digest else
                   "entry 2, kept elsewhere, is missing: the log ends at entry 1; its last "
                   "entries were removed, or the copy is of another log")
        assert r.stderr.decode() == f"{audit}: {missing}\n"


def test_audit_verify_refuses_a_copy_it_cannot_use_without_quoting_it(tmp_path):
    audit, _ = _keyed_cli_log(tmp_path, False, runs=1)
    bad = tmp_path / "kept.txt"
    bad.write_text("kept for alice@example.org\n")
    r = run_cli("audit", "verify", str(audit), "--anchor", str(bad))
    assert r.returncode == 2 and r.stdout == b"" and b"alice" not in r.stderr
    assert r.stderr.decode() == (f"pseudonym: {bad}: neither a line of the audit log nor an "
                                 "entry's SHA-256 (64 hex digits)\n")
    r = run_cli("audit", "verify", str(audit), "--anchor", "-", stdin=b"alice@example.org")
    assert r.returncode == 2 and b"alice" not in r.stderr
    assert r.stderr.startswith(b"pseudonym: standard input: neither a line")
    r = run_cli("audit", "verify", str(audit), "--anchor", "")
    assert r.returncode == 2 and r.stderr.decode() == (
        "pseudonym: --anchor: empty; give an entry's SHA-256 (64 hex digits) or a file holding "
        "the copy\n")
    r = run_cli("audit", "verify", str(audit), "--anchor", "3f2a9c")
    assert r.returncode == 2 and r.stderr.decode() == (
        "pseudonym: --anchor: 3f2a9c: neither an entry's SHA-256 (64 hex digits) nor a file "
        "that can be read (No such file or directory)\n")


def test_audit_verify_never_quotes_an_entry_given_in_place_of_the_copy_file(tmp_path):
    """``--anchor "$(tail -n 1 audit.jsonl)"`` gives the line itself, not a file: a
    lookup's reason may name a person, so the refusal does not echo it."""
    log = tmp_path / "audit.jsonl"
    AuditLog.open(log).append({"entry": "lookup", "reason": "request from Alice Martin"})
    line = log.read_bytes().splitlines()[0].decode()
    for given in (line, line[:120], json.dumps(json.loads(line), indent=2)):
        r = run_cli("audit", "verify", str(log), "--anchor", given)
        assert r.returncode == 2 and r.stdout == b"", r.stderr
        assert b"Alice" not in r.stderr and b"request" not in r.stderr
        assert r.stderr.decode() == (
            "pseudonym: --anchor: an entry's line given in place of a file naming the copy; "
            "keep it in a file and give the file's name, or give it on standard input with "
            "--anchor -\n")


@pytest.mark.parametrize("with_key", [False, True], ids=["chain", "hmac"])
def test_a_copy_naming_a_field_twice_is_refused(tmp_path, keys, with_key):
    """JSON keeps the last of two values of a name: a copy changed by putting another value
    first reads as something the entry never said, and must not pass for the entry."""
    key = MasterKey.generate() if with_key else None
    path = _runs(tmp_path, keys, key, 2)
    last = _kept(path, as_line=True)
    assert json.loads(last)["status"] == "completed"
    changed = b'{"status":"failed",' + last[1:]
    with pytest.raises(AuditError) as e:
        verify(path, key, anchor=changed)
    assert str(e.value).startswith("anchor: neither a line of the audit log")
    assert verify(path, key, anchor=last).anchored_at == 2


def test_the_verdict_counts_entries_in_words(tmp_path, keys):
    path = _runs(tmp_path, keys, None, 1)
    assert str(verify(path)) == "intact: 1 entry, hash chain verified"
    _runs(tmp_path, keys, None, 1)
    assert str(verify(path)) == "intact: 2 entries, hash chain verified"
