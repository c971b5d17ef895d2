"""The engine against a hand-written pass, for a 20-rule policy, in one process.

    python benchmarks/rules20.py [--data FILE] [--repeat 5]

Both sides take the same raw JSON lines (the shared xAPI statements, in memory) and
produce JSON lines with orjson; the policy (``policies/rules20.yaml``) uses every action:
hash, encrypt, generalise, keep, drop, redact. The hand-written pass is checked to give
the same records as the engine before anything is timed; then each side runs
``--repeat`` times, alternating, and the best time of each is kept.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hmac
import json
import math
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from handwritten import _memo

from pseudonym import KeyRing, MasterKey, Policy, anonymise_block, anonymise_lines

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "ralph-video-statements.jsonl.gz"
POLICY = HERE / "policies" / "rules20.yaml"
EXT = "https://w3id.org/xapi/video/extensions/"


def hand_written(policy: Policy, keys: KeyRing) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """policies/rules20.yaml, coded by hand."""
    hkey = keys.hasher(policy.domain)._key
    cipher = keys.cipher(policy.domain)
    siv, ad, kid = cipher._siv, [policy.domain.encode()], cipher.key_id

    @_memo  # as the engine's keyed actions do (recent learners' values come back)
    def h(text: str) -> bytes:
        return hmac.digest(hkey, text.encode(), "sha256")

    def uuid(d: bytes) -> str:
        x = d[:16].hex()
        return f"{x[:8]}-{x[8:12]}-8{x[13:16]}-{'89ab'[int(x[16], 16) & 3]}{x[17:20]}-{x[20:32]}"

    def encrypt(value: Any) -> str:
        pt = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        body = base64.urlsafe_b64encode(siv.encrypt(pt.encode(), ad)).rstrip(b"=").decode()
        return f"pse1.{kid}.{body}"

    def treat(r: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "id" in r:
            out["id"] = r["id"]
        actor = r.get("actor")
        if isinstance(actor, dict):
            a: dict[str, Any] = {}
            if "objectType" in actor:
                a["objectType"] = actor["objectType"]
            acc = actor.get("account")
            if isinstance(acc, dict):
                b = {}
                if "name" in acc:
                    b["name"] = uuid(h(acc["name"]))
                if "homePage" in acc:
                    b["homePage"] = "https://pseudonym.invalid"
                if b:
                    a["account"] = b
            if "mbox" in actor:
                a["mbox"] = h(actor["mbox"].strip().lower()).hex()[:32]
            if a:
                out["actor"] = a
        verb = r.get("verb")
        if isinstance(verb, dict) and "id" in verb:
            out["verb"] = {"id": verb["id"]}
        obj = r.get("object")
        if isinstance(obj, dict):
            o: dict[str, Any] = {}
            for k in ("id", "objectType"):
                if k in obj:
                    o[k] = obj[k]
            d = obj.get("definition")
            if isinstance(d, dict):
                dd = {}
                if "type" in d:
                    dd["type"] = d["type"]
                if "name" in d:
                    dd["name"] = encrypt(d["name"])
                if dd:
                    o["definition"] = dd
            if o:
                out["object"] = o
        ext = (r.get("result") or {}).get("extensions")
        if isinstance(ext, dict):
            e: dict[str, Any] = {}
            if EXT + "time" in ext:
                e[EXT + "time"] = math.floor(ext[EXT + "time"] / 10) * 10
            for k in ("progress", "length"):
                if EXT + k in ext:
                    e[EXT + k] = ext[EXT + k]
            if e:
                out["result"] = {"extensions": e}
        ctx = r.get("context")
        if isinstance(ctx, dict):
            c: dict[str, Any] = {}
            if "contextActivities" in ctx:
                c["contextActivities"] = ctx["contextActivities"]
            cext = ctx.get("extensions")
            if isinstance(cext, dict):
                ce = {}
                if EXT + "session-id" in cext:
                    ce[EXT + "session-id"] = h(cext[EXT + "session-id"]).hex()[:32]
                if EXT + "completion-threshold" in cext:
                    ce[EXT + "completion-threshold"] = cext[EXT + "completion-threshold"]
                if ce:
                    c["extensions"] = ce
            if c:
                out["context"] = c
        if "timestamp" in r:
            out["timestamp"] = datetime.fromisoformat(r["timestamp"]).replace(
                minute=0, second=0, microsecond=0).isoformat(timespec="seconds")
        return out

    return treat


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args(argv)
    with gzip.open(a.data, "rb") if a.data.endswith(".gz") else open(a.data, "rb") as f:
        data = f.read()
    lines = data.splitlines()
    n = len(lines)
    policy = Policy.load(POLICY)
    text = os.environ.get("PSEUDONYM_KEY") or MasterKey.generate().text
    keys = KeyRing.parse(text)
    treat = hand_written(policy, keys)
    loads, dumps = orjson.loads, orjson.dumps

    def by_hand() -> bytes:
        return b"".join([dumps(treat(loads(line))) + b"\n" for line in lines])

    def by_lines() -> bytes:
        return b"".join(anonymise_lines(lines, policy, keys=keys, line_ends=True))

    def by_block() -> bytes:
        return anonymise_block(data, policy, keys=keys)

    want = [loads(x) for x in by_block().splitlines()]
    if [loads(x) for x in by_hand().splitlines()] != want:
        raise SystemExit("the hand-written pass does not give the engine's records")
    if by_lines() != by_block():
        raise SystemExit("anonymise_lines and anonymise_block disagree")

    best = {"hand": math.inf, "lines": math.inf, "block": math.inf}
    fns = {"hand": by_hand, "lines": by_lines, "block": by_block}
    for _ in range(a.repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    rate = {k: n / v for k, v in best.items()}
    print(f"{len(policy.rules)}-rule policy, {n:,} xAPI statements in memory, "
          f"best of {a.repeat} (Python {sys.version.split()[0]}, {os.cpu_count()} cores)")
    print(f"  hand-written pass       {rate['hand']:>9,.0f} records/s")
    print(f"  anonymise_lines         {rate['lines']:>9,.0f} records/s   "
          f"ratio {rate['lines'] / rate['hand']:.2f}")
    print(f"  anonymise_block         {rate['block']:>9,.0f} records/s   "
          f"ratio {rate['block'] / rate['hand']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
