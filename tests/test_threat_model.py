"""Tests named by the threat model (docs/threat-model.md): each shows that a control
holds, or that a residual risk the page admits is real (so the page stays honest)."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from pseudonym import (
    AuditLog,
    KeyRing,
    KeyRingError,
    MasterKey,
    Policy,
    PseudonymError,
    anonymise,
    reidentify,
)
from pseudonym.audit import read_entries, verify
from pseudonym.crypto import hash_key

KEYS = KeyRing.generate()
EMAILS = [f"learner{i}@example.org" for i in range(50)]


def policy(domain: str = "release-1", **extra) -> Policy:
    return Policy.from_dict({
        "name": "tm", "version": "1", "domain": domain, **extra,
        "rules": [{"path": "$.actor.mbox", "action": "hash",
                   "options": {"normalise": ["strip", "lower"]}},
                  {"path": "$.actor.account.name", "action": "encrypt"},
                  {"path": "$.verb", "action": "keep"},
                  {"path": "$.course", "action": "keep"}]})


def traces() -> list[dict]:
    return [{"actor": {"mbox": f"mailto:{e}", "account": {"name": e.split("@")[0]}},
             "verb": "played", "course": f"c{i % 3}"} for i, e in enumerate(EMAILS)]


# -- T1 dictionary attack -------------------------------------------------------------------
def test_t1_dictionary_attack_without_the_key_finds_nothing() -> None:
    """The recipient hashes every candidate address (plain digests, xAPI's mbox_sha1sum,
    HMAC under guessable keys): no pseudonym matches. Under the real key they all do,
    so it is the key, not the encoding, that protects them."""
    out = [anonymise(t, policy(), keys=KEYS)["actor"]["mbox"] for t in traces()]
    guesses = set()
    for e in EMAILS:
        for form in (e, f"mailto:{e}"):
            raw = form.encode()
            guesses |= {hashlib.new(h, raw).hexdigest()[:32] for h in ("md5", "sha1", "sha256")}
            for guessed_key in (b"", b"release-1", b"pseudonym/v1", b"\x00" * 32):
                guesses.add(hmac.new(guessed_key, raw, "sha256").hexdigest()[:32])
    assert not guesses & set(out)
    real = hash_key(KEYS.active._secret, "release-1")
    assert {hmac.new(real, f"mailto:{e}".encode(), "sha256").hexdigest()[:32]
            for e in EMAILS} == set(out)


# -- T2 linkage across releases --------------------------------------------------------------
def test_t2_releases_in_two_domains_cannot_be_joined_and_the_audit_says_which(tmp_path):
    audit = AuditLog.open(tmp_path / "audit.jsonl")
    one = list(anonymise(traces(), policy("release-1"), keys=KEYS, audit=audit))
    two = list(anonymise(traces(), policy("release-2"), keys=KEYS, audit=audit))
    ids = lambda rs: {r["actor"]["mbox"] for r in rs} | {r["actor"]["account"]["name"]  # noqa: E731
                                                          for r in rs}
    assert len(ids(one)) == 2 * len(EMAILS) and not ids(one) & ids(two)
    again = list(anonymise(traces(), policy("release-1"), keys=KEYS))
    assert one == again  # within a release, a learner is followed
    entries = read_entries(tmp_path / "audit.jsonl")
    assert [e["policy"]["domain"] for e in entries] == ["release-1", "release-2"]
    assert entries[0]["keys"] == [{"key_id": KEYS.active.key_id, "domain": "release-1"}]


# -- T3 frequency analysis: the residual risk is real -----------------------------------------
def test_t3_deterministic_tokens_keep_frequencies_and_tokens_show_length() -> None:
    """Residual risk, stated in the threat model: equal values keep equal pseudonyms (so
    value frequencies survive) and encryption tokens grow with the value; hashed
    pseudonyms have one length whatever the input, and redact leaves one constant."""
    courses = [anonymise(t, Policy.from_dict({
        "name": "f", "version": "1", "domain": "d",
        "rules": [{"path": "$.course", "action": "hash"}]}), keys=KEYS)["course"]
        for t in traces()]
    assert sorted(courses.count(c) for c in set(courses)) == [16, 17, 17]
    enc = Policy.from_dict({"name": "e", "version": "1", "domain": "d",
                            "rules": [{"path": "$.v", "action": "encrypt"},
                                      {"path": "$.h", "action": "hash"},
                                      {"path": "$.r", "action": "redact"}]})
    short = anonymise({"v": "a", "h": "a", "r": "a"}, enc, keys=KEYS)
    long = anonymise({"v": "a" * 100, "h": "a" * 100, "r": "a" * 100}, enc, keys=KEYS)
    assert len(long["v"]) > len(short["v"])
    assert len(long["h"]) == len(short["h"]) == 32 and long["r"] == short["r"]


# -- T4 quasi-identifiers and new fields: allow-list by default -------------------------------
def test_t4_t8_a_new_field_is_dropped_by_default_and_counted_in_the_audit(tmp_path):
    """A policy that does not say ``unmatched`` is an allow-list: a field that appears in
    the source later (an extension carrying an e-mail) is dropped, and the audit log
    counts it by shape, without its value."""
    pol = policy()
    assert pol.model.unmatched == "drop"
    trace = {**traces()[0], "context": {"extensions": {"https://x/email": "new@example.org"}}}
    audit = AuditLog.open(tmp_path / "audit.jsonl")
    assert "context" not in anonymise(trace, pol, keys=KEYS, audit=audit)
    text = (tmp_path / "audit.jsonl").read_text()
    assert read_entries(tmp_path / "audit.jsonl")[0]["unmatched"]["dropped"] == {"$[*]": 1}
    assert "new@example.org" not in text and "https://x/email" not in text


# -- T5 keys never leave the key ring ---------------------------------------------------------
def test_t5_key_material_appears_nowhere_but_in_the_key_text(tmp_path) -> None:
    secret_b64 = KEYS.active.text.split(".")[2]
    audit = AuditLog.open(tmp_path / "audit.jsonl")
    out = list(anonymise(traces(), policy(), keys=KEYS, audit=audit))
    token = out[0]["actor"]["account"]["name"]
    reidentify(token, policy(), keys=KEYS, reason="T5 test", audit=audit)
    seen = [json.dumps(out), (tmp_path / "audit.jsonl").read_text(), repr(KEYS),
            repr(KEYS.active), str(KEYS.active), repr(KEYS.hasher("d")), repr(KEYS.cipher("d"))]
    for bad in ("psk1.x.!!", KEYS.active.text[:-3] + "AAA"):
        with pytest.raises(KeyRingError) as e:
            KeyRing.parse(bad)
        seen.append(str(e.value))
    for text in seen:
        assert secret_b64 not in text and KEYS.active.text not in text
    assert token.split(".")[1] == KEYS.active.key_id  # only the key id travels


# -- T6 audit tampering: the residual risk without an outside copy ---------------------------
def test_t6_removing_the_last_entries_is_only_caught_against_an_outside_copy(tmp_path):
    """Residual risk, stated in the threat model: the chain cannot show that its tail was
    cut. Verifying against a copy of the last line kept elsewhere (``--anchor``) does."""
    path = tmp_path / "audit.jsonl"
    audit = AuditLog.open(path)
    for _ in range(3):
        anonymise(traces()[0], policy(), keys=KEYS, audit=audit)
    outside_copy = path.read_bytes().splitlines()[-1]
    assert verify(path, anchor=outside_copy).ok
    path.write_bytes(b"".join(line + b"\n" for line in path.read_bytes().splitlines()[:2]))
    assert verify(path).ok
    result = verify(path, anchor=outside_copy)
    assert not result.ok and str(result).startswith("entry 3, kept elsewhere, is missing")


def test_t6_a_copy_sent_after_cutting_the_log_matches_it_so_every_copy_is_checked(tmp_path):
    """Residual risk, stated in the threat model: where the pipeline sends the copies itself,
    whoever runs it can cut the log and send one more copy, of the new last entry. The
    latest copy then verifies; the copies sent before it do not."""
    path = tmp_path / "audit.jsonl"
    audit = AuditLog.open(path)
    for _ in range(3):
        anonymise(traces()[0], policy(), keys=KEYS, audit=audit)
    sent = [hashlib.sha256(path.read_bytes().splitlines()[-1]).hexdigest()]
    path.write_bytes(b"".join(line + b"\n" for line in path.read_bytes().splitlines()[:2]))
    sent.append(hashlib.sha256(path.read_bytes().splitlines()[-1]).hexdigest())
    assert verify(path, anchor=sent[-1]).ok
    assert [verify(path, anchor=copy).ok for copy in sent] == [False, True]
    assert verify(path).last_hash == sent[-1]
    with_line_end = hashlib.sha256(path.read_bytes().splitlines(keepends=True)[-1]).hexdigest()
    assert not verify(path, anchor=with_line_end).ok  # what `tail -n 1 | sha256sum` gives


# -- T7 errors and logs ----------------------------------------------------------------------
def test_t7_internal_errors_carry_no_value(monkeypatch, capsys, tmp_path):
    """Even an unexpected bug's message (which might quote a value) stays out of stderr."""
    from pseudonym import cli

    def boom(*args, **kwargs):
        raise RuntimeError("alice@example.org")

    monkeypatch.setattr(cli, "run_block", boom)
    monkeypatch.setenv("PSEUDONYM_KEY", KEYS.active.text)
    monkeypatch.delenv("PSEUDONYM_DEBUG", raising=False)
    (tmp_path / "p.json").write_text(json.dumps(policy().model.model_dump(mode="json")))
    (tmp_path / "in.jsonl").write_text(json.dumps(traces()[0]) + "\n")
    code = cli.main(["anonymise", "-p", str(tmp_path / "p.json"), "-i",
                     str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl")])
    err = capsys.readouterr().err
    assert code == 70 and "internal error (RuntimeError)" in err
    assert "alice" not in err and not (tmp_path / "out.jsonl").exists()


# -- T9 policy weakening ---------------------------------------------------------------------
def test_t9_the_audit_fingerprints_the_policy_and_a_weakened_one_shows(tmp_path):
    audit = AuditLog.open(tmp_path / "audit.jsonl")
    approved = policy()
    weakened = Policy.from_dict({**approved.model.model_dump(mode="json"), "rules": [
        {"path": "$.actor.mbox", "action": "keep"},
        *approved.model.model_dump(mode="json")["rules"][1:]]})
    for p in (approved, weakened):
        anonymise(traces()[0], p, keys=KEYS, audit=audit)
    a, w = read_entries(tmp_path / "audit.jsonl")
    assert (a["policy"]["name"], a["policy"]["version"]) == (w["policy"]["name"],
                                                              w["policy"]["version"])
    assert a["policy"]["sha256"] == approved.sha256 != w["policy"]["sha256"]


# -- T11 unauthorised reversal ---------------------------------------------------------------
def test_t11_tokens_open_only_with_their_key_and_domain_and_resist_tampering():
    token = anonymise(traces()[0], policy(), keys=KEYS)["actor"]["account"]["name"]
    assert reidentify(token, policy(), keys=KEYS, reason="DSAR 42") == "learner0"
    other_key = KeyRing([MasterKey.generate()])
    with pytest.raises(KeyRingError, match="not in the key ring"):
        reidentify(token, policy(), keys=other_key, reason="x")
    with pytest.raises(KeyRingError, match="does not open with this key and domain"):
        reidentify(token, policy("release-2"), keys=KEYS, reason="x")
    prefix, kid, body = token.split(".")
    i = len(body) // 2  # the last character may carry only padding bits: flip a middle one
    flipped = body[:i] + ("A" if body[i] != "A" else "B") + body[i + 1:]
    with pytest.raises(KeyRingError, match="does not open"):
        reidentify(f"{prefix}.{kid}.{flipped}", policy(), keys=KEYS, reason="x")
    with pytest.raises(PseudonymError, match="needs a stated reason"):
        reidentify(token, policy(), keys=KEYS, reason=" ")


def test_t11_reidentification_is_audited_without_the_token_or_the_value(tmp_path):
    token = anonymise(traces()[0], policy(), keys=KEYS)["actor"]["account"]["name"]
    audit = AuditLog.open(tmp_path / "audit.jsonl")
    reidentify(token, policy(), keys=KEYS, reason="DSAR 42", audit=audit)
    with pytest.raises(KeyRingError):
        reidentify(token, policy("release-2"), keys=KEYS, reason="probe", audit=audit)
    ok, failed = read_entries(tmp_path / "audit.jsonl")
    assert (ok["outcome"], ok["reason"], failed["outcome"]) == ("ok", "DSAR 42", "failed")
    text = Path(tmp_path / "audit.jsonl").read_text()
    assert token not in text and token.split(".")[2] not in text and "learner0" not in text


def test_every_test_the_threat_model_names_exists() -> None:
    """The page's 'test that shows it' column must name real tests, and every row one."""
    import re

    root = Path(__file__).resolve().parent.parent
    page = (root / "docs" / "threat-model.md").read_text()
    rows = [line for line in page.splitlines() if re.match(r"\| T\d+ \|", line)]
    assert len(rows) >= 11 and all("tests/" in row for row in rows)
    for file, name in re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", page):
        assert re.search(rf"^def {name}\(", (root / file).read_text(), re.M), f"{file}::{name}"
