"""``anonymise --workers N``: same output, same line numbers, one audit entry, any N."""

from __future__ import annotations

import io
import json
import os
import shlex
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pseudonym import KeyRing, MasterKey, Policy, compile_plan, parallel
from pseudonym.engine import RunStats
from pseudonym.errors import PseudonymError
from pseudonym.jsonlines import BOM
from pseudonym.parallel import WorkerSpec, file_ranges, iter_blocks, run_parallel, stream_blocks

from .conftest import EXAMPLES

POLICY = str(EXAMPLES / "research.yaml")
KEY = MasterKey.generate()


def cli(*args, stdin=None, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("PSEUDONYM_")}
    e["PSEUDONYM_KEY"] = KEY.text
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "pseudonym", *args], input=stdin,
                          capture_output=True, env=e, timeout=120)


@pytest.fixture(scope="module")
def big_input(tmp_path_factory) -> bytes:
    """About 3 MB (several 1 MB blocks) of traces, with bad and blank lines spread in."""
    base = (EXAMPLES / "traces.jsonl").read_bytes().splitlines()
    lines = []
    for i in range(2500):
        lines.extend(base)
        if i % 700 == 3:
            lines.append(b'{"id": "broken"')
        if i % 900 == 5:
            lines.append(b"")
        if i % 1100 == 7:
            lines.append(b"[1, 2]")
    return b"\n".join(lines) + b"\n"


def run_cli(tmp_path, data: bytes, workers: int, name: str):
    src, out, audit = tmp_path / f"{name}.in", tmp_path / f"{name}.out", tmp_path / f"{name}.a"
    src.write_bytes(data)
    r = cli("anonymise", "--policy", POLICY, "-i", str(src), "-o", str(out), "-a", str(audit),
            "--workers", str(workers), "--max-errors", "1000")
    entries = [json.loads(x) for x in audit.read_text().splitlines()]
    return r, out.read_bytes(), entries


def test_workers_give_the_single_process_output_line_numbers_and_counts(tmp_path, big_input):
    r1, out1, a1 = run_cli(tmp_path, big_input, 1, "one")
    r3, out3, a3 = run_cli(tmp_path, big_input, 3, "three")
    assert r1.returncode == r3.returncode == 1  # some lines are rejected
    assert out3 == out1
    assert out1.count(b"\n") == a1[0]["records"]["written"] > 25_000
    assert r3.stderr == r1.stderr  # same rejections, same line numbers, same order
    first_bad = big_input.split(b"\n").index(b'{"id": "broken"') + 1
    assert f"line {first_bad}: rejected: invalid-json".encode() in r1.stderr
    assert len(a1) == len(a3) == 1
    drop = ("run_id", "started", "ended", "prev", "hmac")
    assert {k: v for k, v in a3[0].items() if k not in drop} == \
        {k: v for k, v in a1[0].items() if k not in drop}
    assert a3[0]["records"]["rejected"] == 4 + 3
    assert a3[0]["records"]["blank_lines"] == 3


def test_workers_zero_means_one_per_core_and_negative_is_refused(tmp_path):
    data = (EXAMPLES / "traces.jsonl").read_bytes()
    r = cli("anonymise", "--policy", POLICY, "--workers", "0", stdin=data)
    assert r.returncode == 0, r.stderr
    assert r.stdout == cli("anonymise", "--policy", POLICY, stdin=data).stdout
    r = cli("anonymise", "--policy", POLICY, "--workers", "-2", stdin=data)
    assert r.returncode == 2 and b"--workers" in r.stderr


def test_a_worker_that_finds_another_key_stops_the_run(tmp_path, monkeypatch):
    """Workers that start afresh (spawn) load the key themselves and check its id."""
    monkeypatch.setattr(parallel, "_start_methods", lambda: ["spawn"])
    policy = Policy.load(POLICY)
    mine, theirs = KeyRing([MasterKey.generate()]), MasterKey.generate()
    monkeypatch.setenv("PSEUDONYM_KEY", theirs.text)
    spec = WorkerSpec(POLICY, policy.sha256, None, tuple(mine.key_ids))
    data = (EXAMPLES / "traces.jsonl").read_bytes()
    with pytest.raises(PseudonymError, match="worker process stopped"):
        run_parallel(compile_plan(policy, mine), spec, iter([(data,)]), 2,
                     io.BytesIO().write, RunStats())


def test_spawned_workers_rebuild_the_same_plan(monkeypatch):
    monkeypatch.setattr(parallel, "_start_methods", lambda: ["spawn"])
    monkeypatch.setenv("PSEUDONYM_KEY", KEY.text)
    policy, keys = Policy.load(POLICY), KeyRing.from_env()
    plan = compile_plan(policy, keys)
    data = (EXAMPLES / "traces.jsonl").read_bytes() * 50
    spec = WorkerSpec(POLICY, policy.sha256, None, tuple(keys.key_ids))
    want = cli("anonymise", "--policy", POLICY, stdin=data).stdout
    got, stats = io.BytesIO(), RunStats()
    run_parallel(plan, spec, stream_blocks(io.BytesIO(data), 4000), 2, got.write, stats)
    assert got.getvalue() == want
    assert stats.read == stats.written == 600


def test_a_finished_run_leaves_no_worker_process_behind(monkeypatch):
    """Workers are reaped before the run returns: nothing outlives the command, and its
    CPU time (``time``, rusage) counts theirs."""
    import multiprocessing
    monkeypatch.setenv("PSEUDONYM_KEY", KEY.text)
    policy, keys = Policy.load(POLICY), KeyRing.from_env()
    data = (EXAMPLES / "traces.jsonl").read_bytes() * 50
    spec = WorkerSpec(POLICY, policy.sha256, None, tuple(keys.key_ids))
    before = set(multiprocessing.active_children())
    run_parallel(compile_plan(policy, keys), spec, stream_blocks(io.BytesIO(data), 4000), 2,
                 io.BytesIO().write, RunStats())
    assert set(multiprocessing.active_children()) <= before


lines_st = st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=30)


@given(lines_st, st.integers(1, 50), st.booleans(), st.booleans())
def test_blocks_hold_whole_lines_numbered_from_one(lines, size, final_newline, bom):
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    raw = (BOM if bom else b"") + data
    blocks = list(iter_blocks(io.BytesIO(raw), size))
    assert b"".join(b for _, b in blocks) == raw.removeprefix(BOM)  # one leading BOM goes
    expected_line = 1
    for first, block in blocks[:-1]:
        assert block.endswith(b"\n")
        assert first == expected_line
        expected_line += block.count(b"\n")
    if blocks:
        assert blocks[-1][0] == expected_line


class _Trickle(io.RawIOBase):
    """A pipe: each read returns at most a few bytes."""

    def __init__(self, data: bytes, most: int) -> None:
        self.data, self.most = data, most

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.most if n < 0 else min(n, self.most)
        out, self.data = self.data[:n], self.data[n:]
        return out


@given(lines_st, st.integers(1, 50), st.integers(1, 7), st.booleans(), st.booleans())
def test_stream_blocks_hold_whole_lines_of_about_the_size_asked(lines, size, most,
                                                                final_newline, bom):
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    raw = (BOM if bom else b"") + data
    blocks = [t[0] for t in stream_blocks(_Trickle(raw, most), size)]
    assert b"".join(blocks) == raw.removeprefix(BOM)
    assert all(b.endswith(b"\n") for b in blocks[:-1])
    assert all(blocks)
    # short reads are joined: one block at most per `size` bytes read, plus the tail
    assert len(blocks) <= -(-len(raw) // size) + 1


@given(lines_st, st.integers(1, 50), st.booleans(), st.booleans(), st.integers(0, 3),
       st.integers(1, 20))
def test_file_ranges_hold_whole_lines(tmp_path_factory, lines, size, final_newline, bom,
                                      workers, tail):
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    path = tmp_path_factory.mktemp("ranges") / "in.jsonl"
    path.write_bytes((BOM if bom else b"") + data)
    raw = path.read_bytes()
    ranges = [(start, end) for _, _, start, end in file_ranges(str(path), size, workers, tail)]
    assert b"".join(raw[a:b] for a, b in ranges) == raw.removeprefix(BOM)
    assert all(raw[b - 1:b] == b"\n" for _, b in ranges[:-1])


def test_file_ranges_shrink_towards_the_end_so_that_workers_finish_together(tmp_path):
    """With equal ranges, one worker is left alone with the last one while the others
    wait; shrinking ranges leave it at most a small one."""
    path = tmp_path / "in.jsonl"
    path.write_bytes((b"x" * 99 + b"\n") * 2000)

    def sizes(*args, **kw):
        return [end - start for _, _, start, end in file_ranges(str(path), *args, **kw)]

    plain = sizes(10_000)
    assert len(set(plain[:-1])) == 1 and plain[0] >= 10_000
    shared = sizes(10_000, workers=2, tail=1_000)
    assert sum(shared) == sum(plain) == 200_000
    assert shared[0] == plain[0] and shared == sorted(shared[:-1], reverse=True) + shared[-1:]
    assert all(1_000 <= s <= 1_100 for s in shared[-3:-1])
    assert len(shared) < 2 * len(plain)


def test_stdin_and_gzip_input_go_through_the_parent(tmp_path, big_input):
    import gzip
    gz = tmp_path / "in.jsonl.gz"
    gz.write_bytes(gzip.compress(big_input))
    one = cli("anonymise", "--policy", POLICY, stdin=big_input)
    piped = cli("anonymise", "--policy", POLICY, "--workers", "2", stdin=big_input)
    zipped = cli("anonymise", "--policy", POLICY, "--workers", "2", "-i", str(gz))
    assert one.stdout == piped.stdout == zipped.stdout
    assert one.stderr == piped.stderr == zipped.stderr


RANGED_ONLY = """
import sys
from pseudonym import cli

def refuse(*args):
    raise AssertionError("the main process read standard input")

def growing(source, *args, **kw):  # the file grows once the first range is handed out
    for n, task in enumerate(real(source, *args, **kw)):
        yield task
        if n == 0 and sys.argv[1]:
            with open(sys.argv[1], "ab") as f:
                f.write(b"appended during the run\\n")

real, cli.file_ranges, cli.stream_blocks = cli.file_ranges, growing, refuse
sys.exit(cli.main(sys.argv[2:]))
"""


def cli_fd(args: list[str], stdin_fd: int, grows: str = "", shell_tail: str = ""):
    """The command with standard input given as a descriptor (``< file`` in a shell), in a
    process where the main process may not read standard input itself (workers must read
    their ranges), the file growing if ``grows`` names it, then more shell reading the
    same standard input."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("PSEUDONYM_")}
    e["PSEUDONYM_KEY"] = KEY.text
    cmd = " ".join(map(shlex.quote, [sys.executable, "-c", RANGED_ONLY, grows, *args]))
    return subprocess.run(["sh", "-c", cmd + shell_tail], stdin=stdin_fd,
                          capture_output=True, env=e, timeout=120)


def test_stdin_redirected_from_a_file_is_read_by_the_workers_from_where_it_stands(
        tmp_path, big_input):
    """``< file``: workers read their byte ranges themselves (the main process never reads
    standard input), starting at the offset the shell left (here after the first 100
    lines). Standard input is left where the treated ranges end, as if the command had
    read it: a command after it sees no treated record, and what was appended during the
    run stays for it."""
    src = tmp_path / "in.jsonl"
    src.write_bytes(big_input)
    skip = len(b"".join(big_input.splitlines(keepends=True)[:100]))
    one = cli("anonymise", "--policy", POLICY, stdin=big_input[skip:])
    fd = os.open(src, os.O_RDONLY)
    try:
        os.lseek(fd, skip, os.SEEK_SET)
        two = cli_fd(["anonymise", "--policy", POLICY, "--workers", "2",
                      "-o", str(tmp_path / "out.jsonl")], fd, str(src), "; echo; cat")
    finally:
        os.close(fd)
    assert (tmp_path / "out.jsonl").read_bytes() == one.stdout
    assert two.stderr == one.stderr  # same rejections, numbered from the offset
    assert two.stdout == b"\nappended during the run\n"


@pytest.mark.parametrize(("given", "ranged"), [("file", True), ("pipe", False)])
def test_only_stdin_from_a_regular_file_is_handed_out_by_ranges(tmp_path, given, ranged):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"{}\n")
    code = ("import sys; from pseudonym.cli import _ranged_input; "
            "print(type(_ranged_input(sys.stdin.buffer, '-')).__name__)")
    with open(src, "rb") as f:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           stdin=f if given == "file" else None,
                           input=None if given == "file" else "{}\n")
    assert r.stdout.strip() == ("int" if ranged else "NoneType"), r.stderr


def test_gzip_output_with_workers_is_one_valid_gzip_file(tmp_path, big_input):
    """Workers compress their blocks as gzip members; the file decompresses as one."""
    import gzip
    src = tmp_path / "in.jsonl"
    src.write_bytes(big_input)
    one, two = tmp_path / "one.jsonl.gz", tmp_path / "two.jsonl.gz"
    cli("anonymise", "--policy", POLICY, "-i", str(src), "-o", str(one))
    cli("anonymise", "--policy", POLICY, "-i", str(src), "-o", str(two), "--workers", "2")
    with gzip.open(one) as f1, gzip.open(two) as f2:
        assert f1.read() == f2.read()
    r = subprocess.run(["gzip", "-t", str(two)], capture_output=True)
    assert r.returncode == 0, r.stderr


def test_lines_trickling_through_a_pipe_come_out_as_they_arrive():
    """A live stream (stdin kept open) is not held back until a block fills."""
    import select
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSEUDONYM_")}
    env["PSEUDONYM_KEY"] = KEY.text
    p = subprocess.Popen([sys.executable, "-m", "pseudonym", "anonymise", "--policy", POLICY],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    try:
        first = (EXAMPLES / "traces.jsonl").read_bytes().splitlines()[0]
        p.stdin.write(first + b"\n")
        p.stdin.flush()
        ready, _, _ = select.select([p.stdout], [], [], 30)
        assert ready, "no output while the input stays open"
        assert json.loads(p.stdout.readline())["id"] == json.loads(first)["id"]
    finally:
        p.stdin.close()
        p.wait(timeout=30)
    assert p.returncode == 0


def test_a_failing_worker_stops_the_run_and_leaves_nothing_behind(tmp_path, monkeypatch):
    """A worker's error (a full disk, another key) stops the run with that error; the
    directory holds only what the caller opened."""
    monkeypatch.setenv("PSEUDONYM_KEY", KEY.text)
    policy, keys = Policy.load(POLICY), KeyRing.from_env()
    data = (EXAMPLES / "traces.jsonl").read_bytes() * 50
    want = cli("anonymise", "--policy", POLICY, stdin=data).stdout
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    spec = WorkerSpec(POLICY, policy.sha256, None, tuple(keys.key_ids))
    with open(out_dir / "result.jsonl", "wb") as f:
        run_parallel(compile_plan(policy, keys), spec, stream_blocks(io.BytesIO(data), 4000),
                     2, f.write, RunStats())
    assert (out_dir / "result.jsonl").read_bytes() == want
    assert os.listdir(out_dir) == ["result.jsonl"]

    real_run_block, done = parallel.run_block, []

    def disk_full_at_a_workers_third_block(*args):  # forked workers inherit it
        done.append(1)
        if len(done) == 3:
            raise OSError(28, "No space left on device")
        return real_run_block(*args)

    monkeypatch.setattr(parallel, "run_block", disk_full_at_a_workers_third_block)
    with open(out_dir / "failed.jsonl", "wb") as f, pytest.raises(OSError, match="space"):
        run_parallel(compile_plan(policy, keys), spec, stream_blocks(io.BytesIO(data), 4000),
                     2, f.write, RunStats())
    assert sorted(os.listdir(out_dir)) == ["failed.jsonl", "result.jsonl"]

    monkeypatch.setattr(parallel, "run_block", real_run_block)
    monkeypatch.setattr(parallel, "_start_methods", lambda: ["spawn"])
    monkeypatch.setenv("PSEUDONYM_KEY", MasterKey.generate().text)  # workers find another
    with open(out_dir / "failed.jsonl", "wb") as f, \
            pytest.raises(PseudonymError, match="worker process stopped"):
        run_parallel(compile_plan(policy, keys), spec, stream_blocks(io.BytesIO(data), 4000),
                     2, f.write, RunStats())
    assert sorted(os.listdir(out_dir)) == ["failed.jsonl", "result.jsonl"]


def test_blocks_and_results_too_big_for_a_slot_travel_pickled(monkeypatch):
    """Blocks and results go through shared memory when they fit their slot and through
    the pipe when they do not; the output is the same either way, in order, and slots
    are reused many times over (many more blocks than slots)."""
    monkeypatch.setenv("PSEUDONYM_KEY", KEY.text)
    policy, keys = Policy.load(POLICY), KeyRing.from_env()
    lines = (EXAMPLES / "traces.jsonl").read_bytes().splitlines(keepends=True)
    long = json.loads(lines[0])
    long["object"]["definition"] = {"name": {"en": "x" * 5000}}  # kept: a long result too
    data = b"".join(lines[i % len(lines)] if i % 40 else json.dumps(long).encode() + b"\n"
                    for i in range(1200))
    want = cli("anonymise", "--policy", POLICY, stdin=data).stdout
    spec = WorkerSpec(POLICY, policy.sha256, None, tuple(keys.key_ids))
    monkeypatch.setattr(parallel, "SLOT_BYTES", 3000)
    sent: list[bool] = []
    real_put = parallel._Slots.put

    def put(self, slot, half, payload):
        ok = real_put(self, slot, half, payload)
        if half == parallel._Slots.IN:  # the parent's side; workers record in their copy
            sent.append(ok)
        return ok

    came_back: list[str] = []
    real_write_out = parallel._Slots.write_out

    def write_out(self, write, result):
        came_back.append("slot" if type(result) is tuple else "pipe")
        return real_write_out(self, write, result)

    monkeypatch.setattr(parallel._Slots, "put", put)
    monkeypatch.setattr(parallel._Slots, "write_out", write_out)
    got = io.BytesIO()
    run_parallel(compile_plan(policy, keys), spec, stream_blocks(io.BytesIO(data), 2500), 2,
                 got.write, RunStats())
    assert got.getvalue() == want
    assert len(sent) > 3 * parallel.IN_FLIGHT * 2 and True in sent and False in sent
    assert {"slot", "pipe"} <= set(came_back)


@pytest.mark.parametrize("linux,wait,want", [
    (True, False, [(0, 1200), (1200, 1200)]), (True, True, [(0, 1200), (1200, 1200)]),
    (False, True, [(0, 1200), (0, 2400)]), (False, False, []),
])
def test_the_output_goes_to_disk_as_it_is_written(tmp_path, monkeypatch, linux, wait, want):
    """Each SYNC_BYTES, the output's new bytes go to disk: on Linux the writes are started
    (posix_fadvise) and the run goes on; elsewhere they are waited for (fdatasync), by
    a caller with idle time only. The fsync before publishing is then not the whole
    output at once. Standard output is left alone."""
    from pseudonym import jsonlines

    synced: list[tuple[int, int]] = []
    monkeypatch.setattr(jsonlines, "SYNC_BYTES", 1000)
    monkeypatch.setattr(jsonlines, "STARTS_WRITEBACK", linux)

    def advise(fd: int, offset: int, length: int, advice: int) -> None:
        assert advice == os.POSIX_FADV_DONTNEED and os.fstat(fd).st_size == offset + length
        synced.append((offset, length))
    monkeypatch.setattr(os, "posix_fadvise", advise, raising=False)
    monkeypatch.setattr(os, "POSIX_FADV_DONTNEED", 4, raising=False)
    monkeypatch.setattr(os, "fdatasync", lambda fd: synced.append((0, os.fstat(fd).st_size)),
                        raising=False)
    with jsonlines.AtomicOutput(tmp_path / "out.jsonl") as out:
        for _ in range(5):
            out.stream.write(b"x" * 600)
            out.sync_so_far(wait)
        out.commit()
    assert synced == want
    assert (tmp_path / "out.jsonl").read_bytes() == b"x" * 3000
    with jsonlines.AtomicOutput(None) as out:
        out.sync_so_far(wait)
    assert synced == want


@pytest.mark.parametrize("workers", [1, 2])
def test_a_run_sends_its_output_to_disk_as_it_goes(tmp_path, monkeypatch, workers):
    from pseudonym import cli, jsonlines

    started: list[int] = []
    monkeypatch.setattr(jsonlines, "SYNC_BYTES", 500_000)
    monkeypatch.setattr(jsonlines, "STARTS_WRITEBACK", True)
    monkeypatch.setattr(os, "posix_fadvise",
                        lambda fd, offset, length, advice: started.append(offset + length),
                        raising=False)
    monkeypatch.setattr(os, "POSIX_FADV_DONTNEED", 4, raising=False)
    policy = tmp_path / "p.yaml"
    policy.write_text('name: p\nversion: "1"\ndomain: d\nrules:\n'
                      "  - {path: $.id, action: keep, why: w}\n"
                      "  - {path: $.text, action: keep, why: w}\n")
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(b'{"id":%d,"text":"%s"}\n' % (i, b"x" * 200)
                             for i in range(25_000)))
    assert cli.main(["anonymise", "--policy", str(policy), "--quiet", "-i", str(src),
                     "-o", str(tmp_path / "out.jsonl"), "--workers", str(workers)]) == 0
    assert (tmp_path / "out.jsonl").read_bytes() == src.read_bytes()
    assert len(started) >= 3 and started == sorted(started)


_GUARDING: list[bool] = []
"""While set, the audit hook below fails any file creation or writing open, and any
memory map of a file (an audit hook cannot be removed: it is installed once, idle)."""


def _no_disk(event: str, args: tuple) -> None:
    if not _GUARDING:
        return
    if event == "open":
        path, mode, flags = args
        writing = (set(mode) & set("wax+") if isinstance(mode, str)
                   else (flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if writing and not isinstance(path, int) and not str(path).endswith(".pyc"):
            raise AssertionError(f"the run opened a file to write: {path}")
    elif event == "mmap.__new__" and args[0] != -1:
        raise AssertionError("the run mapped a file into memory")


@pytest.mark.parametrize("to_file", [True, False])
def test_raw_records_from_a_stream_are_never_written_to_a_file(tmp_path, monkeypatch,
                                                               to_file):
    """Nothing the run handles goes to disk but its output: blocks of raw input read from
    standard input and their results travel in memory (anonymous memory shared with
    forked workers, or pipes), so a killed run cannot leave personal data behind. Forked
    workers inherit the guards: opening a file to write, mapping a file, or writing a raw
    record to a file, in any process of the run, fails it."""
    import stat

    if not getattr(sys, "_pseudonym_no_disk_hook", False):
        sys.addaudithook(_no_disk)
        sys._pseudonym_no_disk_hook = True  # type: ignore[attr-defined]
    monkeypatch.setenv("PSEUDONYM_KEY", KEY.text)
    policy, keys = Policy.load(POLICY), KeyRing.from_env()
    marker = "raw.marker.person@example.org"
    record = {"id": "1", "actor": {"objectType": "Agent", "mbox": f"mailto:{marker}"},
              "verb": {"id": "https://w3id.org/xapi/video/verbs/played"}}
    data = (json.dumps(record) + "\n").encode() * 3000
    spec = WorkerSpec(POLICY, policy.sha256, None, tuple(keys.key_ids))
    plan = compile_plan(policy, keys)
    out = tmp_path / "out.jsonl"
    target = open(out, "wb") if to_file else io.BytesIO()  # noqa: SIM115
    real_write = os.write

    def guarded_write(fd: int, payload) -> int:
        if stat.S_ISREG(os.fstat(fd).st_mode) and marker.encode() in bytes(payload):
            raise AssertionError("a raw record was written to a file")
        return real_write(fd, payload)

    monkeypatch.setattr(os, "write", guarded_write)
    _GUARDING.append(True)
    try:
        with target:
            run_parallel(plan, spec, stream_blocks(io.BytesIO(data), 20_000), 2,
                         target.write, RunStats())
            written = target.getvalue() if not to_file else None
    finally:
        _GUARDING.clear()
    monkeypatch.undo()
    written = out.read_bytes() if to_file else written
    assert written.count(b"\n") == 3000 and marker.encode() not in written
    assert os.listdir(tmp_path) == (["out.jsonl"] if to_file else [])


def test_without_shared_memory_blocks_and_results_travel_pickled(monkeypatch):
    """Where the memory for the slots is refused (strict overcommit, a limit), the run
    goes on through pipes, with the same output."""
    monkeypatch.setenv("PSEUDONYM_KEY", KEY.text)
    policy, keys = Policy.load(POLICY), KeyRing.from_env()
    data = (EXAMPLES / "traces.jsonl").read_bytes() * 50
    want = cli("anonymise", "--policy", POLICY, stdin=data).stdout

    def refused(*args, **kwargs):
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(parallel.mmap, "mmap", refused)
    got = io.BytesIO()
    spec = WorkerSpec(POLICY, policy.sha256, None, tuple(keys.key_ids))
    run_parallel(compile_plan(policy, keys), spec, stream_blocks(io.BytesIO(data), 4000), 2,
                 got.write, RunStats())
    assert got.getvalue() == want
