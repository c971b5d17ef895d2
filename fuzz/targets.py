"""Fuzz targets: bytes in, and any exception other than the library's declared errors out.

``policy(data)`` loads a policy file's bytes (YAML, or JSON when the first byte is odd),
compiles it with a key and runs it on a sample trace. ``anonymise_one(data)`` picks one of
a few policies that use every action, path kind and option family, or a built-in policy,
and feeds the rest as one JSON line through the path the command line uses, then through
the Python API.
Run them with atheris (``fuzz/run.py``) or hypothesis (``tests/test_fuzz.py``).
"""

from __future__ import annotations

import json

from pseudonym import KeyRing, MasterKey, Policy, PseudonymError, anonymise
from pseudonym.engine import RunStats, compile_plan, run_lines
from pseudonym.jsonlines import loads
from pseudonym.policy import builtin_names

KEYS = KeyRing([MasterKey(bytes(range(32)))])

SAMPLE = {
    "id": "6513270e", "actor": {"objectType": "Agent", "mbox": "mailto:a@example.org",
                                "account": {"name": "learner-1", "homePage": "http://x"}},
    "verb": {"id": "played"}, "timestamp": "2026-03-01T10:20:30.123+00:00", "ip": "10.1.2.3",
    "score": 17.5, "tags": ["a", 1, None, {"b": [2]}], "context": {"extensions": {"u": 1}},
}


def policy(data: bytes) -> None:
    try:
        text = data.decode("utf-8-sig")
        pol = Policy.from_text(text, source="fuzz", json_syntax=data[:1] in (b"{", b"["))
        compile_plan(pol, KEYS)
        anonymise(json.loads(json.dumps(SAMPLE)), pol, keys=KEYS)
    except UnicodeDecodeError:
        return
    except PseudonymError as e:
        str(e)


_RULES = [
    [{"path": "$.id", "action": "keep"},
     {"path": "$.actor.account.name", "action": "hash", "options": {"encoding": "uuid"}},
     {"path": "$.actor.mbox", "action": "hash",
      "options": {"normalise": ["strip", "lower", "nfkc"], "encoding": "base32"}},
     {"path": "$.actor", "action": "keep", "when": {"objectType": ["Agent", None]}},
     {"path": "$..name", "action": "encrypt", "options": {"normalise": ["nfc"]}},
     {"path": "$.verb", "action": "keep"},
     {"path": "$.timestamp", "action": "generalise", "options": {"kind": "timestamp",
                                                                 "unit": "hour"}},
     {"path": "$.ip", "action": "generalise", "options": {"kind": "ip", "ipv4_prefix": 16}},
     {"path": "$.score", "action": "generalise", "options": {"kind": "number", "width": 0.5}},
     {"path": "$.age", "action": "generalise", "options": {"kind": "number",
                                                           "bounds": [18, 25, 65]}},
     {"path": "$.tags[*]", "action": "hash", "options": {"encoding": "integer", "bits": 32}},
     {"path": "$.tags[0]", "action": "keep"},
     {"path": "$.note", "action": "redact", "options": {"value": {"r": [1]}}}],
    [{"path": "$.context.extensions[*]", "action": "drop"},
     {"path": "$.context", "action": "keep"},
     {"path": "$.list[-1]", "action": "hash"},
     {"path": "$.items[?(@.kind == 'secret')]", "action": "redact"},
     {"path": "$.items[1:3]", "action": "encrypt"},
     {"path": "$.items[*].n", "action": "generalise", "options": {"kind": "number",
                                                                  "width": 10, "origin": 5}},
     {"path": "$.when", "action": "generalise", "options": {"kind": "timestamp",
                                                            "unit": "month"}},
     {"path": "$..ip", "action": "generalise", "options": {"kind": "ip", "ipv6_prefix": 64}}],
]
_RULES.append([
    {"path": "$.actor", "action": "agent", "options": {"home_page": "https://fun-mooc.fr"}},
    {"path": "$.username", "action": "learner_id", "options": {"encoding": "base32"}},
    {"path": "$.user_id", "action": "learner_id", "options": {"encoding": "integer"}},
    {"path": "$.event", "action": "json", "options": {"otherwise": "redact"}},
    {"path": "$.event.answer", "action": "scrub"},
    {"path": "$.event.text", "action": "scrub", "options": {"replace": "pseudonym"}},
    {"path": "$.page", "action": "url"},
    {"path": "$.referer", "action": "url", "options": {"token": "u"}},
    {"path": "$.time", "action": "date_shift", "options": {"days": 30, "learner": "$.username"}},
    {"path": "$.timestamp", "action": "date_shift", "options": {"days": 5, "learner": "$.actor"}},
    {"path": "$.ip", "action": "ipv4_prefix"},
    {"path": "$.context", "action": "keep"},
])
POLICIES = [Policy.from_dict({"name": f"fuzz{i}", "version": "1", "domain": f"fuzz-{i}",
                              "unmatched": unmatched, "rules": rules})
            for i, rules in enumerate(_RULES) for unmatched in ("drop", "keep", "reject")]
POLICIES += [Policy.load(name) for name in builtin_names()]
PLANS = [compile_plan(p, KEYS) for p in POLICIES]


def anonymise_one(data: bytes) -> None:
    if not data:
        return
    pick, raw = data[0] % len(POLICIES), data[1:]
    plan, stats = PLANS[pick], RunStats()
    out = list(run_lines(plan, [raw], stats))
    assert stats.read == stats.written + stats.rejected, "a record was lost"
    for line in out:
        json.loads(line)  # what is written is JSON
    try:
        record = loads(raw)
    except PseudonymError:
        return
    if type(record) is dict:
        try:
            anonymise(record, POLICIES[pick], keys=KEYS)
        except PseudonymError as e:
            str(e)
