"""Hand-written plain-Python passes: what an engineer would code for one fixed policy.

Each pass does exactly the transformations of one policy file, field by field, with the
same JSON library (orjson) and the same keyed primitives (HMAC-SHA-256 under the key the
policy's domain derives), but no policy engine. It is the practical speed limit the
engine is measured against; ``run.py`` first checks its output equals the CLI's.

Run: python benchmarks/handwritten.py POLICY INPUT OUTPUT  (key in $PSEUDONYM_KEY)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson

from pseudonym import KeyRing, Policy

SESSION = "https://w3id.org/xapi/video/extensions/session-id"
LENGTH = "https://w3id.org/xapi/video/extensions/length"


def _memo(fn: Callable[[Any], Any], size: int = 1 << 14) -> Callable[[Any], Any]:
    """What an engineer does for values that come in runs (a learner's statements):
    remember recent results, as pseudonym's keyed actions do (same bound)."""
    memo: dict[Any, Any] = {}

    def call(x: Any) -> Any:
        out = memo.get(x)
        if out is None:
            if len(memo) >= size:
                memo.clear()
            out = memo[x] = fn(x)
        return out
    return call


def _uuid(d: bytes) -> str:
    h = d[:16].hex()
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-8{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"


def _minute(ts: str) -> str:
    return datetime.fromisoformat(ts).replace(second=0, microsecond=0).isoformat(
        timespec="seconds")


def research(key: bytes) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """examples/research.yaml (policy name ``video-research``)."""

    @_memo
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


V = "https://w3id.org/xapi/video/extensions/"
DEFINITION = ("type", "name", "description", "moreInfo", "interactionType",
              "correctResponsesPattern", "choices", "scale", "source", "target", "steps")
CONTEXT_DEFINITION = ("type", "name", "description", "moreInfo")
RESULT = ("score", "success", "completion", "duration")
RESULT_EXT = tuple(V + k for k in ("time", "time-from", "time-to", "progress",
                                   "played-segments", "length"))
CONTEXT_KEEP = ("registration", "revision", "platform", "language", "statement")
CONTEXT_EXT = tuple(V + k for k in (
    "length", "completion-threshold", "cc-subtitle-enabled", "cc-subtitle-lang", "frame-rate",
    "full-screen", "quality", "screen-size", "speed", "track", "video-playback-size", "volume"))
SESSION_IDS = (V + "session-id", "https://w3id.org/xapi/openedx/extensions/session-id")
HOME = "https://fun-mooc.fr/pseudonyms"


def _pick(d: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: d[k] for k in keys if k in d}


def _texts(d: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """``_pick`` for fields the policy keeps only as text (``keep`` with ``type: text``)."""
    out = {k: d[k] for k in keys if k in d}
    for v in out.values():
        if type(v) is not str:
            raise ValueError("expected text")
    return out


def xapi(key: bytes) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The built-in ``xapi`` policy: agents become keyed account pseudonyms, session ids
    keyed UUIDs, and an allow-list of statement, result and context fields survives."""

    def digest(ident: bytes) -> bytes:
        return hmac.digest(key, ident, "sha256")

    @_memo
    def name(ident: bytes) -> str:
        return base64.b32encode(digest(ident)).decode()[:26].lower()

    @_memo
    def session(text: str) -> str:
        return _uuid(digest(text.encode()))

    def account(ident: bytes) -> dict[str, Any]:
        return {"homePage": HOME, "name": name(ident)}

    def identity(a: dict[str, Any]) -> bytes | None:
        acc = a.get("account")
        if type(acc) is dict and type(acc.get("name")) in (str, int) and str(acc["name"]).strip():
            return str(acc["name"]).encode()
        mbox = a.get("mbox")
        if type(mbox) is str and mbox.strip():
            iri = mbox.strip().lower()
            iri = iri if iri.startswith("mailto:") else "mailto:" + iri
            return b"mbox_sha1sum:" + hashlib.sha1(iri.encode()).hexdigest().encode()
        sha = a.get("mbox_sha1sum")
        if type(sha) is str and sha.strip():
            return b"mbox_sha1sum:" + sha.strip().lower().encode()
        openid = a.get("openid")
        if type(openid) is str and openid.strip():
            return b"openid:" + openid.strip().encode()
        return None

    def agent(a: Any, depth: int = 0) -> dict[str, Any]:
        if type(a) is not dict:
            raise ValueError("an agent must be an object")
        kind = a.get("objectType")
        out: dict[str, Any] = {} if kind is None else {"objectType": kind}
        ident = identity(a)
        if kind == "Group" and depth == 0 and type(a.get("member")) is list:
            members = [agent(m, 1) for m in a["member"]]
            if ident is not None:
                out["account"] = account(ident)
            if members:
                out["member"] = members
            return out
        if ident is None:
            raise ValueError("an agent has no identifier")
        out["account"] = account(ident)
        return out

    def activity(act: dict[str, Any], definition: tuple[str, ...] = CONTEXT_DEFINITION
                 ) -> dict[str, Any]:
        out = _texts(act, ("id", "objectType"))
        d = act.get("definition")
        if type(d) is dict:
            dd = _pick(d, definition)
            if dd:
                out["definition"] = dd
        return out

    def context(c: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in c.items():
            if k in CONTEXT_KEEP:
                out[k] = v
            elif k in ("instructor", "team"):
                out[k] = agent(v)
            elif k == "contextActivities" and type(v) is dict:
                ca = {}
                for kind, acts in v.items():
                    if type(acts) is list:
                        treated = [x for x in (activity(a) for a in acts if type(a) is dict)
                                   if x]
                    elif type(acts) is dict:
                        treated = activity(acts)
                    else:
                        continue
                    if treated:
                        ca[kind] = treated
                if ca:
                    out[k] = ca
            elif k in ("contextAgents", "contextGroups") and type(v) is list:
                inner = "agent" if k == "contextAgents" else "group"
                items = []
                for item in v:
                    if type(item) is dict:
                        x = _pick(item, ("objectType", "relevantTypes"))
                        if inner in item:
                            x[inner] = agent(item[inner])
                        if x:
                            items.append(x)
                if items:
                    out[k] = items
            elif k == "extensions" and type(v) is dict:
                ext = {}
                for ek, ev in v.items():
                    if ek in CONTEXT_EXT:
                        ext[ek] = ev
                    elif ek in SESSION_IDS:
                        ext[ek] = session(ev)
                if ext:
                    out[k] = ext
        return out

    def statement(r: dict[str, Any], sub: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        kept = ("timestamp",) if sub else ("id", "timestamp", "stored", "version")
        for k, v in r.items():
            if k in kept:
                if not sub and type(v) is not str:
                    raise ValueError("expected text")
                out[k] = v
            elif k == "actor" or (k == "authority" and not sub):
                out[k] = agent(v)
            elif k == "verb":
                if sub:
                    out[k] = v
                else:
                    verb = _pick(v, ("id", "display"))
                    if type(verb.get("id", "")) is not str:
                        raise ValueError("expected text")
                    if verb:
                        out[k] = verb
            elif k == "object" and type(v) is dict:
                if v.get("objectType") in ("Agent", "Group"):
                    out[k] = agent(v)
                    continue
                obj = activity(v, DEFINITION)
                if not sub and v.get("objectType") == "SubStatement":
                    obj.update((kk, vv) for kk, vv in statement(v, True).items()
                               if kk not in obj)
                if obj:
                    out[k] = obj
            elif k == "result" and type(v) is dict:
                res = _pick(v, RESULT)
                ext = v.get("extensions")
                if not sub and type(ext) is dict:
                    e = _pick(ext, RESULT_EXT)
                    if e:
                        res["extensions"] = e
                if res:
                    out[k] = res
            elif k == "context" and type(v) is dict:
                c = context(v)
                if c:
                    out[k] = c
        return out

    return lambda r: statement(r, False)


PASSES: dict[str, Callable[[bytes], Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "video-research": research,
    "xapi": xapi,
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
