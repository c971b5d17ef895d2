"""Hostile and broken records, through the real command (a subprocess) and the API.

Each test puts a secret marker in the bad record and checks the three promises: a clear
error naming the line, nothing echoed (stdout, stderr, audit log), nothing lost (the
good records around it are written, the bad one is counted).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pseudonym import KeyRing, Policy, RecordError, anonymise
from pseudonym.audit import read_entries

KEY = KeyRing.generate()
SECRET = "s3cr3t-alice@example.org"

POLICY = """\
name: hostile
version: "1"
domain: hostile-tests
unmatched: drop
rules:
  - {path: $.id, action: keep}
  - {path: $.actor.name, action: hash}
  - {path: $.ip, action: generalise, options: {kind: ip}}
  - {path: $.note, action: redact}
  - {path: $.blob, action: keep}
"""


@pytest.fixture()
def policy_file(tmp_path: Path) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(POLICY)
    return p


def run_cli(*args: str, stdin: bytes | None = None, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    e = {**os.environ, "PSEUDONYM_KEY": KEY.active.text, **(env or {})}
    return subprocess.run([sys.executable, "-m", "pseudonym", *args], input=stdin,
                          capture_output=True, env=e, cwd=cwd, timeout=120)


def anonymise_file(tmp_path: Path, policy_file: Path, data: bytes
                   ) -> tuple[subprocess.CompletedProcess[bytes], list[dict], dict]:
    src = tmp_path / "in.jsonl"
    src.write_bytes(data)
    out, audit = tmp_path / "out.jsonl", tmp_path / "audit.jsonl"
    r = run_cli("anonymise", "-p", str(policy_file), "-i", str(src), "-o", str(out),
                "-a", str(audit))
    assert b"Traceback" not in r.stderr
    records = [json.loads(x) for x in out.read_bytes().splitlines()] if out.exists() else []
    entry = read_entries(audit)[-1]
    for blob in (r.stdout, r.stderr, audit.read_bytes(),
                 out.read_bytes() if out.exists() else b""):
        assert SECRET.encode() not in blob
    return r, records, entry


def good(i: int) -> bytes:
    return json.dumps({"id": i, "actor": {"name": f"learner-{i}"}}).encode()


def around(bad: bytes) -> bytes:
    return good(1) + b"\n" + bad + b"\n" + good(3) + b"\n"


def assert_rejected_line_2(r, records, entry, kind: str) -> None:
    assert r.returncode == 1
    assert [x["id"] for x in records] == [1, 3]
    assert f"line 2: rejected: {kind}".encode() in r.stderr
    assert entry["status"] == "completed"
    assert entry["records"]["read"] == 3 and entry["records"]["written"] == 2
    assert entry["errors"][kind] == {"count": 1, "records": [2]}


def test_invalid_json_in_the_middle(tmp_path, policy_file):
    bad = ('{"id": 2, "actor": {"name": "' + SECRET + '"}').encode()
    assert_rejected_line_2(*anonymise_file(tmp_path, policy_file, around(bad)), "invalid-json")


@pytest.mark.parametrize("bad", [b"[1, 2]", b'"' + SECRET.encode() + b'"', b"42", b"null",
                                 b"true"])
def test_json_that_is_not_an_object(tmp_path, policy_file, bad):
    assert_rejected_line_2(*anonymise_file(tmp_path, policy_file, around(bad)),
                           "not-an-object")


def test_invalid_utf8(tmp_path, policy_file):
    bad = b'{"id": 2, "actor": {"name": "' + SECRET.encode() + b'\xff\xfe"}}'
    r, records, entry = anonymise_file(tmp_path, policy_file, around(bad))
    assert_rejected_line_2(r, records, entry, "invalid-utf8")


def test_byte_order_mark(tmp_path, policy_file):
    r, records, _ = anonymise_file(tmp_path, policy_file, b"\xef\xbb\xbf" + around(good(2)))
    assert r.returncode == 0
    assert [x["id"] for x in records] == [1, 2, 3]


def test_crlf_line_ends(tmp_path, policy_file):
    r, records, _ = anonymise_file(tmp_path, policy_file, around(good(2)).replace(b"\n", b"\r\n"))
    assert r.returncode == 0
    assert [x["id"] for x in records] == [1, 2, 3]
    assert b"\r" not in (tmp_path / "out.jsonl").read_bytes()


def test_empty_lines_are_skipped_and_counted_not_rejected(tmp_path, policy_file):
    data = b"\n" + good(1) + b"\n\n  \n" + good(2) + b"\n\r\n"
    r, records, entry = anonymise_file(tmp_path, policy_file, data)
    assert r.returncode == 0
    assert [x["id"] for x in records] == [1, 2]
    assert entry["records"] == {"read": 2, "written": 2, "rejected": 0, "blank_lines": 4}


def test_50_mb_line(tmp_path, policy_file):
    """A 50 MB record is processed whole (no line limit), and so are the records after it:
    a huge value under a hashing rule comes out as a 32-character pseudonym."""
    huge = SECRET * (50_000_000 // len(SECRET))
    bad = json.dumps({"id": 2, "actor": {"name": huge}, "junk": [1, 2]}).encode()
    assert len(bad) >= 50_000_000 - len(SECRET)
    r, records, _ = anonymise_file(tmp_path, policy_file, around(bad))
    assert r.returncode == 0
    assert [x["id"] for x in records] == [1, 2, 3]
    assert len(records[1]["actor"]["name"]) == 32
    assert (tmp_path / "out.jsonl").stat().st_size < 1000


def test_50_mb_invalid_line_is_rejected_alone(tmp_path, policy_file):
    bad = b'{"id": 2, "blob": "' + SECRET.encode() * (50_000_000 // len(SECRET))
    assert_rejected_line_2(*anonymise_file(tmp_path, policy_file, around(bad)), "invalid-json")


def test_nesting_10000_deep(tmp_path, policy_file):
    deep = b'{"id": 2, "blob": ' + b"[" * 10_000 + b'"' + SECRET.encode() + b'"' \
        + b"]" * 10_000 + b"}"
    assert_rejected_line_2(*anonymise_file(tmp_path, policy_file, around(deep)), "too-deep")


def test_nesting_too_deep_to_write_is_rejected_not_a_crash(tmp_path, policy_file):
    """Regression (found by hand): 1,000 levels parse (orjson allows 1,024) but could not
    be written back, which crashed the whole run with an internal error."""
    deep = b'{"id": 2, "blob": ' + b"[" * 1_000 + b"]" * 1_000 + b"}"
    assert_rejected_line_2(*anonymise_file(tmp_path, policy_file, around(deep)), "too-deep")


def test_nesting_10000_deep_through_the_api():
    """Python callers pass objects, not text: a rule that must go through the nesting
    (hash, a descent) rejects the record; a kept subtree is returned as it is."""
    value: object = SECRET
    for _ in range(10_000):
        value = {"x": value}
    policy = Policy.from_text(POLICY)
    descent = Policy.from_text(POLICY + "  - {path: $..x, action: drop}\n")
    for pol, record in ((policy, {"actor": {"name": value}}), (descent, {"blob": value})):
        with pytest.raises(RecordError) as e:
            anonymise(record, pol, keys=KEY)
        assert e.value.kind == "too-deep" and SECRET not in str(e.value)
    assert anonymise({"blob": value}, policy, keys=KEY) == {"blob": value}


def test_duplicate_keys_last_wins_and_the_first_value_never_survives(tmp_path, policy_file):
    """Decision: duplicate keys are accepted and the last value wins (orjson, Python,
    JavaScript and Ralph all read them so). The output is re-serialised from the parsed
    object, so the value that lost is never in it, raw or hashed."""
    bad = ('{"id": 2, "actor": {"name": "' + SECRET + '", "name": "learner-2"}, '
           '"id": 22}').encode()
    r, records, _ = anonymise_file(tmp_path, policy_file, around(bad))
    assert r.returncode == 0
    assert [x["id"] for x in records] == [1, 22, 3]
    only_last = anonymise({"actor": {"name": "learner-2"}}, Policy.from_text(POLICY), keys=KEY)
    assert records[1]["actor"] == only_last["actor"]


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e999",
                                    b"1" + b"0" * 5000], ids=lambda n: n[:12].decode())
def test_nan_and_infinity_are_rejected(tmp_path, policy_file, number):
    bad = b'{"id": 2, "blob": ' + number + b', "actor": {"name": "' + SECRET.encode() + b'"}}'
    assert_rejected_line_2(*anonymise_file(tmp_path, policy_file, around(bad)),
                           "not-json-number")


def test_integers_beyond_64_bits_are_kept_exactly(tmp_path, policy_file):
    """Regression (found by hand): orjson read 2**64 and beyond as a float, so a kept
    value silently lost digits and a hashed one got the pseudonym of another number."""
    big = 2**64, -(2**63) - 1, 10**40
    bad = json.dumps({"id": 2, "blob": list(big), "actor": {"name": big[2]}}).encode()
    r, records, _ = anonymise_file(tmp_path, policy_file, around(bad))
    assert r.returncode == 0
    assert records[1]["blob"] == list(big)
    want = anonymise({"actor": {"name": str(10**40)}}, Policy.from_text(POLICY), keys=KEY)
    assert records[1]["actor"]["name"] == want["actor"]["name"]


def test_object_where_a_rule_expects_a_string(tmp_path, policy_file):
    """generalise(ip) on an object cannot work: the record is rejected, naming the rule."""
    bad = json.dumps({"id": 2, "ip": {"v4": SECRET}}).encode()
    r, records, entry = anonymise_file(tmp_path, policy_file, around(bad))
    assert_rejected_line_2(r, records, entry, "action-failed")
    assert b"line 2: rejected: action-failed (rule 3): generalise on $.ip" in r.stderr


def test_object_under_hash_and_redact_is_replaced_whole(tmp_path, policy_file):
    bad = json.dumps({"id": 2, "actor": {"name": {"first": SECRET}},
                      "note": {"text": SECRET}}).encode()
    r, records, _ = anonymise_file(tmp_path, policy_file, around(bad))
    assert r.returncode == 0
    assert len(records[1]["actor"]["name"]) == 32 and records[1]["note"] == "[REDACTED]"


def test_missing_fields_are_not_an_error(tmp_path, policy_file):
    data = around(b'{"id": 2}') + b"{}\n" + b'{"actor": {}}\n'
    r, records, entry = anonymise_file(tmp_path, policy_file, data)
    assert r.returncode == 0
    assert records[1:] == [{"id": 2}, records[2], {}, {}]  # nothing keeps the empty actor
    assert entry["records"]["written"] == 5


def test_lone_surrogate_escape_is_kept_as_an_escape(tmp_path, policy_file):
    """Valid JSON, not valid Unicode: read, and written back as the same escape."""
    r, records, _ = anonymise_file(tmp_path, policy_file, around(b'{"id": 2, "blob": "a\\ud800"}'))
    assert r.returncode == 0
    assert b'"a\\ud800"' in (tmp_path / "out.jsonl").read_bytes()
    assert records[1]["blob"] == "a\ud800"


def test_lone_surrogate_in_an_identifying_field(tmp_path):
    """Found by review: the identifier's URL-encoded forms were made with strict UTF-8, so
    the record crashed the run (exit 70), and through the API the exception carried the
    whole identifier."""
    p = tmp_path / "policy.yaml"
    p.write_text(POLICY.replace("  - {path: $.blob, action: keep}\n",
                                "  - {path: $.user, action: learner_id}\n"
                                "  - {path: $.blob, action: scrub}\n"))
    bad = json.dumps({"id": 2, "user": SECRET + "\ud800", "blob": f"by {SECRET}\ud800 !"})
    r, records, entry = anonymise_file(tmp_path, p, around(bad.encode()))
    assert r.returncode == 0 and [x["id"] for x in records] == [1, 2, 3]
    assert records[1]["blob"] == "by [EMAIL]\ud800 !"  # the e-mail detector runs first
    assert entry["records"]["written"] == 3


def test_an_unexpected_error_costs_one_record_and_quotes_nothing(monkeypatch):
    """A bug in an action (here, made on purpose) rejects the record it met, never the run,
    and the error raised to the caller neither says nor holds the value."""
    from pseudonym.actions import REGISTRY

    policy = Policy.from_text(POLICY, source="p.yaml")
    build = REGISTRY["redact"].build

    def buggy(options, ctx):
        def run(value):
            if value == SECRET:
                raise UnicodeEncodeError("utf-8", value, 0, 1, "boom")
            return "[REDACTED]"
        return run

    monkeypatch.setitem(REGISTRY, "redact", REGISTRY["redact"].__class__(
        **{**vars(REGISTRY["redact"]), "build": buggy}))
    records = [{"id": 1, "note": "x"}, {"id": 2, "note": SECRET}, {"id": 3, "note": "y"}]
    assert [r["id"] for r in anonymise(records, policy, keys=KEY, on_error="skip")] == [1, 3]
    with pytest.raises(RecordError) as e:
        anonymise(records[1], policy, keys=KEY)
    assert e.value.kind == "internal-error" and SECRET not in str(e.value)
    assert e.value.__context__ is None and e.value.__cause__ is None
    assert build is not buggy


def _chain(e: BaseException | None) -> list[BaseException]:
    """An exception and every one it was raised from or while handling."""
    out: list[BaseException] = []
    while e is not None and e not in out:
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


@pytest.mark.parametrize("line", [
    b'{"id": 1, "note": "' + SECRET.encode() + b'", oops}',  # invalid JSON
    b'{"id": 1, "note": "' + SECRET.encode() + b'\xff"}',  # invalid UTF-8
    b'{"id": 1e400, "note": "' + SECRET.encode() + b'"}',  # a number out of range
    b'{"id": 1, "ip": "' + SECRET.encode() + b'"}',  # an action's error (not an IP)
], ids=["json", "utf8", "number", "action"])
def test_a_rejected_line_raises_an_error_that_holds_nothing_of_it(line):
    """The error raised for a bad line, and every exception chained to it (which error
    reporters and debuggers show), neither says nor holds the line's values."""
    from pseudonym import anonymise_block, anonymise_lines

    policy = Policy.from_text(POLICY, source="p.yaml")
    runs = [lambda: list(anonymise_lines([line], policy, keys=KEY)),
            lambda: anonymise_block(line, policy, keys=KEY)]
    if b'"ip"' in line:
        runs.append(lambda: anonymise(json.loads(line), policy, keys=KEY))
    for run in runs:
        with pytest.raises(RecordError) as e:
            run()
        for x in _chain(e.value):
            held = [str(x), repr(x), *map(repr, vars(x).values()),
                    repr(getattr(x, "doc", "")), repr(getattr(x, "object", ""))]
            assert not any(SECRET in h or "1e400" in h for h in held), type(x).__name__
