"""Python entries that skip needless decode/encode: raw lines, whole blocks, records."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import orjson
import pytest

from pseudonym import (
    AuditLog,
    KeyRing,
    Policy,
    RecordError,
    anonymise,
    anonymise_block,
    anonymise_lines,
)

from .conftest import EXAMPLES

POLICY = EXAMPLES / "research.yaml"
DATA = (EXAMPLES / "traces.jsonl").read_bytes()


@pytest.fixture(scope="module")
def cli_output(keys: KeyRing) -> bytes:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSEUDONYM_")}
    env["PSEUDONYM_KEY"] = keys.active.text
    r = subprocess.run([sys.executable, "-m", "pseudonym", "anonymise", "--policy",
                        str(POLICY)], input=DATA, capture_output=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_raw_lines_bytes_or_str_with_or_without_ends_match_the_cli(keys, cli_output):
    policy = Policy.load(POLICY)
    want = cli_output.splitlines()
    as_bytes = DATA.splitlines(keepends=True)
    assert list(anonymise_lines(as_bytes, policy, keys=keys)) == want
    assert list(anonymise_lines(DATA.splitlines(), policy, keys=keys)) == want
    assert list(anonymise_lines(DATA.decode().splitlines(), policy, keys=keys)) == want
    crlf = [line.rstrip(b"\n") + b"\r\n" for line in as_bytes]
    ended = list(anonymise_lines(crlf, policy, keys=keys, line_ends=True))
    assert b"".join(ended) == cli_output


def test_block_in_block_out_matches_the_cli_and_audits_once(keys, cli_output, tmp_path):
    policy = Policy.load(POLICY)
    with AuditLog.open(tmp_path / "a.jsonl") as audit:
        assert anonymise_block(b"\xef\xbb\xbf" + DATA, policy, keys=keys,
                               audit=audit) == cli_output
    entries = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert len(entries) == 1 and entries[0]["records"]["written"] == 12


def test_block_fails_closed_naming_the_line(keys, tmp_path):
    policy = Policy.load(POLICY)
    lines = DATA.splitlines()
    bad = b"\n".join([*lines[:4], b'{"actor": ', *lines[4:]]) + b"\n"
    with pytest.raises(RecordError) as e:
        anonymise_block(bad, policy, keys=keys)
    assert e.value.position == 5 and e.value.kind == "invalid-json"
    out = anonymise_block(bad, policy, keys=keys, on_error="skip")
    assert out.count(b"\n") == 12


def test_pre_parsed_records_give_the_same_records_as_the_lines(keys, cli_output):
    policy = Policy.load(POLICY)
    records = [orjson.loads(x) for x in DATA.splitlines()]
    got = list(anonymise(records, policy, keys=keys))
    assert [orjson.dumps(r) for r in got] == cli_output.splitlines()


def test_a_byte_order_mark_is_dropped_from_the_first_line_only(keys, cli_output):
    """As the command reads a file (found by review: ``anonymise_lines`` rejected a file
    that starts with a mark, which the command and ``anonymise_block`` accept)."""
    policy = Policy.load(POLICY)
    lines = DATA.splitlines(keepends=True)
    marked = [b"\xef\xbb\xbf" + lines[0], *lines[1:]]
    assert b"".join(anonymise_lines(marked, policy, keys=keys, line_ends=True)) == cli_output
    assert b"".join(anonymise_lines((x.decode() for x in marked), policy, keys=keys,
                                    line_ends=True)) == cli_output
    assert anonymise_block(b"".join(marked), policy, keys=keys) == cli_output
    lower = [lines[0], b"\xef\xbb\xbf" + lines[1], *lines[2:]]
    with pytest.raises(RecordError) as e:
        list(anonymise_lines(lower, policy, keys=keys))
    assert e.value.position == 2 and e.value.kind == "invalid-json"
    with pytest.raises(RecordError) as e:
        anonymise_block(b"".join(lower), policy, keys=keys)
    assert e.value.position == 2
