"""The progress display: on a terminal only, never with --quiet, never in a pipe or log."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest

from pseudonym import MasterKey

from .conftest import EXAMPLES

POLICY = str(EXAMPLES / "research.yaml")
DATA = (EXAMPLES / "traces.jsonl").read_bytes()


def run(*extra: str, tty: bool) -> tuple[subprocess.CompletedProcess, bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSEUDONYM_")}
    env["PSEUDONYM_KEY"] = MasterKey.generate().text
    cmd = [sys.executable, "-m", "pseudonym", "anonymise", "--policy", POLICY, *extra]
    if not tty:
        r = subprocess.run(cmd, input=DATA, capture_output=True, env=env, timeout=60)
        return r, r.stderr
    master, slave = pty.openpty()
    try:
        r = subprocess.run(cmd, input=DATA, stdout=subprocess.PIPE, stderr=slave, env=env,
                           timeout=60)
        os.close(slave)
        seen = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the terminal closed
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
    return r, seen


@pytest.mark.parametrize("workers", ["1", "2"])
def test_progress_shows_records_and_rate_on_a_terminal(workers):
    r, seen = run("--workers", workers, tty=True)
    assert r.returncode == 0
    assert b"12 records" in seen and b"records/s" in seen
    assert b"@example" not in seen and b"learner" not in seen  # counts, never values
    assert r.stdout.count(b"\n") == 12  # the records themselves still go to stdout


def test_quiet_silences_it():
    r, seen = run("--quiet", tty=True)
    assert r.returncode == 0 and seen == b""


def test_nothing_when_stderr_is_not_a_terminal():
    r, seen = run(tty=False)
    assert r.returncode == 0 and seen == b""
