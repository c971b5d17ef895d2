"""The audit log summarised for the DPO: runs by policy, version and key id, what they
read, wrote and rejected, every lookup and re-identification with its reason, and
whether the chain verifies.

A report is wanted most when the log is damaged or tampered with, so it never trusts an
entry's shape: totals count verified entries only, the entries from the break on are
listed one by one, and an entry whose fields are not what this tool writes is named by
its number and left out, never a crash.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .audit import load_entry, split_lines, verify_bytes
from .errors import AuditError
from .keys import MasterKey
from .render import Doc, code

SUBJECT_KINDS = ("lookup", "reidentify")


class _Unreadable(Exception):
    """An entry whose fields do not have the types this tool writes; the message names
    the field, never its value."""


def _get(d: dict[str, Any], name: str, where: str, ok: Any, what: str) -> Any:
    value = d.get(name)
    if not ok(value):
        raise _Unreadable(f"`{where}{name}` is missing or not {what}")
    return value


def _text(d: dict[str, Any], name: str, where: str = "") -> str:
    return _get(d, name, where, lambda v: isinstance(v, str), "text")


def _count(d: dict[str, Any], name: str, where: str = "") -> int:
    return _get(d, name, where, lambda v: type(v) is int and v >= 0, "a count")


def _object(d: dict[str, Any], name: str, where: str = "") -> dict[str, Any]:
    return _get(d, name, where, lambda v: isinstance(v, dict), "an object")


def _texts(d: dict[str, Any], name: str) -> list[str]:
    return _get(d, name, "", lambda v: isinstance(v, list)
                and all(isinstance(x, str) for x in v), "a list of texts")


@dataclass
class _Entry:
    """What the report shows of one entry; ``unreadable`` says why it cannot."""

    n: int
    kind: str = "?"
    when: str = ""
    policy: tuple[str, str, str, str] = ("", "", "", "")
    key_ids: str = ""
    status: str = ""
    records: tuple[int, int, int] = (0, 0, 0)
    errors: dict[str, int] = field(default_factory=dict)
    ended: str = ""
    reason: str = ""
    outcome: str = ""
    unreadable: str = ""


def _policy(e: dict[str, Any]) -> tuple[str, str, str, str]:
    pol = _object(e, "policy")
    return (_text(pol, "name", "policy."), _text(pol, "version", "policy."),
            _text(pol, "sha256", "policy."), _text(pol, "domain", "policy."))


def _read(n: int, line: bytes) -> _Entry:
    try:
        e = load_entry(line)
    except (ValueError, RecursionError):
        return _Entry(n, unreadable="not a JSON entry")
    if not isinstance(e, dict):
        return _Entry(n, unreadable="not a JSON object")
    out = _Entry(n)
    try:
        out.kind = _text(e, "entry")
        if out.kind == "run":
            out.policy = _policy(e)
            keys = _get(e, "keys", "", lambda v: isinstance(v, list)
                        and all(isinstance(k, dict) and isinstance(k.get("key_id"), str)
                                for k in v), "a list of key ids")
            out.key_ids = ", ".join(sorted({k["key_id"] for k in keys})) or "none"
            out.status = _text(e, "status")
            out.when, out.ended = _text(e, "started"), _text(e, "ended")
            rec = _object(e, "records")
            out.records = (_count(rec, "read", "records."), _count(rec, "written", "records."),
                           _count(rec, "rejected", "records."))
            errors = _object(e, "errors")
            out.errors = {kind: _count(_object(errors, kind, "errors."), "count",
                                       f"errors.{kind}.") for kind in errors}
        elif out.kind in SUBJECT_KINDS:
            out.when, out.reason = _text(e, "at"), _text(e, "reason")
            out.policy = _policy(e)
            if out.kind == "lookup":
                out.key_ids = ", ".join(_texts(e, "key_ids"))
                out.outcome = f"{_count(e, 'pseudonyms')} pseudonyms"
            else:  # a token no key in the ring made has no key id to record: null
                out.key_ids = (_get(e, "key_id", "", lambda v: isinstance(v, str) or (
                    v is None and "key_id" in e), "text or null") or "unknown")
                out.outcome = _text(e, "outcome")
    except _Unreadable as why:
        return _Entry(n, unreadable=str(why))
    return out


def _runs_table(doc: Doc, runs: list[_Entry]) -> None:
    groups: dict[tuple[str, ...], dict[str, Any]] = {}
    for e in runs:
        g = groups.setdefault((*e.policy, e.key_ids), {
            "runs": 0, "status": Counter(), "records": [0, 0, 0], "errors": Counter(),
            "first": e.when, "last": e.ended})
        g["runs"] += 1
        g["status"][e.status] += 1
        g["records"] = [a + b for a, b in zip(g["records"], e.records, strict=True)]
        g["errors"].update(e.errors)
        g["first"], g["last"] = min(g["first"], e.when), max(g["last"], e.ended)
    rows = []
    for (name, version, sha, domain, kids), g in groups.items():
        status = ", ".join(f"{n} {s}" for s, n in sorted(g["status"].items()))
        errors = ", ".join(f"{k}: {n}" for k, n in sorted(g["errors"].items()) if n) or "none"
        rows.append([f"{code(name)} {version}", code(sha), code(domain), code(kids),
                     f"{g['runs']} ({status})", *map(str, g["records"]), errors,
                     f"{g['first']} to {g['last']}"])
    doc.table(["Policy", "SHA-256", "Domain", "Key ids", "Runs", "Read", "Written",
               "Rejected", "Rejections by kind", "Period"], rows)


def _subjects_table(doc: Doc, entries: list[_Entry]) -> None:
    doc.table(["Entry", "When", "What", "Policy", "Key ids", "Reason", "Outcome"],
              [[str(e.n), e.when, e.kind, f"{code(e.policy[0])} {e.policy[1]}", code(e.key_ids),
                e.reason, e.outcome] for e in entries])


def _unverified_table(doc: Doc, entries: list[_Entry]) -> None:
    rows = []
    for e in entries:
        if e.unreadable:
            rows.append([str(e.n), "?", "", "", "", "", f"cannot be read: {e.unreadable}"])
            continue
        name, version, sha, _ = e.policy
        if e.kind == "run":
            read, written, rejected = e.records
            details = f"{e.status}; read {read}, written {written}, rejected {rejected}"
        elif e.kind in SUBJECT_KINDS:
            details = f"reason: {e.reason}; outcome: {e.outcome}"
        else:
            details = "an entry of a kind this tool does not write"
        rows.append([str(e.n), code(e.kind), e.when, f"{code(name)} {version}" if name else "",
                     code(sha) if sha else "", code(e.key_ids) if e.key_ids else "", details])
    doc.table(["Entry", "What", "When", "Policy", "SHA-256", "Key ids", "Details"], rows)


def report(path: str | os.PathLike[str], key: MasterKey | None = None) -> tuple[Doc, bool]:
    """The report, and whether the log verifies."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise AuditError(f"{path}: cannot read audit log ({e.strerror})") from None
    check = verify_bytes(data, key)
    lines, _ = split_lines(data)
    entries = [_read(n, line) for n, line in enumerate(lines, 1)]
    cut = len(entries) if check.ok else (check.broken_at or 1) - 1
    verified, unverified = entries[:cut], entries[cut:]

    doc = Doc(f"Audit report: {Path(path).name}")
    doc.h2("Integrity")
    if check.ok:
        doc.p(f"The log verifies: {check}.")
    else:
        span = (f"Entry {cut + 1} is" if cut + 1 == len(entries)
                else f"Entries {cut + 1} to {len(entries)} are")
        doc.p(f"**The log does not verify**: {check}. {span} unverified: counted in none of "
              "the tables below but the last, *Unverified entries*, which lists them one by "
              "one.")
    if key is None:
        doc.p("HMACs were not checked (no audit key given): the chain alone does not show "
              "a rewrite of the whole log.")

    doc.h2("Runs by policy, version and key")
    runs = [e for e in verified if e.kind == "run" and not e.unreadable]
    if runs:
        _runs_table(doc, runs)
    else:
        doc.p("No run is recorded.")

    doc.h2("Lookups and re-identifications")
    subjects = [e for e in verified if e.kind in SUBJECT_KINDS and not e.unreadable]
    if subjects:
        _subjects_table(doc, subjects)
    else:
        doc.p("None recorded.")
    other = Counter(e.kind for e in verified if not e.unreadable
                    and e.kind not in ("run", *SUBJECT_KINDS))
    if other:
        doc.p("Other entries: " + ", ".join(f"{code(k)} ({n})" for k, n in sorted(other.items())))
    bad = [e for e in verified if e.unreadable]
    if bad:
        doc.p("Entries the report cannot read, although the chain holds them, left out "
              "above: " + "; ".join(f"entry {e.n} ({e.unreadable})" for e in bad) + ".")

    if unverified:
        doc.h2("Unverified entries")
        doc.p("These entries may have been changed, inserted or forged: check them against "
              "the copy kept outside the pipeline before relying on any of them.")
        _unverified_table(doc, unverified)
    return doc, check.ok
