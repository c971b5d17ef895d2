"""The command line, run as a real subprocess, as a pipeline would."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import pytest

from pseudonym import MasterKey

from .conftest import EXAMPLES

POLICY = str(EXAMPLES / "research.yaml")
TRACES = EXAMPLES / "traces.jsonl"


def cli(*args, stdin=None, key=True, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("PSEUDONYM_")}
    if key:
        e["PSEUDONYM_KEY"] = KEY.text
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "pseudonym", *args], input=stdin,
                          capture_output=True, env=e, timeout=120)


KEY = MasterKey.generate()


def test_keygen_prints_a_usable_key_and_its_id():
    r = cli("keygen", key=False)
    assert r.returncode == 0
    text = r.stdout.decode().strip()
    k = MasterKey.parse(text)
    assert r.stderr.decode().strip() == f"key id: {k.key_id}"
    assert text not in r.stderr.decode()


def test_keygen_output_file_is_private(tmp_path):
    f = tmp_path / "k"
    assert cli("keygen", "--output", str(f), key=False).returncode == 0
    assert (f.stat().st_mode & 0o777) == 0o600
    MasterKey.parse(f.read_text())
    r = cli("keygen", "--output", str(f), key=False)
    assert r.returncode == 2 and b"already exists" in r.stderr


def test_keygen_output_that_cannot_be_written_names_it_and_leaves_no_partial_key(tmp_path):
    """Found by review: the error named no file, and a failed write (a full disk, here a
    file size limit) left a truncated key that every later keygen refused to replace."""
    import resource

    r = cli("keygen", "--output", str(tmp_path / "no" / "k"), key=False)
    assert r.returncode == 74
    assert r.stderr == (f"pseudonym: {tmp_path / 'no' / 'k'}: cannot write the key (No such "
                        "file or directory)\n").encode()
    f = tmp_path / "k"
    r = subprocess.run([sys.executable, "-m", "pseudonym", "keygen", "--output", str(f)],
                       capture_output=True, timeout=120,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (10, 10)))
    assert r.returncode == 74
    assert r.stderr == f"pseudonym: {f}: cannot write the key (File too large)\n".encode()
    assert r.stdout == b"" and not f.exists()


def test_pipe_stdin_to_stdout():
    r = cli("anonymise", "--policy", POLICY, stdin=TRACES.read_bytes())
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert len(lines) == len(TRACES.read_text().splitlines())
    for raw in lines:
        assert "@example" not in raw and "Alice" not in raw and "user-agent" not in raw


def test_gz_files_and_audit(tmp_path):
    src = tmp_path / "in.jsonl.gz"
    src.write_bytes(gzip.compress(TRACES.read_bytes()))
    out, audit = tmp_path / "out.jsonl.gz", tmp_path / "audit.jsonl"
    r = cli("anonymise", "-p", POLICY, "-i", str(src), "-o", str(out), "-a", str(audit))
    assert r.returncode == 0, r.stderr
    records = [json.loads(x) for x in gzip.decompress(out.read_bytes()).splitlines()]
    assert len(records) == 12
    entry = json.loads(audit.read_text())
    assert entry["records"] == {"read": 12, "written": 12, "rejected": 0}
    assert entry["status"] == "completed" and entry["keys"][0]["key_id"] == KEY.key_id
    v = cli("audit", "verify", str(audit))
    assert v.returncode == 0 and b"intact" in v.stdout
    assert not list(tmp_path.glob("*.partial"))


def test_rejected_lines_are_reported_by_number_never_echoed(tmp_path):
    lines = TRACES.read_text().splitlines()
    bad = [*lines[:2], '{"actor": "alice.secret@example.org", "timestamp": "secret-time"',
           *lines[2:4], '{"timestamp": "alice.secret@example.org"}']
    audit = tmp_path / "a.jsonl"
    r = cli("anonymise", "-p", POLICY, "-a", str(audit), stdin="\n".join(bad).encode())
    assert r.returncode == 1
    err = r.stderr.decode()
    assert "line 3: rejected: invalid-json" in err and "line 6: rejected: action-failed" in err
    assert "secret" not in err and "secret" not in r.stdout.decode()
    assert len(r.stdout.decode().splitlines()) == 4
    entry = json.loads(audit.read_text())
    assert entry["records"]["rejected"] == 2
    assert entry["errors"]["invalid-json"]["records"] == [3]


def test_missing_key_is_a_clear_error():
    r = cli("anonymise", "-p", POLICY, stdin=TRACES.read_bytes(), key=False)
    assert r.returncode == 2 and b"needs a key" in r.stderr and b"Traceback" not in r.stderr


def test_bad_key_is_refused_without_echo():
    r = cli("anonymise", "-p", POLICY, stdin=b"", key=False,
            env={"PSEUDONYM_KEY": "psk1.123.topsecretvalue"})
    assert r.returncode == 2 and b"topsecret" not in r.stderr


def test_check_valid_and_invalid(tmp_path):
    r = cli("check", POLICY, key=False)
    assert r.returncode == 0 and b"valid" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLES.joinpath("research.yaml").read_text().replace(
        "action: keep", "action: kepe", 1))
    r = cli("check", str(bad), key=False)
    assert r.returncode == 1 and f"{bad}:".encode() in r.stderr and b"rule 1" in r.stderr


def test_schema_is_json_schema():
    r = cli("schema", key=False)
    schema = json.loads(r.stdout)
    assert r.returncode == 0 and schema["title"] == "pseudonym policy"
    assert "rules" in schema["properties"]


def test_audit_verify_names_first_broken_entry(tmp_path):
    audit = tmp_path / "a.jsonl"
    for _ in range(3):
        assert cli("anonymise", "-p", POLICY, "-a", str(audit), "-i", str(TRACES),
                   "-o", str(tmp_path / "o.jsonl")).returncode == 0
    lines = audit.read_text().splitlines()
    audit.write_text("\n".join([lines[0], lines[1].replace('"written":12', '"written":13'),
                                lines[2]]) + "\n")
    r = cli("audit", "verify", str(audit))
    assert r.returncode == 1 and b"broken at entry 2" in r.stderr


@pytest.mark.parametrize("cmd", [[], ["anonymise"], ["keygen"], ["check"], ["schema"],
                                 ["audit"], ["audit", "verify"]])
def test_help(cmd):
    r = cli(*cmd, "--help", key=False)
    assert r.returncode == 0 and b"usage: pseudonym" in r.stdout


def test_no_output_is_published_without_its_audit_entry(tmp_path, monkeypatch, capsys):
    from pseudonym import cli
    from pseudonym.audit import AuditLog
    from pseudonym.errors import AuditError

    def fail(self, entry):
        raise AuditError("audit log: disk full")

    monkeypatch.setenv("PSEUDONYM_KEY", KEY.text)
    monkeypatch.setattr(AuditLog, "append", fail)
    out = tmp_path / "out.jsonl"
    code = cli.main(["anonymise", "-p", POLICY, "-i", str(TRACES), "-o", str(out),
                     "-a", str(tmp_path / "audit.jsonl")])
    assert code == 2 and "disk full" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("same", ["path", "link"])
def test_the_audit_log_cannot_be_the_output(tmp_path, same):
    """Found by review: with -o and -a naming one file, the output was renamed over the
    audit log once its entry was appended: the run exited 0, its entry gone, and every
    later run refused the 'damaged' log."""
    audit = tmp_path / "audit.jsonl"
    out = audit
    if same == "link":
        out = tmp_path / "out.jsonl"
        out.symlink_to(audit)
    r = cli("anonymise", "-p", POLICY, "-i", str(TRACES), "-o", str(out), "-a", str(audit))
    assert r.returncode == 2
    assert r.stderr == (f"pseudonym: {out}: is the audit log; write the output to another "
                        "file\n").encode()
    assert not audit.exists()


def test_standard_output_redirected_to_the_audit_log_is_refused(tmp_path):
    audit = tmp_path / "audit.jsonl"
    assert cli("anonymise", "-p", POLICY, "-i", str(TRACES), "-o", str(tmp_path / "o.jsonl"),
               "-a", str(audit)).returncode == 0
    before = audit.read_bytes()
    e = {**os.environ, "PSEUDONYM_KEY": KEY.text}
    with audit.open("ab") as log:
        r = subprocess.run([sys.executable, "-m", "pseudonym", "anonymise", "-p", POLICY,
                            "-i", str(TRACES), "-a", str(audit)], stdout=log,
                           stderr=subprocess.PIPE, env=e, timeout=120)
    assert r.returncode == 2
    assert r.stderr == (b"pseudonym: standard output: is the audit log; write the output to "
                        b"another file\n")
    assert audit.read_bytes() == before


def test_an_interrupted_run_audits_the_blocks_it_wrote_not_the_one_it_was_treating(
        tmp_path, monkeypatch, capsys):
    """Stopped while treating its second block of lines, a one-process run counts the first
    block in its audit entry, as a run with workers does: not records that never left."""
    from pseudonym import cli

    line = (TRACES.read_bytes().splitlines()[0] + b"\n")
    per_block = (1 << 20) // len(line) + 1
    (tmp_path / "in.jsonl").write_bytes(line * (per_block * 2))
    real, calls = cli.run_block, []

    def stopped_in_second_block(plan, block, stats, start, report):
        out = real(plan, block, stats, start, report)
        calls.append(block.count(b"\n"))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return out

    monkeypatch.setenv("PSEUDONYM_KEY", KEY.text)
    monkeypatch.setattr(cli, "run_block", stopped_in_second_block)
    code = cli.main(["anonymise", "-p", POLICY, "-i", str(tmp_path / "in.jsonl"),
                     "-a", str(tmp_path / "audit.jsonl")])
    entry = json.loads((tmp_path / "audit.jsonl").read_text().splitlines()[0])
    assert code == 130 and entry["status"] == "interrupted"
    assert entry["records"]["read"] == entry["records"]["written"] == calls[0] > 0
    assert len(capsys.readouterr().out.splitlines()) == calls[0]
