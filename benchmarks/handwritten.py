"""Hand-written plain-Python passes: what an engineer would code for one fixed policy.

Each pass does exactly the transformations of one policy file, field by field, with the
same JSON library (orjson) and the same keyed primitives (HMAC-SHA-256 under the key the
policy's domain derives), but no policy engine. It is the practical speed limit the
engine is measured against; ``run.py`` first checks its output equals the CLI's.

Run: python benchmarks/handwritten.py POLICY INPUT OUTPUT  (key in $PSEUDONYM_KEY)
"""

from __future__ import annotations

import hmac
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson

from pseudonym import KeyRing, Policy

SESSION = "https://w3id.org/xapi/video/extensions/session-id"
LENGTH = "https://w3id.org/xapi/video/extensions/length"


def _uuid(d: bytes) -> str:
    h = d[:16].hex()
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-8{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"


def _minute(ts: str) -> str:
    return datetime.fromisoformat(ts).replace(second=0, microsecond=0).isoformat(
        timespec="seconds")


def research(key: bytes) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """examples/research.yaml (policy name ``video-research``)."""

    def h(text: str) -> bytes:
        return hmac.digest(key, text.encode(), "sha256")

    def treat(r: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in r.items():
            if k in ("id", "verb", "object", "result"):
                out[k] = v
            elif k == "actor":
                actor: dict[str, Any] = {}
                if "objectType" in v:
                    actor["objectType"] = v["objectType"]
                acc = v.get("account")
                if acc is not None:
                    a = {}
                    if "homePage" in acc:
                        a["homePage"] = acc["homePage"]
                    if "name" in acc:
                        a["name"] = _uuid(h(acc["name"]))
                    if a:
                        actor["account"] = a
                if "mbox" in v:
                    actor["mbox"] = _uuid(h(v["mbox"].strip().lower()))
                if actor:
                    out["actor"] = actor
            elif k == "context":
                ctx: dict[str, Any] = {}
                for ck, cv in v.items():
                    if ck == "contextActivities":
                        ctx[ck] = cv
                    elif ck == "extensions":
                        ext = {}
                        for ek, ev in cv.items():
                            if ek == SESSION:
                                ext[ek] = h(ev).hex()[:32]
                            elif ek == LENGTH:
                                ext[ek] = ev
                        if ext:
                            ctx[ck] = ext
                if ctx:
                    out["context"] = ctx
            elif k == "timestamp":
                out[k] = _minute(v)
        return out

    return treat


PASSES: dict[str, Callable[[bytes], Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "video-research": research,
}


def build(policy: Policy, keys: KeyRing) -> Callable[[dict[str, Any]], dict[str, Any]]:
    make = PASSES.get(policy.name)
    if make is None:
        raise SystemExit(f"no hand-written pass for policy {policy.name!r}; "
                         f"write one in {__file__} (known: {', '.join(PASSES)})")
    return make(keys.hasher(policy.domain)._key)


def main(policy_ref: str, src: str, dst: str) -> None:
    treat = build(Policy.load(policy_ref), KeyRing.from_env())
    loads, dumps = orjson.loads, orjson.dumps
    with open(src, "rb") as f, open(dst, "wb") as out:
        write = out.write
        for line in f:
            write(dumps(treat(loads(line))))
            write(b"\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
