"""Open edX tracking.log lines (logger prefix + JSON) through the real command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from ralph.models.selector import ModelSelector
from ralph.models.validator import Validator

from pseudonym import KeyRing
from pseudonym.tracking import strip_logger_prefix

from .test_edx_policy import EXAMPLES

PREFIX = "2024-01-02 03:04:05,678 INFO 4242 [tracking] [user 6] [ip 172.18.0.99] logger.py:41 - "


def test_strip_logger_prefix():
    assert strip_logger_prefix((PREFIX + '{"a": 1}').encode()) == b'{"a": 1}'
    assert strip_logger_prefix(b'{"a": " - {"}') is None
    assert strip_logger_prefix(b"  [1]") is None
    assert strip_logger_prefix(b"no json here") is None


def run_cli(args: list[str], stdin: bytes, key: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PSEUDONYM_KEY": key}
    return subprocess.run([sys.executable, "-m", "pseudonym", *args], input=stdin,
                          capture_output=True, env=env, timeout=60, check=False)


@pytest.fixture(scope="module")
def key() -> str:
    return KeyRing.generate().active.text


def test_tracking_log_lines_lose_their_prefix(key, tmp_path):
    events = [EXAMPLES[name]() for name in sorted(EXAMPLES)]
    lines = [PREFIX + json.dumps(e) for e in events]
    lines.insert(2, json.dumps(events[0]))  # a bare JSON line among prefixed ones
    audit = tmp_path / "audit.jsonl"
    r = run_cli(["anonymise", "--policy", "edx", "--audit", str(audit)],
                ("\n".join(lines) + "\n").encode(), key)
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode().splitlines()
    assert len(out) == len(lines)
    text = r.stdout.decode()
    for leak in ("172.18.0.99", "[user 6]", "INFO 4242", "logger.py", "[tracking]"):
        assert leak not in text
    validator = Validator(ModelSelector("ralph.models.edx"))
    for line in out:
        validator.get_first_valid_model(json.loads(line))
    entry = json.loads(audit.read_text().splitlines()[-1])
    assert "172.18.0.99" not in audit.read_text()
    assert json.dumps(entry).count("logger_prefixes") == 1


def test_a_bad_prefixed_line_is_reported_without_its_values(key):
    bad = PREFIX + '{"username": "jdupont", "broken": '
    good = PREFIX + json.dumps(EXAMPLES["play_video"]())
    r = run_cli(["anonymise", "--policy", "edx"], f"{good}\n{bad}\n".encode(), key)
    assert r.returncode == 1
    err = r.stderr.decode()
    assert "line 2" in err
    for leak in ("172.18.0.99", "user 6", "jdupont", "INFO 4242"):
        assert leak not in err
    assert len(r.stdout.decode().splitlines()) == 1


def test_builtin_xapi_policy_in_a_pipe(key):
    from .test_xapi_policy import base
    stmt = base()
    stmt["actor"] = {"mbox": "mailto:jeanne@example.org", "name": "Jeanne"}
    r = run_cli(["anonymise", "--policy", "xapi"], (json.dumps(stmt) + "\n").encode(), key)
    assert r.returncode == 0, r.stderr.decode()
    out = json.loads(r.stdout)
    assert "jeanne" not in r.stdout.decode().lower()
    from ralph.models.xapi.base.statements import BaseXapiStatement
    BaseXapiStatement.model_validate(out)
