"""pseudonym.dask on a real LocalCluster with 2 worker processes."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("distributed", reason="the dask extra is not installed "
                    "(pip install -e '.[test,dask]')")

import cloudpickle
import dask.bag as db
from distributed import Client, LocalCluster

from pseudonym import AuditLog, KeyRing, MasterKey, Policy, RecordError, anonymise
from pseudonym.dask import KeyRef, anonymise_bag
from pseudonym.errors import KeyRingError, PseudonymError, StreamError

from .conftest import EXAMPLES, SHARED

POLICY = str(EXAMPLES / "research.yaml")
KEY = MasterKey.generate()
DROP = ("run_id", "started", "ended", "prev", "hmac")


@pytest.fixture(scope="module")
def key_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("key") / "pseudonym.key"
    path.write_text(KEY.text + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def client():
    cluster = LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                           dashboard_address=None)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """The shared statements cut into 3 .jsonl.gz files, with a bad and a blank line."""
    if not SHARED.exists():
        pytest.skip(f"shared sample data not found at {SHARED}")
    with gzip.open(SHARED, "rb") as f:
        lines = f.read().splitlines()[:9000]
    lines.insert(4321, b'{"actor": {"account": ')
    lines.insert(7000, b"")
    d = tmp_path_factory.mktemp("in")
    for i in range(3):
        with gzip.open(d / f"part-{i}.jsonl.gz", "wb") as f:
            f.write(b"\n".join(lines[i * 3001:(i + 1) * 3001]) + b"\n")
    return d, b"\n".join(lines) + b"\n"


def run_cli(tmp_path, data: bytes, key_file, rejected_line: int = 4322):
    (tmp_path / "all.jsonl").write_bytes(data)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSEUDONYM_")}
    r = subprocess.run([sys.executable, "-m", "pseudonym", "anonymise", "--policy", POLICY,
                        "--key-file", str(key_file), "-i", str(tmp_path / "all.jsonl"),
                        "-o", str(tmp_path / "cli.jsonl"), "-a", str(tmp_path / "cli.audit")],
                       capture_output=True, env=env, timeout=120)
    assert r.returncode == 1
    assert f"line {rejected_line}: rejected: invalid-json".encode() in r.stderr
    return (tmp_path / "cli.jsonl").read_bytes(), json.loads(
        (tmp_path / "cli.audit").read_text())



def example_lines() -> list[str]:
    return (EXAMPLES / "traces.jsonl").read_text().splitlines()


def example_job(key_file, npartitions: int = 3):
    """The example traces, in ``npartitions``, through the example policy with a key file."""
    bag = db.from_sequence(example_lines(), npartitions=npartitions)
    assert bag.npartitions == npartitions
    return anonymise_bag(bag, POLICY, key=KeyRef.file(key_file))


def example_output() -> list[dict]:
    """What any run of ``example_job`` writes, record by record."""
    return list(anonymise([json.loads(x) for x in example_lines()], Policy.load(POLICY),
                          keys=KeyRing([KEY])))


def test_bag_output_is_the_cli_output_line_for_line(client, parts, key_file, tmp_path):
    src, data = parts
    want, cli_entry = run_cli(tmp_path, data, key_file)
    bag = db.read_text(str(src / "part-*.jsonl.gz"))
    assert bag.npartitions == 3
    job = anonymise_bag(bag, POLICY, key=KeyRef.file(key_file), on_error="skip")
    out = job.bag.to_textfiles(str(tmp_path / "out" / "*.jsonl.gz"), last_endline=True,
                               compute=False)
    with AuditLog.open(tmp_path / "dask.audit") as audit:
        stats = job.run(out, audit=audit)
    got = b""
    for i in range(3):
        with gzip.open(tmp_path / "out" / f"{i}.jsonl.gz") as f:
            got += f.read()
    assert got.splitlines() == want.splitlines() and got == want
    assert stats.rejected == 1 and stats.written == 9000
    entries = [json.loads(x) for x in (tmp_path / "dask.audit").read_text().splitlines()]
    assert len(entries) == 1
    assert {k: v for k, v in entries[0].items() if k not in DROP} == \
        {k: v for k, v in cli_entry.items() if k not in DROP}
    assert entries[0]["errors"]["invalid-json"]["records"] == [4322]  # numbered across files


DEFAULT_SCHEDULER_RUN = """
import sys
import dask.bag as db
from pseudonym import AuditLog
from pseudonym.dask import KeyRef, anonymise_bag
src, out, audit, policy, key_file = sys.argv[1:]
job = anonymise_bag(db.read_text(src), policy, key=KeyRef.file(key_file), on_error="skip")
with AuditLog.open(audit) as log:
    job.run(job.to_textfiles(out), audit=log)
"""


def test_the_module_example_runs_on_the_default_scheduler(parts, key_file, tmp_path):
    """Found by review: with no Client and no scheduler set (a bag's default, a pool of
    processes), the module's example failed: its staged writers and its counts wanted
    different schedulers, and, once one was set, a pool of processes could not send the
    generator read_text's unfused graph passes between its tasks."""
    src, data = parts
    want, cli_entry = run_cli(tmp_path, data, key_file)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PSEUDONYM_", "DASK_"))}
    r = subprocess.run([sys.executable, "-c", DEFAULT_SCHEDULER_RUN,
                        str(src / "part-*.jsonl.gz"), str(tmp_path / "out" / "*.jsonl"),
                        str(tmp_path / "dask.audit"), POLICY, str(key_file)],
                       capture_output=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    got = b"".join((tmp_path / "out" / f"{i}.jsonl").read_bytes() for i in range(3))
    assert got == want
    entry = json.loads((tmp_path / "dask.audit").read_text())
    assert {k: v for k, v in entry.items() if k not in DROP} == \
        {k: v for k, v in cli_entry.items() if k not in DROP}


def test_the_key_is_never_in_the_task_graph(parts, key_file):
    src, _ = parts
    job = anonymise_bag(db.read_text(str(src / "part-*.jsonl.gz")), POLICY,
                        key=KeyRef.file(key_file))
    graph = cloudpickle.dumps(dict(job.bag.__dask_graph__())) + cloudpickle.dumps(
        dict(job._counts.__dask_graph__()))
    secret = KEY.text.split(".")[2]
    assert secret.encode() not in graph and KEY._secret not in graph
    assert str(key_file).encode() in graph and KEY.key_id.encode() in graph


def test_workers_read_the_key_from_their_environment_and_refuse_another(client, monkeypatch):
    """Workers inherit no key here; each loads it from its own environment when set."""
    records = [json.loads(x) for x in (EXAMPLES / "traces.jsonl").read_text().splitlines()]
    other = MasterKey.generate()

    def set_env(text):
        os.environ["PSEUDONYM_KEY"] = text

    client.run(set_env, KEY.text)
    try:
        bag = db.from_sequence(records, npartitions=2)
        job = anonymise_bag(bag, POLICY, key=KeyRef.env(key_ids=[KEY.key_id]),
                            input="records")
        job.run(job.bag)
        got = job.results[0]
        assert got == list(anonymise(records, Policy.load(POLICY), keys=KeyRing([KEY])))
        client.run(set_env, other.text)
        job = anonymise_bag(bag, POLICY, key=KeyRef.env(key_ids=[KEY.key_id]),
                            input="records")
        with pytest.raises(KeyRingError, match="expects"):
            job.run(job.bag)
    finally:
        client.run(lambda: os.environ.pop("PSEUDONYM_KEY", None))


def test_rejected_record_raises_after_the_run_is_recorded(client, key_file, tmp_path):
    lines = example_lines()
    lines.insert(7, "[1]")
    job = anonymise_bag(db.from_sequence(lines, npartitions=3), POLICY,
                        key=KeyRef.file(key_file))
    with AuditLog.open(tmp_path / "a") as audit, pytest.raises(RecordError) as e:
        job.run(job.bag, audit=audit)
    assert e.value.position == 8 and e.value.kind == "not-an-object"
    assert json.loads((tmp_path / "a").read_text())["records"]["rejected"] == 1


def test_outputs_and_counts_share_one_pass_over_the_data(monkeypatch, key_file, tmp_path):
    """Writers built from job.bag do not fuse their own copy of the anonymisation."""
    import dask

    import pseudonym.dask as pdask

    calls = []
    treat = pdask._treat
    monkeypatch.setattr(pdask, "_treat", lambda items, spec: calls.append(1) or treat(items,
                                                                                    spec))
    job = example_job(key_file)
    with dask.config.set(scheduler="sync"):
        writes = job.bag.to_textfiles(str(tmp_path / "*.jsonl.gz"), last_endline=True,
                                      compute=False)
        stats = job.run(writes)
    assert len(calls) == 3 and stats.written == 12


def published(directory) -> list[str]:
    """Everything under the output directory, hidden entries included."""
    if not directory.exists():
        return []
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


class WatchedAudit(AuditLog):
    """An audit log that notes which output files existed when its entry was written."""

    watch = None
    seen: list[str] | None = None

    def append(self, entry):
        self.seen = [p for p in published(self.watch) if not p.startswith(".")]
        return super().append(entry)


def test_staged_output_is_published_only_after_the_audit_entry(client, key_file, tmp_path):
    lines = example_lines()
    job = example_job(key_file)
    out = tmp_path / "out"
    writes = job.to_textfiles(str(out / "part-*.jsonl"))
    assert published(out) == []
    audit = WatchedAudit.open(tmp_path / "audit.jsonl")
    audit.watch = out
    stats = job.run(writes, audit=audit)
    assert audit.seen == []  # nothing published before the entry was written
    assert published(out) == ["part-0.jsonl", "part-1.jsonl", "part-2.jsonl"]
    got = "".join((out / f"part-{i}.jsonl").read_text() for i in range(3))
    want = [json.dumps(r, separators=(",", ":"), ensure_ascii=False) for r in anonymise(
        [json.loads(x) for x in lines], Policy.load(POLICY), keys=KeyRing([KEY]))]
    assert [json.loads(x) for x in got.splitlines()] == [json.loads(x) for x in want]
    assert got.endswith("\n") and stats.written == len(lines)
    assert job.results[0] == [str(out / f"part-{i}.jsonl") for i in range(3)]
    assert json.loads((tmp_path / "audit.jsonl").read_text())["status"] == "completed"


def test_a_failing_partition_leaves_no_output(client, key_file, tmp_path):
    """One partition fails at once while the others are still writing theirs."""
    import time

    def slow_or_failing(items):
        items = list(items)
        if "FAIL" in items:
            raise RuntimeError("this partition cannot be read")
        time.sleep(1)
        return items

    lines = example_lines()
    bag = db.from_sequence([*lines[:6], "FAIL", *lines[6:]], npartitions=3)
    assert bag.npartitions == 3
    job = anonymise_bag(bag.map_partitions(slow_or_failing), POLICY, key=KeyRef.file(key_file))
    out = tmp_path / "out"
    writes = job.to_textfiles(str(out / "part-*.jsonl.gz"))
    with AuditLog.open(tmp_path / "a") as audit, pytest.raises(RuntimeError, match="cannot"):
        job.run(writes, audit=audit)
    time.sleep(1.5)  # a writer still running after the run returned would show up by now
    assert published(out) == [] and not out.exists()
    assert json.loads((tmp_path / "a").read_text())["status"] == "failed"


def test_a_worker_without_the_key_leaves_no_output(client, tmp_path):
    lines = example_lines()
    out = tmp_path / "out"
    out.mkdir()
    (out / "README").write_text("not ours\n")
    job = anonymise_bag(db.from_sequence(lines, npartitions=2), POLICY,
                        key=KeyRef.env("PSEUDONYM_TEST_UNSET_KEY", key_ids=[KEY.key_id]))
    writes = job.to_textfiles(str(out))
    with pytest.raises(KeyRingError, match="not set"):
        job.run(writes)
    assert published(out) == ["README"]


def test_a_failing_audit_append_publishes_nothing(client, key_file, tmp_path):
    job = example_job(key_file)
    out = tmp_path / "out"
    writes = job.to_textfiles(str(out / "part-*.jsonl.gz"))
    audit = AuditLog.open(tmp_path / "audit.jsonl")
    (tmp_path / "audit.jsonl").unlink()
    (tmp_path / "audit.jsonl").mkdir()  # the entry cannot be appended
    from pseudonym.errors import AuditError
    with pytest.raises(AuditError, match="cannot write audit entry"):
        job.run(writes, audit=audit)
    assert published(out) == [] and not out.exists()


def test_a_failed_run_returns_only_once_every_writer_has_stopped(client, tmp_path):
    """So that removing a failed run's staged files cannot race a writer still at work."""
    import time

    import dask

    from pseudonym.dask import _compute

    def fail():
        raise RuntimeError("partition failed")

    def slow_writer(path):
        time.sleep(1)
        with open(path, "w") as f:
            f.write("late\n")

    late = tmp_path / "late"
    with pytest.raises(RuntimeError, match="partition failed"):
        _compute([dask.delayed(slow_writer)(str(late))], dask.delayed(fail)())
    assert late.exists()


def contents(directory) -> dict[str, bytes]:
    """Every file under the output directory, hidden ones included, with its bytes."""
    return {p: (directory / p).read_bytes() for p in published(directory)
            if (directory / p).is_file()}


def test_a_destination_holding_parts_is_refused_before_the_run(client, key_file, tmp_path):
    """Found by review: publishing moved each part over its namesake and left the others
    be, so a second run of fewer partitions (or of more than 10, named 00, 01...) left a
    destination mixing two runs' parts, only one of them described by the audit."""
    out = tmp_path / "out"
    job = example_job(key_file)
    with AuditLog.open(tmp_path / "audit.jsonl") as audit:
        job.run(job.to_textfiles(str(out / "part-*.jsonl")), audit=audit)
    before = contents(out)
    job = example_job(key_file, npartitions=2)
    writes = job.to_textfiles(str(out / "part-*.jsonl"))
    with AuditLog.open(tmp_path / "audit.jsonl") as audit, \
            pytest.raises(StreamError, match="overwrite=True") as e:
        job.run(writes, audit=audit)
    assert str(e.value).startswith(f"{out / 'part-*.jsonl'}: holds 3 files named")
    assert contents(out) == before
    assert len((tmp_path / "audit.jsonl").read_text().splitlines()) == 1  # never started


def test_overwrite_replaces_the_former_parts_entirely(client, key_file, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "README").write_text("not ours\n")
    for n in (3, 2):
        job = example_job(key_file, npartitions=n)
        stats = job.run(job.to_textfiles(str(out / "part-*.jsonl"), overwrite=True))
    assert published(out) == ["README", "part-0.jsonl", "part-1.jsonl"]
    assert job.results[0] == [str(out / "part-0.jsonl"), str(out / "part-1.jsonl")]
    got = (out / "part-0.jsonl").read_text() + (out / "part-1.jsonl").read_text()
    assert [json.loads(x) for x in got.splitlines()] == example_output()
    assert stats.written == len(example_lines())


def former_parts(key_file, out):
    """A first run's parts in ``out``, as ``contents`` reads them."""
    job = example_job(key_file)
    job.run(job.to_textfiles(str(out / "part-*.jsonl")))
    return contents(out)


@pytest.mark.parametrize("failing_move", [4, 5])
def test_a_failed_overwrite_puts_the_former_parts_back(monkeypatch, key_file, tmp_path,
                                                        failing_move):
    """Publishing 2 parts over 3: part-0 set aside (move 1), the new part-0 in (2), the
    same for part-1 (3, 4), then part-2 set aside (5): a move that fails while the new
    parts go in (4) or once they are in (5) leaves the former 3 as they were."""
    import dask

    out = tmp_path / "out"
    with dask.config.set(scheduler="sync"):
        before = former_parts(key_file, out)
        job = example_job(key_file, npartitions=2)
        writes = job.to_textfiles(str(out / "part-*.jsonl"), overwrite=True)
        moves = []
        move = writes.fs.mv

        def failing(src, dst, **kwargs):
            moves.append(dst)
            if len(moves) == failing_move:
                raise PermissionError(13, "Permission denied")
            return move(src, dst, **kwargs)

        monkeypatch.setattr(writes.fs, "mv", failing)
        with pytest.raises(PseudonymError, match="no output was published") as e:
            job.run(writes)
    assert "Permission denied" in str(e.value)
    assert contents(out) == before


def test_an_output_run_again_publishes_and_puts_back_only_its_new_parts(monkeypatch, key_file,
                                                                       tmp_path):
    """Found by review: the published paths were kept from one run of an output to the
    next, so job.results listed the first run's parts again, and a failed publishing
    removed, as this run's, former parts it had not yet set aside."""
    import dask

    out = tmp_path / "out"
    with dask.config.set(scheduler="sync"):
        job = example_job(key_file)
        writes = job.to_textfiles(str(out / "part-*.jsonl"), overwrite=True)
        job.run(writes)
        job.run(writes)
        assert job.results == [[str(out / f"part-{i}.jsonl") for i in range(3)]]
        before = contents(out)
        move = writes.fs.mv

        def failing(src, dst, **kwargs):  # the new part-0 going in
            if dst == str(out / "part-0.jsonl") and src.endswith("/parts/part-0.jsonl"):
                raise PermissionError(13, "Permission denied")
            return move(src, dst, **kwargs)

        monkeypatch.setattr(writes.fs, "mv", failing)
        with pytest.raises(PseudonymError, match="no output was published"):
            job.run(writes)
    assert contents(out) == before


def test_parts_that_appear_during_the_run_are_not_published_over(key_file, tmp_path):
    """The destination is checked again when publishing: another run that wrote there in
    the meantime is not mixed with this one."""
    import dask

    class Intruding(AuditLog):
        def append(self, entry):
            (tmp_path / "out" / "part-9.jsonl").write_text("{}\n")
            return super().append(entry)

    out = tmp_path / "out"
    out.mkdir()
    job = example_job(key_file)
    with dask.config.set(scheduler="sync"), pytest.raises(StreamError, match="holds 1 file"):
        job.run(job.to_textfiles(str(out / "part-*.jsonl")),
                audit=Intruding.open(tmp_path / "audit.jsonl"))
    assert contents(out) == {"part-9.jsonl": b"{}\n"}


@pytest.mark.parametrize("second", ["{out}/part-*.jsonl", "{out}/./*.jsonl", "{out}//part-*",
                                    "{link}/part-*.jsonl", "same"])
def test_two_outputs_of_one_run_whose_parts_could_share_names_are_refused(
        key_file, tmp_path, second):
    """Found by review: each output took the other's new parts for former ones. With
    overwrite, one output given twice set its own parts aside and left the destination
    empty, the former parts gone; and a run failing after two such outputs were published
    put back, part by part, the other's parts over the former ones."""
    import dask

    out = tmp_path / "out"
    with dask.config.set(scheduler="sync"):
        before = former_parts(key_file, out)
        job = example_job(key_file, npartitions=2)
        first = job.to_textfiles(str(out / "part-*.jsonl"), overwrite=True)
        (tmp_path / "link").symlink_to(out)
        other = first if second == "same" else job.to_textfiles(
            second.format(out=out, link=tmp_path / "link"), overwrite=True)
        with AuditLog.open(tmp_path / "audit.jsonl") as audit, \
                pytest.raises(ValueError, match="same destination") as e:
            job.run(first, other, audit=audit)
    assert str(e.value).startswith(str(out / "part-*.jsonl"))
    assert contents(out) == before
    assert not (tmp_path / "audit.jsonl").read_text()  # nothing was started


def test_two_outputs_of_one_run_may_share_a_directory_under_distinct_names(
        key_file, tmp_path):
    """Parts that cannot be named alike are no former parts of the other output."""
    import dask

    out = tmp_path / "out"
    with dask.config.set(scheduler="sync"):
        job = example_job(key_file)
        job.run(job.to_textfiles(str(out / "part-*.jsonl"), overwrite=True),
                job.to_textfiles(str(out / "part-*.jsonl.gz"), overwrite=True))
    assert published(out) == [f"part-{i}.jsonl{gz}" for i in range(3) for gz in ("", ".gz")]
    for gz in ("", ".gz"):
        got = b"".join(gzip.decompress(d) if gz else d for name, d in sorted(
            contents(out).items()) if name.endswith(f".jsonl{gz}"))
        assert [json.loads(x) for x in got.splitlines()] == example_output()


@pytest.fixture
def memory_fs():
    """fsspec's in-memory file system: a remote store (S3, GCS) as the code sees one,
    reached through a URL; the synchronous scheduler keeps it in this process."""
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    root = f"/t{os.getpid()}-{id(fs)}"
    yield fs, root
    if fs.exists(root):
        fs.rm(root, recursive=True)


def test_remote_urls_are_read_staged_and_published(memory_fs, key_file):
    import dask

    fs, root = memory_fs
    lines = example_lines()
    for i in range(3):
        fs.pipe(f"{root}/in/part-{i}.jsonl", ("\n".join(lines[i * 4:(i + 1) * 4]) + "\n"
                                               ).encode())
    with dask.config.set(scheduler="sync"):
        job = anonymise_bag(db.read_text(f"memory://{root}/in/part-*.jsonl"), POLICY,
                            key=KeyRef.file(key_file))
        stats = job.run(job.to_textfiles(f"memory://{root}/out/part-*.jsonl.gz"))
    parts = [f"memory://{root}/out/part-{i}.jsonl.gz" for i in range(3)]
    assert job.results[0] == parts and stats.written == len(lines)
    assert fs.find(f"{root}/out") == [p.removeprefix("memory://") for p in parts]
    got = b"".join(gzip.decompress(fs.cat(p)) for p in parts)
    want = anonymise([json.loads(x) for x in lines], Policy.load(POLICY), keys=KeyRing([KEY]))
    assert [json.loads(x) for x in got.splitlines()] == list(want)


def test_a_failed_run_leaves_nothing_at_a_remote_url(memory_fs, key_file):
    import dask

    def failing(items):
        items = list(items)
        if "FAIL" in items:
            raise RuntimeError("this partition cannot be read")
        return items

    fs, root = memory_fs
    lines = example_lines()
    fs.pipe(f"{root}/out/README", b"not ours\n")
    for where in ("out", "new"):
        bag = db.from_sequence([*lines[:6], "FAIL", *lines[6:]], npartitions=3)
        job = anonymise_bag(bag.map_partitions(failing), POLICY, key=KeyRef.file(key_file))
        with dask.config.set(scheduler="sync"), pytest.raises(RuntimeError, match="cannot"):
            job.run(job.to_textfiles(f"memory://{root}/{where}/part-*.jsonl"))
    assert fs.find(root) == [f"{root}/out/README"] and not fs.exists(f"{root}/new")


def test_a_byte_order_mark_is_dropped_at_the_start_of_a_file_only(memory_fs, key_file):
    """As the command reads each file (found by review: it was dropped from every line, so
    lines the command rejects were written)."""
    import dask

    fs, root = memory_fs
    lines = example_lines()
    fs.pipe(f"{root}/in/a.jsonl", ("\ufeff" + "\n".join(lines[:6]) + "\n").encode())
    fs.pipe(f"{root}/in/b.jsonl", ("\ufeff" + lines[6] + "\n\ufeff" + "\n".join(lines[7:])
                                   + "\n").encode())
    with dask.config.set(scheduler="sync"):
        job = anonymise_bag(db.read_text(f"memory://{root}/in/*.jsonl"), POLICY,
                            key=KeyRef.file(key_file), on_error="skip")
        stats = job.run(job.bag)
    assert stats.written == len(lines) - 1 and stats.rejected == 1
    assert stats.errors["invalid-json"]["records"] == [8]


def test_a_byte_order_mark_is_dropped_where_a_partition_starts(memory_fs, key_file):
    """The Dask page says so: a partition cannot tell whether it starts a file, so the mark
    is dropped at the start of each partition, even one that starts mid-file (as with
    read_text's blocksize), and a file's mark in the middle of a partition (as with
    files_per_partition) is kept, its line rejected, unless read as utf-8-sig."""
    import dask

    fs, root = memory_fs
    lines = example_lines()
    for name, part in (("a", lines[:6]), ("b", lines[6:])):
        fs.pipe(f"{root}/in/{name}.jsonl", ("\ufeff" + "\n".join(part) + "\n").encode())

    def counts(bag):
        job = anonymise_bag(bag, POLICY, key=KeyRef.file(key_file), on_error="skip")
        with dask.config.set(scheduler="sync"):
            stats = job.run(job.bag)
        return stats.written, stats.rejected

    mid_file = [lines[0], "\ufeff" + lines[1], "\ufeff" + lines[2], lines[3]]
    assert counts(db.from_sequence(mid_file, npartitions=2)) == (3, 1)
    url = f"memory://{root}/in/*.jsonl"
    assert counts(db.read_text(url, files_per_partition=2)) == (len(lines) - 1, 1)
    assert counts(db.read_text(url, files_per_partition=2, encoding="utf-8-sig")) == \
        (len(lines), 0)


@pytest.fixture(scope="module")
def s3():
    """A real S3 server (moto's), reached over HTTP by the client and by the cluster's
    worker processes alike, through s3fs: the object store FUN's traces live in."""
    pytest.importorskip("s3fs")
    server_module = pytest.importorskip("moto.server")
    import socket

    import s3fs

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port,
                                              verbose=False)
    server.start()
    options = {"key": "test", "secret": "test", "client_kwargs": {
        "endpoint_url": f"http://127.0.0.1:{port}", "region_name": "eu-west-3"}}
    fs = s3fs.S3FileSystem(**options)
    fs.mkdir("traces")
    yield fs, options
    server.stop()


def test_s3_in_and_out_on_the_cluster_is_the_cli_output(client, s3, key_file, tmp_path):
    fs, options = s3
    lines = example_lines()
    for i in range(3):
        fs.pipe(f"traces/in/part-{i}.jsonl", ("\n".join(lines[i * 4:(i + 1) * 4]) + "\n"
                                               ).encode())
    job = anonymise_bag(db.read_text("s3://traces/in/part-*.jsonl", storage_options=options),
                        POLICY, key=KeyRef.file(key_file))
    with AuditLog.open(tmp_path / "audit.jsonl") as audit:
        stats = job.run(job.to_textfiles("s3://traces/out/part-*.jsonl.gz",
                                         storage_options=options), audit=audit)
    parts = [f"s3://traces/out/part-{i}.jsonl.gz" for i in range(3)]
    assert job.results[0] == parts and stats.written == len(lines)
    fs.invalidate_cache()
    assert sorted(fs.find("traces/out")) == [p.removeprefix("s3://") for p in parts]
    got = b"".join(gzip.decompress(fs.cat(p)) for p in parts)
    want, _ = run_cli(tmp_path, "\n".join([*lines, '{"actor": {"account": '] ).encode() + b"\n",
                      key_file, rejected_line=len(lines) + 1)
    assert got == want


def test_a_failed_run_leaves_nothing_in_the_bucket(client, s3, key_file):
    fs, options = s3

    def failing(items):
        items = list(items)
        if "FAIL" in items:
            raise RuntimeError("this partition cannot be read")
        return items

    lines = example_lines()
    fs.pipe("traces/kept/README", b"not ours\n")
    for where in ("kept", "fresh"):
        bag = db.from_sequence([*lines[:6], "FAIL", *lines[6:]], npartitions=3)
        job = anonymise_bag(bag.map_partitions(failing), POLICY, key=KeyRef.file(key_file))
        with pytest.raises(RuntimeError, match="cannot"):
            job.run(job.to_textfiles(f"s3://traces/{where}/part-*.jsonl",
                                     storage_options=options))
    fs.invalidate_cache()
    assert fs.find("traces/kept") == ["traces/kept/README"] and not fs.find("traces/fresh")


def test_a_second_run_into_the_bucket_is_refused_unless_it_overwrites(client, s3, key_file):
    """On an object store a move is a copy and a delete, and the listing is cached: the
    former parts are still found, and replaced."""
    fs, options = s3
    url = "s3://traces/again/part-*.jsonl"
    job = example_job(key_file)
    job.run(job.to_textfiles(url, storage_options=options))
    job = example_job(key_file, npartitions=2)
    with pytest.raises(StreamError, match=r"^s3://traces/again/part-\*\.jsonl: holds 3 "):
        job.run(job.to_textfiles(url, storage_options=options))
    job.run(job.to_textfiles(url, storage_options=options, overwrite=True))
    parts = [f"traces/again/part-{i}.jsonl" for i in range(2)]
    fs.invalidate_cache()
    assert sorted(fs.find("traces/again")) == parts
    got = b"".join(fs.cat(p) for p in parts)
    assert [json.loads(x) for x in got.splitlines()] == example_output()


def test_a_scrub_rule_writing_pseudonyms_finds_the_key_like_any_keyed_rule(monkeypatch):
    """scrub with replace: pseudonym is keyed, though scrub with tokens is not: the bag
    refused to run with the key in $PSEUDONYM_KEY, where the command line runs."""
    import dask
    monkeypatch.setenv("PSEUDONYM_KEY", KEY.text)
    policy = Policy.from_dict({"name": "t", "version": "1", "domain": "d", "rules": [
        {"path": "$.t", "action": "scrub", "options": {"replace": "pseudonym"}}]})
    records = [{"t": "write to ada@example.org"}]
    job = anonymise_bag(db.from_sequence(records, npartitions=1), policy, input="records")
    with dask.config.set(scheduler="sync"):
        job.run(job.bag)
    assert job.results[0] == list(anonymise(records, policy, keys=KeyRing([KEY])))
