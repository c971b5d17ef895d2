"""``anonymise``: a policy applied to one record or a stream of them, failing closed."""

from __future__ import annotations

import os
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, overload

from .actions import REGISTRY, REMOVE, BuildContext
from .actions.base import scalar_identifiers
from .errors import RecordError
from .jsonlines import BOM, dumps, loads
from .plan import UNMATCHED_MODE, CompiledRule, Tree, walk
from .policy import Policy
from .record import Gatherer, RecordContext
from .tracking import strip_logger_prefix

if TYPE_CHECKING:
    from .audit import AuditLog
    from .keys import KeyRing

MAX_POSITIONS = 1000
"""Record numbers kept per error kind in the audit log; beyond, only the count grows."""
MAX_RUNS = 4096
"""Distinct hit sequences a run holds before folding them into per-rule counts."""
MAX_RUN_HITS = 64
"""Longer hit sequences (records with many fields) are counted hit by hit at once, so
the sequences held take at most ``MAX_RUNS * MAX_RUN_HITS`` entries."""


def _condition(when: dict[str, list[Any]] | None):
    """``when`` as a test of the matched value: an object whose named fields all hold one
    of their listed values, or, for a name written ``!field``, none of them (so a rule can
    name the few harmless values and treat every other one, an allow-list)."""
    if not when:
        return None
    tests = [(k[1:], frozenset(_typed(x) for x in v), True) if k.startswith("!")
             else (k, frozenset(_typed(x) for x in v), False) for k, v in when.items()]

    def holds(value: Any) -> bool:
        if type(value) is not dict:
            return False
        for k, listed, negated in tests:
            v = value.get(k)
            kind = _KINDS.get(type(v))
            found = kind is not None and (kind, v) in listed
            if found is negated:
                return False
        return True

    return holds


_KINDS: dict[type, str] = {str: "string", int: "number", float: "number", bool: "boolean",
                           type(None): "null"}
"""JSON kinds for ``when``: ``true`` never matches ``1``, nor ``1`` the text ``"1"``."""


def _typed(v: Any) -> tuple[str, Any]:
    return _KINDS[type(v)], v


def identifying(rule: Any) -> bool:
    """Whether a rule's values are the record's own identifiers, which record-aware
    actions (scrub, url) remove wherever else the record holds them."""
    if rule.identifying is not None:
        return bool(rule.identifying)
    return REGISTRY[rule.action].identifies is not None


def gatherer(policy: Policy) -> Gatherer:
    """What finds a record's own identifiers: the identifying rules' places (no key
    needed, so that ``check`` can ask it too)."""
    sources = []
    for rule in policy.rules:
        if identifying(rule):
            rp = rule.parsed_path
            extract = REGISTRY[rule.action].identifies or scalar_identifiers
            for steps in rp.alternatives or (None,):
                sources.append((steps, rp.expr, _condition(rule.when), extract))
    return Gatherer(sources)


class Plan:
    """A policy compiled with its keys: what ``anonymise`` runs per record."""

    def __init__(self, policy: Policy, keys: KeyRing | None = None) -> None:
        self.policy = policy
        self.keys = keys
        ctx = BuildContext(policy.domain, keys)
        rules = []
        for i, (rule, opts) in enumerate(zip(policy.rules, policy.options, strict=True), 1):
            act = REGISTRY[rule.action]
            rp = rule.parsed_path
            cr = CompiledRule(i, rule.path, act, act.build(opts, ctx), rp.named,
                              _condition(rule.when), rp.alternatives, rp.expr,
                              act.record_aware, act.decode)
            rules.append(cr)
        self.rules = rules
        self.key_uses = sorted(ctx.key_uses)
        self.tree = Tree(rules)
        self.mode = UNMATCHED_MODE[policy.model.unmatched]
        self.record_aware = any(r.record_aware for r in rules)
        self.gather = gatherer(policy)

    def apply(self, record: Any, hits: list) -> dict[str, Any]:
        """The treated copy of one record; raises RecordError (without a position)."""
        if type(record) is not dict:
            raise RecordError("not-an-object", "a record must be a JSON object")
        if not record:  # no field, so none unmatched (with no rule, $ itself is a leaf)
            return {}
        try:
            rec = RecordContext(record, self.gather(record)) if self.record_aware else None
            out = walk(self.tree.root_for(record), record, self.mode, hits, rec)
        except RecordError as e:
            e.__context__ = None  # an action's error, whose own context may quote the value
            raise
        except RecursionError:
            failure = RecordError("too-deep", "the record is nested too deeply")
        except Exception as e:  # a bug must cost one record, not the run, and quote nothing
            failure = RecordError("internal-error", f"unexpected {type(e).__name__} while "
                                  "treating the record (set PSEUDONYM_DEBUG=1 and report it)")
            if os.environ.get("PSEUDONYM_DEBUG"):
                traceback.print_exc()
        else:
            return {} if out is REMOVE else out
        raise failure  # outside the handler: the exception, which may hold values, is gone


@dataclass
class RunStats:
    """Counts of one run, merged into one audit entry (no values, only counts and shapes)."""

    read: int = 0
    written: int = 0
    rejected: int = 0
    counted: Counter = field(default_factory=Counter, repr=False, compare=False)
    """Rule hits as the walk records them: ``n`` rule n matched, ``-n`` matched and
    transformed, ``(what, shape)`` an unmatched field; split on reading. Read ``hits``,
    which includes the sequences not yet folded in."""
    runs: dict[tuple, int] = field(default_factory=dict, repr=False, compare=False)
    """Hit sequences of up to ``MAX_RUN_HITS`` hits and how many records gave each, not
    yet folded into ``counted``: records of one shape give one sequence, so a record
    costs one tuple look-up instead of one count per hit."""
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: Counter = field(default_factory=Counter)

    def commit(self, hits: list) -> None:
        if len(hits) > MAX_RUN_HITS:
            self.counted.update(hits)
        else:
            k = tuple(hits)
            runs = self.runs
            runs[k] = runs.get(k, 0) + 1
            if len(runs) > MAX_RUNS:
                self.fold()
        self.written += 1

    def fold(self) -> None:
        """Count the pending sequences hit by hit (keeps ``runs`` bounded)."""
        counted = self.counted
        for seq, n in self.runs.items():
            if n == 1:
                counted.update(seq)
            else:
                for h in seq:
                    counted[h] += n
        self.runs.clear()

    def __getstate__(self) -> dict[str, Any]:
        """Folded before pickling (back from a worker): counts, not sequences, travel."""
        self.fold()
        return self.__dict__

    @property
    def hits(self) -> Counter:
        self.fold()
        return self.counted

    @property
    def matched(self) -> Counter:
        m: Counter = Counter()
        for h, n in self.hits.items():
            if type(h) is int:
                m[abs(h)] += n
        return m

    @property
    def transformed(self) -> Counter:
        return Counter({-h: n for h, n in self.hits.items() if type(h) is int and h < 0})

    @property
    def shapes(self) -> Counter:
        return Counter({h: n for h, n in self.hits.items() if type(h) is not int})

    def reject(self, err: RecordError) -> None:
        self.rejected += 1
        e = self.errors.setdefault(err.kind, {"count": 0, "records": []})
        e["count"] += 1
        if err.position is not None and len(e["records"]) < MAX_POSITIONS:
            e["records"].append(err.position)

    def merge(self, other: RunStats) -> None:
        self.read += other.read
        self.written += other.written
        self.rejected += other.rejected
        self.hits.update(other.hits)
        self.extra.update(other.extra)
        for kind, e in other.errors.items():
            mine = self.errors.setdefault(kind, {"count": 0, "records": []})
            mine["count"] += e["count"]
            mine["records"] = sorted(mine["records"] + e["records"])[:MAX_POSITIONS]

    def to_dict(self, plan: Plan | None = None) -> dict[str, Any]:
        rules = []
        if plan is not None:
            matched, transformed = self.matched, self.transformed
            for r in plan.rules:
                rules.append({"rule": r.number, "path": r.path, "action": r.action.name,
                              "matched": matched[r.number],
                              "transformed": transformed[r.number]})
        unmatched: dict[str, dict[str, int]] = {"dropped": {}, "kept": {}}
        for (what, shape), n in sorted(self.shapes.items()):
            unmatched[what][shape] = n
        return {"records": {"read": self.read, "written": self.written,
                            "rejected": self.rejected, **dict(self.extra)},
                "rules": rules, "unmatched": unmatched,
                "errors": {k: self.errors[k] for k in sorted(self.errors)}}


_plans: dict[tuple[int, int], Plan] = {}


def compile_plan(policy: Policy, keys: KeyRing | None = None) -> Plan:
    """The plan for a policy and key ring, compiled once and reused."""
    key = (id(policy), id(keys))
    plan = _plans.get(key)
    if plan is None or plan.policy is not policy or plan.keys is not keys:
        if len(_plans) > 64:
            _plans.clear()
        plan = _plans[key] = Plan(policy, keys)
    return plan


@overload
def anonymise(data: dict[str, Any], policy: Policy, *, keys: KeyRing | None = ...,
              audit: AuditLog | None = ..., on_error: Literal["raise", "skip"] = ...
              ) -> dict[str, Any]: ...
@overload
def anonymise(data: Iterable[Any], policy: Policy, *, keys: KeyRing | None = ...,
              audit: AuditLog | None = ..., on_error: Literal["raise", "skip"] = ...
              ) -> Iterator[dict[str, Any]]: ...


def anonymise(data: Any, policy: Policy, *, keys: KeyRing | None = None,
              audit: AuditLog | None = None, on_error: Literal["raise", "skip"] = "raise"
              ) -> Any:
    """Apply ``policy`` to one trace (a dict, returns a dict) or to an iterable of traces
    (returns a lazy iterator, one output per accepted input, in order).

    Fail closed: a record is returned only once every rule has applied to it. A record
    that cannot be fully processed raises ``RecordError`` (its 1-based position and the
    reason, never its content) or, with ``on_error="skip"``, is left out and counted.
    With ``audit``, the run is appended to the audit log when it ends.

    The input is never changed. Values kept as they are (whole objects and arrays under
    ``keep``) are shared between input and output, not copied, for speed: copy the
    output (``copy.deepcopy``) before changing it in place if the input must stay intact.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError("on_error must be 'raise' or 'skip'")
    plan = compile_plan(policy, keys)
    if isinstance(data, dict):
        return _one(plan, data, audit)
    if isinstance(data, (str, bytes)):
        raise TypeError("anonymise takes a dict or an iterable of dicts; parse JSON first "
                        "(or use pseudonym.jsonlines for raw lines)")
    return _stream(plan, data, audit, on_error)


def _one(plan: Plan, record: dict[str, Any], audit: AuditLog | None) -> dict[str, Any]:
    stats = RunStats(read=1)
    run = audit.start(plan) if audit is not None else None
    hits: list = []
    try:
        out = plan.apply(record, hits)
    except RecordError as e:
        stats.reject(e.at(1))
        if run is not None:
            run.finish(stats, "completed")
        raise
    stats.commit(hits)
    if run is not None:
        run.finish(stats, "completed")
    return out


def _stream(plan: Plan, records: Iterable[Any], audit: AuditLog | None,
            on_error: str) -> Iterator[dict[str, Any]]:
    stats = RunStats()
    run = audit.start(plan) if audit is not None else None
    status = "interrupted"
    apply = plan.apply
    try:
        for n, record in enumerate(records, 1):
            stats.read = n
            hits: list = []
            try:
                out = apply(record, hits)
            except RecordError as e:
                stats.reject(e.at(n))
                if on_error == "raise":
                    status = "failed"
                    raise
                continue
            stats.commit(hits)
            yield out
        status = "completed"
    finally:
        if run is not None:
            run.finish(stats, status)


def run_lines(plan: Plan, lines: Iterable[bytes], stats: RunStats,
              on_reject: Callable[[RecordError], None] | None = None,
              start: int = 1) -> Iterator[bytes]:
    """Treat raw JSON lines: bytes in, bytes out (no line ends), one out per accepted line.

    Positions are line numbers, the first line being ``start``. Blank lines hold no
    record: they are skipped and counted. An Open edX logger prefix before the JSON
    (``tracking.log``) is cut off and counted.
    """
    apply, commit = plan.apply, stats.commit
    for n, raw in enumerate(lines, start):
        if raw[:1] != b"{":
            if not raw or raw.isspace():
                stats.extra["blank_lines"] += 1
                continue
            bare = strip_logger_prefix(raw)
            if bare is not None:
                raw = bare
                stats.extra["logger_prefixes"] += 1
        stats.read += 1
        hits: list = []
        try:
            out = dumps(apply(loads(raw), hits))
        except RecordError as e:
            stats.reject(e.at(n))
            if on_reject is not None:
                on_reject(e)
            continue
        commit(hits)
        yield out


def run_block(plan: Plan, block: bytes, stats: RunStats, start: int = 1,
              on_reject: Callable[[RecordError], None] | None = None) -> bytes:
    """Treat a block of whole JSON lines at once: bytes in, bytes out, every output line
    ending in a newline. One call per block instead of one per line is what lets files
    and worker processes move data without per-line overhead."""
    lines = block.split(b"\n")
    if not lines[-1]:
        lines.pop()
    out = list(run_lines(plan, lines, stats, on_reject, start))
    if not out:
        return b""
    out.append(b"")
    return b"\n".join(out)


def anonymise_lines(lines: Iterable[bytes | str], policy: Policy, *,
                    keys: KeyRing | None = None, audit: AuditLog | None = None,
                    on_error: Literal["raise", "skip"] = "raise",
                    line_ends: bool = False) -> Iterator[bytes]:
    """Like ``anonymise`` over raw JSON lines, for pipelines that need not decode and
    re-encode themselves: bytes (or str) in, with or without their line ends, JSON bytes
    out, one per accepted record, in order. With ``line_ends``, each ends in a newline,
    ready for ``file.writelines``. Blank lines are skipped; positions are line numbers."""
    reject = _rejecter(on_error)
    return _lines(compile_plan(policy, keys), lines, audit, reject, line_ends)


def _rejecter(on_error: str) -> Callable[[RecordError], None]:
    """What happens to a record that fails: raised again, or left out (it is counted)."""
    if on_error not in ("raise", "skip"):
        raise ValueError("on_error must be 'raise' or 'skip'")

    def reject(e: RecordError) -> None:
        if on_error == "raise":
            raise e

    return reject


def _lines(plan: Plan, lines: Iterable[bytes | str], audit: AuditLog | None,
           reject: Callable[[RecordError], None], line_ends: bool) -> Iterator[bytes]:
    stats = RunStats()
    run = audit.start(plan) if audit is not None else None
    status = "interrupted"
    raw = _without_bom(line.encode("utf-8", "surrogatepass") if type(line) is str else line
                       for line in lines)
    try:
        if line_ends:
            for out in run_lines(plan, raw, stats, reject):
                yield out + b"\n"
        else:
            yield from run_lines(plan, raw, stats, reject)
        status = "completed"
    except RecordError:
        status = "failed"
        raise
    finally:
        if run is not None:
            run.finish(stats, status)


def _without_bom(lines: Iterable[bytes]) -> Iterator[bytes]:
    """The lines with a byte-order mark dropped from the first, as the command reads a
    file (a mark further down is not at the start of a text: its line is rejected)."""
    it = iter(lines)
    for first in it:
        yield first[len(BOM):] if first.startswith(BOM) else first
        break
    yield from it


def anonymise_block(data: bytes, policy: Policy, *, keys: KeyRing | None = None,
                    audit: AuditLog | None = None,
                    on_error: Literal["raise", "skip"] = "raise") -> bytes:
    """A whole block of JSON lines in (a file's or a message batch's bytes), the block of
    treated lines out, each ending in a newline: the fastest entry, one call per block."""
    reject = _rejecter(on_error)
    plan = compile_plan(policy, keys)
    stats = RunStats()
    run = audit.start(plan) if audit is not None else None
    status = "failed"
    try:
        out = run_block(plan, data[3:] if data.startswith(b"\xef\xbb\xbf") else data,
                        stats, 1, reject)
        status = "completed"
    finally:
        if run is not None:
            run.finish(stats, status)
    return out
