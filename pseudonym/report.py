"""The audit log summarised for the DPO: runs by policy, version and key id, what they
read, wrote and rejected, every lookup and re-identification with its reason, and
whether the chain verifies."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from .audit import verify
from .errors import AuditError
from .keys import MasterKey
from .render import Doc


def _entries(path: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], int]:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise AuditError(f"{path}: cannot read audit log ({e.strerror})") from None
    out, bad = [], 0
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            e = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(e, dict):
            out.append(e)
        else:
            bad += 1
    return out, bad


def report(path: str | os.PathLike[str], key: MasterKey | None = None) -> tuple[Doc, bool]:
    """The report, and whether the log verifies."""
    check = verify(path, key)
    entries, unreadable = _entries(path)
    doc = Doc(f"Audit report: {Path(path).name}")
    doc.h2("Integrity")
    if check.ok:
        doc.p(f"The log verifies: {check}.")
    else:
        doc.p(f"**The log does not verify**: {check}. Treat that entry and every later one "
              "as unverified.")
    if not check.hmac_checked:
        doc.p("HMACs were not checked (no audit key given): the chain alone does not show "
              "a rewrite of the whole log.")
    if unreadable:
        doc.p(f"{unreadable} lines are not JSON objects and are left out below.")

    runs = [e for e in entries if e.get("entry") == "run"]
    groups: dict[tuple, dict[str, Any]] = {}
    for e in runs:
        pol = e.get("policy") or {}
        kids = ", ".join(sorted({k.get("key_id", "?") for k in e.get("keys") or []})) or "none"
        g = groups.setdefault((pol.get("name"), pol.get("version"), pol.get("sha256"), kids),
                              {"runs": 0, "status": Counter(), "read": 0, "written": 0,
                               "rejected": 0, "first": None, "last": None,
                               "errors": Counter(), "domain": pol.get("domain")})
        g["runs"] += 1
        g["status"][e.get("status", "?")] += 1
        rec = e.get("records") or {}
        for k in ("read", "written", "rejected"):
            g[k] += int(rec.get(k) or 0)
        for kind, err in (e.get("errors") or {}).items():
            g["errors"][kind] += int((err or {}).get("count") or 0)
        start, end = e.get("started"), e.get("ended")
        if start and (g["first"] is None or start < g["first"]):
            g["first"] = start
        if end and (g["last"] is None or end > g["last"]):
            g["last"] = end
    doc.h2("Runs by policy, version and key")
    if groups:
        rows = []
        for (name, version, sha, kids), g in groups.items():
            status = ", ".join(f"{n} {s}" for s, n in sorted(g["status"].items()))
            errors = ", ".join(f"{k}: {n}" for k, n in sorted(g["errors"].items())) or "none"
            rows.append([f"`{name}` {version}", f"`{(sha or '?')[:12]}`", f"`{g['domain']}`",
                         f"`{kids}`", f"{g['runs']} ({status})", str(g["read"]),
                         str(g["written"]), str(g["rejected"]), errors,
                         f"{g['first'] or '?'} to {g['last'] or '?'}"])
        doc.table(["Policy", "SHA-256 (start)", "Domain", "Key ids", "Runs", "Read",
                   "Written", "Rejected", "Rejections by kind", "Period"], rows)
    else:
        doc.p("No run is recorded.")

    doc.h2("Lookups and re-identifications")
    subj = [e for e in entries if e.get("entry") in ("lookup", "reidentify")]
    if subj:
        rows = []
        for e in subj:
            pol = e.get("policy") or {}
            kid = e.get("key_id") or ", ".join(e.get("key_ids") or [])
            outcome = e.get("outcome") or f"{e.get('pseudonyms', '?')} pseudonyms"
            rows.append([e.get("at", "?"), e["entry"], f"`{pol.get('name')}` {pol.get('version')}",
                         f"`{kid}`", str(e.get("reason", "")), outcome])
        doc.table(["When", "What", "Policy", "Key ids", "Reason", "Outcome"], rows)
    else:
        doc.p("None recorded.")
    other = Counter(e.get("entry", "?") for e in entries
                    if e.get("entry") not in ("run", "lookup", "reidentify"))
    if other:
        doc.p("Other entries: " + ", ".join(f"{k} ({n})" for k, n in sorted(other.items())))
    return doc, check.ok
