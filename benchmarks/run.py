"""Throughput and memory of ``pseudonym anonymise``, side by side with the alternatives.

One command, one run, one table (Markdown, ready for docs/performance.md):

    python benchmarks/run.py                       # built-in xapi policy, 100k and 1M lines

Contenders, each a separate process reading and writing JSON lines files, timed wall-clock
from start to exit (interpreter start and policy loading included), best of ``--repeat``
at ``--lines`` and of ``--big-repeat`` at ``--big-lines``, and on a one-line file (their
start-up, which the table separates from the time per record):

- the CLI, one process and ``--workers N``, file to file and through pipes;
- a hand-written plain-Python pass doing the same transformations with the same JSON
  library (``handwritten.py``); before timing, its output is checked equal to the CLI's;
- presidio-structured doing a strict subset of the work (``presidio_pass.py``), installed
  in its own virtual environment ``benchmarks/.venv-presidio`` (made on first use).

Peak memory is the CLI's maximum resident set size on ``--lines`` and ``--big-lines`` lines
fed through a pipe: it must not grow with the input. The data is the shared file of real
xAPI statements, replicated (cycled) to the line counts asked for.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import gzip
import hashlib
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT.parent / "shared" / "data" / "ralph-video-statements.jsonl.gz"
PRESIDIO_VENV = HERE / ".venv-presidio"
PRESIDIO_REQS = ["presidio-structured==0.0.10", "orjson"]
PRESIDIO_SALT = "benchmark-salt-0123456789abcdef"


@dataclass
class Result:
    name: str
    records: int
    wall: float
    cpu: float
    rss_mb: float
    others: float
    """CPU seconds other processes on the machine used during the run."""


def _hwm_kb(pid: int) -> int:
    """Peak resident set of one process so far (VmHWM), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        with contextlib.suppress(OSError, ValueError):
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
    return pids


def _cpu_busy() -> float:
    """Seconds of CPU the whole machine has spent busy since boot (all cores)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_idle(limit: float = 120.0) -> None:
    """On a shared machine, start a timed run only once other jobs leave the cores idle
    (less than 10% busy over 1 s), waiting at most ``limit`` seconds."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        before = _cpu_busy()
        time.sleep(1)
        if _cpu_busy() - before < 0.1 * (os.cpu_count() or 1):
            return


def run_measured(cmd: list[str], *, stdin=None, stdout=subprocess.DEVNULL,
                 env: dict[str, str] | None = None) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system, children included) and peak RSS (MB,
    summed over the process and its children) of a command; fails on a non-zero exit.

    The wall time ends when the process exits (a blocking wait, not a poll, which would
    add up to a polling period to every run). The peak is each process's own high-water
    mark (VmHWM), read every 20 ms by a thread: exact for memory that stays in use, blind
    only to a rise in the last 20 ms of a process. (``ru_maxrss`` would not do: it carries
    the launching process's peak across exec.)
    """
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=stdin, stdout=stdout, env=env)
    peaks: dict[int, int] = {}
    exited = threading.Event()

    def sample() -> None:
        while True:
            for child in _tree(p.pid):
                peaks[child] = max(peaks.get(child, 0), _hwm_kb(child))
            if exited.wait(0.02):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    # Exited but not reaped: until wait4 below, its pid cannot name another process.
    os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
    wall = time.perf_counter() - t0
    exited.set()
    sampler.join()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"benchmark command failed ({p.returncode}): {' '.join(cmd)}")
    return wall, usage.ru_utime + usage.ru_stime, sum(peaks.values()) / 1024


def write_input(sample: list[bytes], n: int, path: Path) -> None:
    with open(path, "wb") as f:
        full, rest = divmod(n, len(sample))
        block = b"".join(sample)
        for _ in range(full):
            f.write(block)
        f.write(b"".join(sample[:rest]))


def feeder(path: Path, n: int) -> list[str]:
    """A process writing ``n`` lines cycled from ``path`` to its stdout."""
    code = ("import sys,itertools\n"
            f"lines=open({str(path)!r},'rb').read().splitlines(keepends=True)\n"
            f"n={n}\nout=sys.stdout.buffer\nblock=b''.join(lines)\n"
            "full,rest=divmod(n,len(lines))\n"
            "for _ in range(full): out.write(block)\n"
            "out.write(b''.join(lines[:rest]))\n")
    return [sys.executable, "-c", code]


def ensure_presidio() -> Path:
    py = PRESIDIO_VENV / "bin" / "python"
    if not py.exists():
        print(f"creating {PRESIDIO_VENV} (presidio-structured, about 0.5 GB, once)",
              file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(PRESIDIO_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *PRESIDIO_REQS], check=True)
    return py


def load(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def check_equal(cli_out: Path, hand_out: Path) -> None:
    a, b = load(cli_out), load(hand_out)
    if len(a) != len(b):
        raise SystemExit(f"hand-written pass wrote {len(b)} records, the CLI {len(a)}")
    for n, (x, y) in enumerate(zip(a, b, strict=True), 1):
        if x != y:
            raise SystemExit(f"record {n}: hand-written output differs from the CLI's; "
                             "fix handwritten.py before comparing speeds")


def check_presidio(policy: str, src: Path, out: Path) -> None:
    """presidio did exactly its subset (hash the account name with its salt, ...)."""
    sys.path.insert(0, str(HERE))
    from handwritten import HOME, _minute
    for n, (x, y) in enumerate(zip(load(src), load(out), strict=True), 1):
        account = x["actor"]["account"]
        account["name"] = hashlib.sha256(
            account["name"].encode() + PRESIDIO_SALT.encode()).hexdigest()
        if policy == "xapi":
            account["homePage"] = HOME
        else:
            x["timestamp"] = _minute(x["timestamp"])
        if x != y:
            raise SystemExit(f"record {n}: presidio output is not the expected subset")


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (f"{cpu}, {os.cpu_count()} cores{mem}; {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}; orjson {orjson.__version__}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_policy = "xapi" if _has_builtin("xapi") else str(ROOT / "examples/research.yaml")
    ap.add_argument("--policy", default=default_policy,
                    help=f"policy file or built-in name (default: {default_policy})")
    ap.add_argument("--data", default=str(DATA), help="xAPI statements (.jsonl or .jsonl.gz)")
    ap.add_argument("--lines", type=_at_least_one, default=100_000,
                    help="lines timed (default 100000)")
    ap.add_argument("--big-lines", type=int, default=1_000_000,
                    help="lines of the large timings and memory run (default 1000000; "
                         "0 to skip them)")
    ap.add_argument("--workers", type=int, default=2, help="CLI workers compared (default 2)")
    ap.add_argument("--repeat", type=int, default=5, help="runs per contender, best kept")
    ap.add_argument("--big-repeat", type=int, default=3,
                    help="runs of each --big-lines contender, best kept (default 3)")
    ap.add_argument("--no-presidio", action="store_true", help="leave presidio out")
    ap.add_argument("--no-wait-idle", dest="wait_idle", action="store_false",
                    help="do not wait (up to 2 min) for idle cores before each timed run")
    ap.add_argument("--workdir", default=str(HERE / "out"), help="scratch files")
    a = ap.parse_args(argv)

    import pseudonym
    from pseudonym import MasterKey, Policy
    policy = Policy.load(a.policy)
    bytecode(Path(pseudonym.__file__).parent)
    env = dict(os.environ)
    if not env.get("PSEUDONYM_KEY", "").strip():
        env["PSEUDONYM_KEY"] = MasterKey.generate().text  # a throw-away key for this run
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_before = os.getloadavg()[0]

    opener = gzip.open if a.data.endswith(".gz") else open
    with opener(a.data, "rb") as f:
        sample_lines = [line if line.endswith(b"\n") else line + b"\n" for line in f]
    sample = work / "sample.jsonl"
    sample.write_bytes(b"".join(sample_lines))
    inp = work / f"input-{a.lines}.jsonl"
    write_input(sample_lines, a.lines, inp)

    cli = [sys.executable, "-m", "pseudonym", "anonymise", "--policy", a.policy, "--quiet"]
    hand = [sys.executable, str(HERE / "handwritten.py"), a.policy]
    one_name, workers_name = "pseudonym CLI, 1 process", f"pseudonym CLI, --workers {a.workers}"
    contenders: list[tuple[str, Callable[[Path, Path], list[str]]]] = [
        (one_name, lambda i, o: [*cli, "-i", str(i), "-o", str(o)]),
        (workers_name, lambda i, o: [*cli, "--workers", str(a.workers), "-i", str(i), "-o",
                                     str(o)]),
        ("hand-written Python (orjson)", lambda i, o: [*hand, str(i), str(o)]),
    ]

    # Same outputs first: the CLI and the hand-written pass on the sample.
    run_measured([*cli, "-i", str(sample), "-o", str(work / "check-cli.jsonl")], env=env)
    run_measured([*hand, str(sample), str(work / "check-hand.jsonl")], env=env)
    check_equal(work / "check-cli.jsonl", work / "check-hand.jsonl")
    if not a.no_presidio:
        py = str(ensure_presidio())
        pres = [py, str(HERE / "presidio_pass.py"), policy.name, PRESIDIO_SALT]
        run_measured([*pres, str(sample), str(work / "check-presidio.jsonl")], env=env)
        check_presidio(policy.name, sample, work / "check-presidio.jsonl")
        contenders.append(("presidio-structured (subset)",
                           lambda i, o: [*pres, str(i), str(o)]))
    piped = " ".join(map(shlex.quote, cli))
    one_pipe, workers_pipe = f"{one_name}, pipes", f"{workers_name}, pipes"
    contenders += [  # as in a Unix pipeline: `cat in | pseudonym ... | cat > out`
        (one_pipe, lambda i, o: ["sh", "-c", f"cat {shlex.quote(str(i))} | {piped} | "
                                             f"cat > {shlex.quote(str(o))}"]),
        (workers_pipe, lambda i, o: ["sh", "-c", f"cat {shlex.quote(str(i))} | {piped} "
                                                 f"--workers {a.workers} | "
                                                 f"cat > {shlex.quote(str(o))}"]),
    ]
    print(f"outputs checked on {len(sample_lines):,} statements; timing {a.lines:,} lines, "
          f"best of {a.repeat}", file=sys.stderr)

    # Start-up: one line, not none, so that --workers starts its worker processes too.
    first = work / "one-line.jsonl"
    first.write_bytes(sample_lines[0])
    ceilings: list[float] = []
    startup: dict[str, Result] = {}
    best: dict[str, Result] = {}
    for _ in range(a.repeat):
        if a.wait_idle:
            wait_idle()
        ceilings.append(machine_ceiling())
        timed_round(contenders, first, 1, work, startup, env, a.wait_idle)
        timed_round(contenders, inp, a.lines, work, best, env, a.wait_idle)
    outputs = [work / f"out-{n}.jsonl" for n in range(len(contenders))]
    if not all(_same_file(outputs[0], outputs[n]) for n in (1, -2, -1)):
        raise SystemExit("--workers or piped output differs from the single process output")

    memory: list[tuple[int, float, float]] = []
    for n in [a.lines] + ([a.big_lines] if a.big_lines else []):
        if a.wait_idle:
            wait_idle()
        feed = subprocess.Popen(feeder(sample, n), stdout=subprocess.PIPE)
        wall, _, rss = run_measured(cli, stdin=feed.stdout, env=env)
        feed.stdout.close()  # type: ignore[union-attr]
        feed.wait()
        memory.append((n, wall, rss))

    big: dict[str, Result] = {}
    if a.big_lines:  # where start-up costs vanish
        print(f"timing {a.big_lines:,} lines, best of {a.big_repeat}", file=sys.stderr)
        big_in = work / f"input-{a.big_lines}.jsonl"
        write_input(sample_lines, a.big_lines, big_in)
        for _ in range(a.big_repeat):
            ceilings.append(machine_ceiling())
            timed_round(contenders, big_in, a.big_lines, work, big, env, a.wait_idle)
        if not all(_same_file(outputs[0], outputs[n]) for n in (1, -2, -1)):
            raise SystemExit(f"--workers or piped output differs from the single process "
                             f"output at {a.big_lines:,} lines")
        big_in.unlink()
    for scratch in [*outputs, first, inp]:
        scratch.unlink(missing_ok=True)

    print(report(policy, a, startup, best, memory, big, started, load_before, max(ceilings)))
    return 0


def bytecode(package: Path) -> None:
    """Byte-compile the package, as pip does when it installs one: a source tree (an
    editable install) where ``PYTHONDONTWRITEBYTECODE`` is set would otherwise be compiled
    again at every start of the CLI and of the hand-written pass (about 35 ms here)."""
    if not compileall.compile_dir(package, quiet=1):
        raise SystemExit(f"cannot byte-compile {package}")


def _at_least_one(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def timed_round(contenders: list[tuple[str, Callable[[Path, Path], list[str]]]], inp: Path,
                records: int, work: Path, best: dict[str, Result], env: dict[str, str],
                wait: bool) -> None:
    """Each contender once on ``inp``, keeping each one's fastest run in ``best``."""
    for n, (name, command) in enumerate(contenders):
        out = work / f"out-{n}.jsonl"
        _remove(out)  # deleting the last run's output is not the contender's job
        if wait:
            wait_idle()
        busy = _cpu_busy()
        wall, cpu, rss = run_measured(command(inp, out), env=env)
        others = max(0.0, _cpu_busy() - busy - cpu)
        if name not in best or wall < best[name].wall:
            best[name] = Result(name, records, wall, cpu, rss, others)


def machine_ceiling() -> float:
    """The speed-up two processes reach on this machine right now (``scaling.py``)."""
    out = subprocess.run([sys.executable, str(HERE / "scaling.py")], capture_output=True,
                         text=True, check=True).stdout
    return float(out.rsplit("ceiling for 2 workers: ", 1)[1].rstrip().rstrip("x"))


def report(policy, a, startup: dict[str, Result], best: dict[str, Result], memory,
           big: dict[str, Result], started: str, load_before: float, ceiling: float) -> str:
    one_name, workers_name = "pseudonym CLI, 1 process", f"pseudonym CLI, --workers {a.workers}"
    hand_name, pres_name = "hand-written Python (orjson)", "presidio-structured (subset)"
    lines = [
        f"Policy `{a.policy}` ({policy.name} {policy.version}, {len(policy.rules)} rules), "
        "xAPI statements, JSON lines file in and out. *Start-up*: the same command on a "
        "one-line file (interpreter, imports, policy and key loading, worker processes); "
        "*per record*: the rest of the wall time divided by the other records.", "",
    ]
    for size, results, repeat in ((a.lines, best, a.repeat), (a.big_lines, big, a.big_repeat)):
        if not results:
            continue
        one = results[one_name]
        lines += [f"| {size:,} lines (best of {repeat}) | wall time (s) | records/s | "
                  "relative to CLI, 1 process | start-up (s) | per record (µs) | "
                  "CPU time (s) | peak RSS (MB) | other jobs' CPU (s) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, r in results.items():
            up = startup[name].wall
            lines.append(f"| {name} | {r.wall:.2f} | {r.records / r.wall:,.0f} | "
                         f"{one.wall / r.wall:.2f}x | {up:.2f} | "
                         f"{(r.wall - up) / max(1, r.records - 1) * 1e6:.1f} | {r.cpu:.2f} | "
                         f"{r.rss_mb:.0f} | {r.others:.2f} |")
        lines.append("")
    lines += ["| CLI, 1 process, stdin to stdout | wall time (s) | records/s | "
              "peak RSS (MB) |", "|---|---:|---:|---:|"]
    for n, wall, rss in memory:
        lines.append(f"| {n:,} lines | {wall:.2f} | {n / wall:,.0f} | {rss:.0f} |")
    lines += ["", "Targets:", ""]

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    def ratio(results: dict[str, Result], x: str, y: str) -> float:
        return results[y].wall / results[x].wall

    sizes = [(a.lines, best)] + ([(a.big_lines, big)] if big else [])
    for size, results in sizes:
        at = f"at {size:,} lines"
        lines.append(f"- CLI (1 process) / hand-written {at}: "
                     f"**{ratio(results, one_name, hand_name):.2f}x** (target >= 0.5: "
                     f"{verdict(ratio(results, one_name, hand_name) >= 0.5)})")
        if pres_name in results:
            w = ratio(results, workers_name, pres_name)
            lines.append(f"- CLI / presidio-structured {at}: **{w:.2f}x** with "
                         f"{a.workers} workers ({verdict(w >= 2)}), "
                         f"**{ratio(results, one_name, pres_name):.2f}x** in 1 process "
                         f"(target >= 2); hand-written / presidio-structured, both in 1 "
                         f"process (the limit of one process): "
                         f"**{ratio(results, hand_name, pres_name):.2f}x**")
        w = ratio(results, workers_name, one_name)
        wp = ratio(results, f"{workers_name}, pipes", f"{one_name}, pipes")
        lines.append(f"- {a.workers} workers / 1 process {at}: **{w:.2f}x** files, "
                     f"**{wp:.2f}x** pipes (target >= 1.7 with 2 workers on 2 cores: "
                     f"{verdict(w >= 1.7)}, {verdict(wp >= 1.7)})")
    lines.append(f"- for scale, two processes of plain JSON parsing and writing "
                 f"(`scaling.py`, once per round): at best **{ceiling:.2f}x** on this "
                 f"machine during the run")
    if len(memory) > 1:
        growth = memory[-1][2] / memory[0][2]
        lines.append(f"- peak RSS at {memory[-1][0]:,} lines / at {memory[0][0]:,}: "
                     f"**{growth:.2f}x** (target: no growth: {verdict(growth < 1.1)})")
    lines += ["", f"Measured {started} on {machine()}; load average "
                  f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after."]
    return "\n".join(lines)


def _remove(path: Path) -> None:
    """Delete a previous output before a timed run: freeing a gigabyte file takes a
    noticeable part of a second, which would be charged to the next contender."""
    path.unlink(missing_ok=True)
    os.sync()


def _same_file(a: Path, b: Path) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 22), fb.read(1 << 22)
            if x != y:
                return False
            if not x:
                return True


def _has_builtin(name: str) -> bool:
    from pseudonym.policy import builtin_names
    return name in builtin_names()


if __name__ == "__main__":
    sys.exit(main())
