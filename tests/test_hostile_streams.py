"""Streams that break under the command: a closed pipe, a full disk, an interruption, a
truncated input. Output goes to a temporary file renamed only when the run is complete,
so a broken run never publishes a file; the audit log says how the run ended."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pseudonym import MasterKey
from pseudonym.audit import read_entries, verify

KEY = MasterKey.generate()
POLICY = """\
name: streams
version: "1"
domain: stream-tests
rules:
  - {path: $.n, action: keep}
  - {path: $.who, action: hash}
"""


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    (tmp_path / "policy.yaml").write_text(POLICY)
    lines = (json.dumps({"n": i, "who": f"learner-{i}", "pad": "x" * 100}) for i in range(50_000))
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def cmd(work: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pseudonym", "anonymise", "-p", str(work / "policy.yaml"),
            "-a", str(work / "audit.jsonl"), *extra]


ENV = {**os.environ, "PSEUDONYM_KEY": KEY.text}


def only_entry(work: Path) -> dict:
    assert verify(work / "audit.jsonl").ok
    entries = read_entries(work / "audit.jsonl")
    assert len(entries) == 1
    return entries[0]


def assert_nothing_published(work: Path) -> None:
    assert not (work / "out.jsonl").exists()
    assert not list(work.glob(".out.jsonl.*")), "a temporary file was left behind"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_closed_pipe_downstream_exits_cleanly(work, workers):
    """`pseudonym anonymise ... | head -1`: no traceback, no 'Exception ignored' noise."""
    args = ("-i", str(work / "in.jsonl"), "--workers", workers)
    r = subprocess.run(" ".join(cmd(work, *args)) + " | head -1",
                       shell=True, capture_output=True, env=ENV, timeout=60,
                       executable="/bin/bash")
    assert r.returncode == 0
    assert json.loads(r.stdout)["n"] == 0
    assert r.stderr == b""
    p = subprocess.Popen(cmd(work, *args), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=ENV)
    assert p.stdout is not None and p.stderr is not None
    p.stdout.readline()
    p.stdout.close()
    assert p.wait(60) == 0
    assert p.stderr.read() == b""
    entries = read_entries(work / "audit.jsonl")
    assert [e["status"] for e in entries] == ["interrupted", "interrupted"]
    # A line reached the reader: the audit counts the block it came in, never fewer records
    # than may have left, and not the blocks after it.
    assert all(1 <= e["records"]["written"] < 50_000 for e in entries)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_closed_standard_error_neither_stops_the_run_nor_passes_for_success(work, workers):
    """Standard error piped to a reader that is gone (`2>&1 | head -1`, a dead log
    shipper): the messages are lost, but the run goes on, publishes its output and exits
    1 for its rejected record; it is not taken for standard output closing (exit 0,
    nothing published)."""
    with (work / "in.jsonl").open("ab") as f:
        f.write(b"not json\n")
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run(cmd(work, "-i", str(work / "in.jsonl"), "-o", str(work / "out.jsonl"),
                               "--workers", workers),
                           stderr=w, env=ENV, timeout=60)
    finally:
        os.close(w)
    assert p.returncode == 1
    assert len((work / "out.jsonl").read_bytes().splitlines()) == 50_000
    entry = only_entry(work)
    assert entry["status"] == "completed"
    assert entry["errors"] == {"invalid-json": {"count": 1, "records": [50_001]}}


def test_a_closed_standard_error_fails_nothing_open(work):
    """Found by review: only err() was made best effort, so any other line on standard
    error (a lookup's note, a failed check or verification) still raised BrokenPipeError,
    taken for standard output closing: exit 0 with nothing printed, a damaged audit log
    'verified', an invalid policy 'checked'."""
    (work / "audit.jsonl").write_text("not an audit entry\n")
    (work / "bad.yaml").write_text("name: p\n")
    (work / "shifted.yaml").write_text(
        'name: s\nversion: "1"\ndomain: d\nrules:\n'
        '  - {path: $.user, action: learner_id, why: who}\n'
        '  - {path: $.t, action: date_shift, options: {days: 3, learner: $.user}, why: when}\n')
    r, w = os.pipe()
    os.close(r)
    try:
        def run(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "pseudonym", *args], stderr=w,
                                  stdout=subprocess.PIPE, env=ENV, timeout=60)
        verified = run("audit", "verify", str(work / "audit.jsonl"))
        checked = run("check", str(work / "bad.yaml"))
        looked_up = run("lookup", "-p", str(work / "shifted.yaml"), "--reason", "DSR-1",
                        "-a", str(work / "lookups.jsonl"), "learner-0042")
    finally:
        os.close(w)
    assert verified.returncode == 1 and checked.returncode == 1
    assert looked_up.returncode == 0 and looked_up.stdout.startswith(b"rule 1\tlearner_id")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_full_disk_on_standard_output(work, workers):
    with open("/dev/full", "wb") as full:
        r = subprocess.run(cmd(work, "-i", str(work / "in.jsonl"), "--workers", workers),
                           stdout=full,
                           stderr=subprocess.PIPE, env=ENV, timeout=60)
    assert r.returncode == 74
    assert r.stderr == (b"pseudonym: standard output: cannot write (No space left on device); "
                        b"the output is incomplete\n")
    assert only_entry(work)["status"] == "failed"


@pytest.mark.parametrize("name", ["out.jsonl", "out.jsonl.gz"])
def test_full_disk_on_an_output_file_publishes_nothing(work, name):
    """The file system fills up (simulated with a file size limit, which fails writes
    the same way) : the temporary file is removed and an older output stays as it was."""
    out = work / name
    out.write_bytes(b"previous complete output\n")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    r = subprocess.run(cmd(work, "-i", str(work / "in.jsonl"), "-o", str(out)),
                       capture_output=True, env=ENV, timeout=60, preexec_fn=limit)
    assert r.returncode == 74, r.stderr
    assert r.stderr == (f"pseudonym: {out}: cannot write output (File too large); no output "
                        "file was published\n").encode()
    assert out.read_bytes() == b"previous complete output\n"
    assert not list(work.glob(f".{name}.*"))
    assert only_entry(work)["status"] == "failed"


def interruptible() -> None:
    """Ctrl-C as a terminal delivers it: a test suite started in the background (``&``)
    hands its children SIGINT ignored, and a run would then never be interrupted."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_run_publishes_nothing_and_is_audited(work, sig):
    out = work / "out.jsonl"
    p = subprocess.Popen(cmd(work, "-o", str(out)), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
                         preexec_fn=interruptible)
    assert p.stdin is not None
    p.stdin.write(b"".join(json.dumps({"n": i, "who": "x"}).encode() + b"\n"
                           for i in range(1000)))
    p.stdin.flush()
    deadline = time.monotonic() + 30
    while not list(work.glob(".out.jsonl.*")):  # the run has started writing
        assert time.monotonic() < deadline and p.poll() is None
        time.sleep(0.02)
    time.sleep(0.2)
    p.send_signal(sig)
    _, stderr = p.communicate(timeout=30)
    assert p.returncode == 130
    assert stderr == b"pseudonym: interrupted; no output file was published\n"
    assert_nothing_published(work)
    entry = only_entry(work)
    assert entry["status"] == "interrupted"
    # The signal may land between reading a record and writing it, never after the end.
    assert entry["records"]["written"] <= entry["records"]["read"] <= 1000


@pytest.mark.parametrize("workers", ["1", "2"])
def test_interrupted_run_into_a_pipe_says_its_output_is_incomplete(work, workers):
    """Written in place (standard output, a pipe), part of the output has reached its
    reader before the signal: the message says so, not that nothing was published."""
    p = subprocess.Popen(cmd(work, "--workers", workers), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
                         preexec_fn=interruptible)
    assert p.stdin is not None and p.stdout is not None and p.stderr is not None
    data = (work / "in.jsonl").read_bytes()

    def feed() -> None:  # more than the pipes hold; the input then stays open
        with contextlib.suppress(BrokenPipeError):
            p.stdin.write(data)
            p.stdin.flush()

    threading.Thread(target=feed, daemon=True).start()
    assert p.stdout.readline().startswith(b'{"n":')  # delivered
    p.send_signal(signal.SIGINT)
    p.stdout.read()
    stderr = p.stderr.read()
    assert p.wait(timeout=60) == 130
    assert stderr == b"pseudonym: interrupted; the output is incomplete\n"
    assert only_entry(work)["status"] == "interrupted"


def start_with_workers(work: Path) -> tuple[subprocess.Popen, list[int]]:
    """``--workers 2`` reading a stream that stays open (the run cannot end by itself), in
    its own process group, once its workers run: the process and the workers' ids."""
    p = subprocess.Popen(cmd(work, "-o", str(work / "out.jsonl"), "--workers", "2"),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=ENV, start_new_session=True)
    assert p.stdin is not None
    p.stdin.write((work / "in.jsonl").read_bytes())  # several blocks: the workers start
    p.stdin.flush()
    children = Path(f"/proc/{p.pid}/task/{p.pid}/children")
    deadline = time.monotonic() + 30
    while len(children.read_text().split()) < 2:
        assert time.monotonic() < deadline and p.poll() is None
        time.sleep(0.02)
    return p, [int(c) for c in children.read_text().split()]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["sigterm", "sighup"])
def test_a_signal_to_the_whole_group_interrupts_a_run_with_workers(work, sig):
    """A terminal closing (SIGHUP) or a service manager stopping the job (SIGTERM) signals
    every process of the group: the workers leave it to the main process, and the run
    ends as interrupted (not as a worker that stopped), with nothing published."""
    p, _ = start_with_workers(work)
    os.killpg(p.pid, sig)
    _, stderr = p.communicate(timeout=60)
    assert p.returncode == 130, stderr
    assert stderr == b"pseudonym: interrupted; no output file was published\n"
    assert_nothing_published(work)
    assert only_entry(work)["status"] == "interrupted"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux")
def test_workers_do_not_outlive_a_killed_main_process(work):
    """Killed with SIGKILL, the main process cannot stop its workers, which were waiting
    for the next block: they stop by themselves instead of lingering."""
    p, workers = start_with_workers(work)
    p.kill()
    p.communicate(timeout=30)
    deadline = time.monotonic() + 20
    while any(Path(f"/proc/{w}").exists() and
              Path(f"/proc/{w}/stat").read_text().split()[2] != "Z" for w in workers):
        assert time.monotonic() < deadline, "a worker outlived the main process"
        time.sleep(0.05)


def test_truncated_gzip_input_fails_clearly_and_publishes_nothing(work):
    data = gzip.compress((work / "in.jsonl").read_bytes())
    (work / "in.jsonl.gz").write_bytes(data[: len(data) // 2])
    r = subprocess.run(cmd(work, "-i", str(work / "in.jsonl.gz"), "-o", str(work / "out.jsonl")),
                       capture_output=True, env=ENV, timeout=60)
    assert r.returncode == 74
    gz = work / "in.jsonl.gz"
    assert r.stderr == f"pseudonym: {gz}: cannot read input (truncated)\n".encode()
    assert_nothing_published(work)
    assert only_entry(work)["status"] == "failed"


def test_missing_input_file(work):
    r = subprocess.run(cmd(work, "-i", str(work / "nope.jsonl"), "-o", str(work / "out.jsonl")),
                       capture_output=True, env=ENV, timeout=60)
    assert r.returncode == 74
    assert b"nope.jsonl: cannot read input (No such file or directory)" in r.stderr
    assert_nothing_published(work)


def test_complete_run_publishes_atomically(work):
    """The counterpart: a complete run renames its temporary file into place."""
    r = subprocess.run(cmd(work, "-i", str(work / "in.jsonl"), "-o", str(work / "out.jsonl")),
                       capture_output=True, env=ENV, timeout=60)
    assert r.returncode == 0 and r.stderr == b""
    assert len((work / "out.jsonl").read_bytes().splitlines()) == 50_000
    assert not list(work.glob(".out.jsonl.*"))
    assert only_entry(work)["status"] == "completed"


@pytest.mark.parametrize(("before", "after"), [(None, 0o640), (0o604, 0o604), (0o6755, 0o755)],
                         ids=["new", "replaced", "replaced set-id"])
def test_a_published_file_has_the_mode_a_shell_redirection_would_give(work, before, after):
    """The temporary file is made readable by its owner only; published as it was, a new
    output ignored the umask (0600 where ``> out.jsonl`` gives 0640 under umask 027), and
    a replaced one lost its mode, so its readers could no longer read it."""
    out = work / "out.jsonl"
    if before is not None:
        out.write_bytes(b"previous output\n")
        out.chmod(before)
    r = subprocess.run(cmd(work, "-i", str(work / "in.jsonl"), "-o", str(out)),
                       capture_output=True, env=ENV, timeout=60,
                       preexec_fn=lambda: os.umask(0o027))
    assert r.returncode == 0, r.stderr
    assert out.stat().st_mode & 0o7777 == after


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_named_pipe_is_written_in_place_not_replaced(work, workers):
    """Found by review: the output was renamed over whatever was at its path, so that
    ``-o /dev/null`` run as root replaced the device with a regular file, and a named
    pipe's reader got nothing and hung. A FIFO stands for any non-regular file here."""
    import threading

    fifo = work / "out.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    r = subprocess.run(cmd(work, "-i", str(work / "in.jsonl"), "-o", str(fifo), "-w", workers),
                       capture_output=True, env=ENV, timeout=60)
    reader.join(timeout=60)
    assert r.returncode == 0 and r.stderr == b""
    assert fifo.is_fifo() and len(got[0].splitlines()) == 50_000
    assert not list(work.glob(".out.fifo.*"))
    assert only_entry(work)["status"] == "completed"


def test_dev_stdout_is_the_stream_the_shell_opened(work):
    """Found by review: /dev/stdout was resolved to the file behind it and a temporary file
    renamed over it, so ``-o /dev/stdout >> log`` replaced the log instead of appending,
    and /dev/fd/N or a pipe behind /dev/stdout failed (no such file)."""
    log = work / "log.jsonl"
    log.write_bytes(b"PRE\n")
    with open(log, "ab") as f:
        r = subprocess.run(cmd(work, "-i", str(work / "in.jsonl"), "-o", "/dev/stdout"),
                           stdout=f, stderr=subprocess.PIPE, env=ENV, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = log.read_bytes().splitlines()
    assert lines[0] == b"PRE" and len(lines) == 50_001
    r = subprocess.run(cmd(work, "-i", str(work / "in.jsonl"), "-o", "/dev/fd/1"),
                       capture_output=True, env=ENV, timeout=60)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 50_000


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_failed_run_into_a_gzip_pipe_never_looks_complete(work, workers):
    """Found by review: written in place, a failed run's .gz output still ended as a whole
    gzip stream, so its reader took the first lines for all of them."""
    import threading

    data = gzip.compress((work / "in.jsonl").read_bytes())
    (work / "cut.jsonl.gz").write_bytes(data[:len(data) // 2])
    fifo = work / "out.jsonl.gz"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    r = subprocess.run(cmd(work, "-i", str(work / "cut.jsonl.gz"), "-o", str(fifo),
                           "-w", workers), capture_output=True, env=ENV, timeout=60)
    reader.join(timeout=60)
    assert r.returncode == 74 and b"the output is incomplete" not in r.stderr
    with pytest.raises(EOFError):
        gzip.decompress(got[0])


@pytest.mark.parametrize(("target", "message"), [
    ("/dev/fd/99999999999", b"cannot write output (No such file or directory)"),
    ("/dev/fd/0", b"cannot write output (not open for writing); nothing was written")])
def test_a_descriptor_that_cannot_take_the_output_is_an_io_error(work, target, message):
    """Found by review: a descriptor number too large was an internal error (exit 70),
    and standard input as the output said the output was incomplete."""
    with open(work / "in.jsonl", "rb") as stdin:
        r = subprocess.run(cmd(work, "-i", str(work / "in.jsonl"), "-o", target),
                           stdin=stdin, capture_output=True, env=ENV, timeout=60)
    assert r.returncode == 74 and message in r.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_empty_gzip_output_is_still_gzip(work, workers):
    """Found by review: with workers, a run that wrote no record left a 0-byte .gz file,
    which gzip takes for a truncated one."""
    (work / "empty.jsonl").write_bytes(b"")
    r = subprocess.run(cmd(work, "-i", str(work / "empty.jsonl"), "-o",
                           str(work / "out.jsonl.gz"), "-w", workers),
                       capture_output=True, env=ENV, timeout=60)
    assert r.returncode == 0, r.stderr
    assert gzip.decompress((work / "out.jsonl.gz").read_bytes()) == b""


def test_a_dpo_report_that_cannot_be_written_is_an_io_error(work):
    """Found by review: explain and audit report ended in an internal error (exit 70)."""
    r = subprocess.run([sys.executable, "-m", "pseudonym", "explain", "xapi", "-o",
                        str(work / "no" / "dir" / "r.md")], capture_output=True, env=ENV,
                       timeout=60)
    assert r.returncode == 74 and b"r.md: cannot write output (No such file" in r.stderr


@pytest.mark.parametrize(("output", "code"), [("out", 0), ("-", 74)])
def test_closed_standard_output_is_an_error_only_when_written_to(work, output, code):
    """Found by review: with standard output closed (``>&-``), every command ended in a
    traceback; and the next file opened took descriptor 1."""
    target = str(work / "out.jsonl") if output == "out" else "-"
    r = subprocess.run(cmd(work, "-i", str(work / "in.jsonl"), "-o", target),
                       stderr=subprocess.PIPE, env=ENV, timeout=60,
                       preexec_fn=lambda: os.close(1))
    assert r.returncode == code and b"Traceback" not in r.stderr
    if code:
        assert b"standard output: cannot write (Bad file descriptor)" in r.stderr
    else:
        assert len((work / "out.jsonl").read_bytes().splitlines()) == 50_000


def test_a_symbolic_link_is_written_through(work):
    (work / "real.jsonl").write_text("old\n")
    (work / "out.jsonl").symlink_to("real.jsonl")
    r = subprocess.run(cmd(work, "-i", str(work / "in.jsonl"), "-o", str(work / "out.jsonl")),
                       capture_output=True, env=ENV, timeout=60)
    assert r.returncode == 0 and (work / "out.jsonl").is_symlink()
    assert len((work / "real.jsonl").read_bytes().splitlines()) == 50_000


@pytest.mark.parametrize(("name", "message"), [
    ("outdir", b"outdir: is a directory, not an output file; no output file was published"),
    ("", b"the output file name is empty; no output file was published")])
def test_an_output_that_cannot_be_a_file_fails_before_the_run(work, name, message):
    """Found by review: the run went through, its audit entry said completed, and only
    then did the rename fail."""
    (work / "outdir").mkdir()
    target = str(work / name) if name else ""
    r = subprocess.run(cmd(work, "-i", str(work / "in.jsonl"), "-o", target),
                       capture_output=True, env=ENV, timeout=60)
    assert r.returncode == 74 and message in r.stderr
    entry = only_entry(work)
    assert entry["status"] == "failed" and entry["records"]["read"] == 0
    assert list((work / "outdir").iterdir()) == []


@pytest.mark.parametrize("content", [b"[" * 100_000 + b"\n", b"\xff\xfe\n", b"\x00" * 10,
                                     b'{"prev": 1}\n'], ids=["deep", "binary", "nul", "type"])
def test_audit_verify_on_a_hostile_file(tmp_path, content):
    """Regression (found by hand): a deeply nested line made `audit verify` crash with
    an internal error instead of naming the broken entry."""
    (tmp_path / "audit.jsonl").write_bytes(content)
    r = subprocess.run([sys.executable, "-m", "pseudonym", "audit", "verify",
                        str(tmp_path / "audit.jsonl")], capture_output=True, timeout=60)
    assert r.returncode == 1 and b"broken at entry 1" in r.stderr and b"Traceback" not in r.stderr


def test_unbuffered_standard_output_gets_every_byte(monkeypatch):
    """Under ``python -u`` standard output is a raw stream, whose writes may be partial
    (a pipe, a signal): the output goes through a buffer that writes everything, and
    finishing the run leaves standard output open."""
    import io

    from pseudonym.jsonlines import AtomicOutput

    class Dribble(io.RawIOBase):
        def __init__(self) -> None:
            self.got = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b) -> int:
            n = min(len(b), 1000)
            self.got += bytes(b[:n])
            return n

    raw = Dribble()
    monkeypatch.setattr(sys, "stdout", type("Out", (), {"buffer": raw})())
    payload = bytes(range(256)) * 400
    with AtomicOutput(None) as out:
        out.stream.write(payload)
        out.commit()
    del out
    assert bytes(raw.got) == payload
    assert not raw.closed
    with pytest.raises(RuntimeError), AtomicOutput(None) as out:  # a run that fails midway
        out.stream.write(b"partial")
        raise RuntimeError
    assert bytes(raw.got) == payload + b"partial"  # what was written reached the stream
