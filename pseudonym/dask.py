"""A policy applied to a Dask bag, on as many machines as the cluster has.

    import dask.bag as db
    from pseudonym import AuditLog
    from pseudonym.dask import KeyRef, anonymise_bag

    bag = db.read_text("logs/*.jsonl.gz")                  # one partition per file
    job = anonymise_bag(bag, "xapi", key=KeyRef.env())     # lazy
    out = job.bag.to_textfiles("clean/part-*.jsonl.gz", last_endline=True, compute=False)
    with AuditLog.open("audit.jsonl") as audit:
        stats = job.run(out, audit=audit)                  # computes, one audit entry

The key never enters the task graph: what travels is a ``KeyRef``, the name of an
environment variable or the path of a key file, which each worker reads in its own
process (on Kubernetes, a mounted secret). The policy travels as its canonical form and
is checked against its SHA-256 on arrival. Each partition sends back counts only; the
client merges them, line numbers made global in bag order, into one audit entry.
Install with ``pip install pseudonym[dask]``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

try:
    import dask
    import dask.bag as db
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError("pseudonym.dask needs the dask extra: "
                      "pip install 'pseudonym[dask]'") from e

from .actions import REGISTRY
from .engine import Plan, RunStats, run_lines
from .errors import KeyRingError, PseudonymError, RecordError
from .jsonlines import BOM
from .keys import ENV_VAR, KeyRing
from .parallel import shift_positions
from .policy import Policy

if TYPE_CHECKING:
    from .audit import AuditLog

__all__ = ["BagJob", "KeyRef", "anonymise_bag"]


@dataclass(frozen=True)
class KeyRef:
    """Where a worker finds the key: an environment variable or a file, never the key.

    ``key_ids``: the key ids the workers must find (public names, not secrets). Filled in
    from the client's own environment when it holds the same key; a worker that finds
    another key refuses to work, so one run never mixes pseudonyms of two keys.
    """

    env_var: str | None = None
    path: str | None = None
    key_ids: tuple[str, ...] | None = None

    @classmethod
    def env(cls, var: str = ENV_VAR, key_ids: Iterable[str] | None = None) -> KeyRef:
        return cls(env_var=var, key_ids=tuple(key_ids) if key_ids else None)

    @classmethod
    def file(cls, path: str | os.PathLike[str], key_ids: Iterable[str] | None = None
             ) -> KeyRef:
        return cls(path=os.fspath(path), key_ids=tuple(key_ids) if key_ids else None)

    def load(self) -> KeyRing:
        return self._check(self._ring(self._text()))

    def _text(self) -> str:
        """The key text as this process sees it now (read again for each partition, so a
        rotated secret is picked up without restarting workers)."""
        if self.path:
            try:
                return Path(self.path).read_text("utf-8")
            except (OSError, UnicodeDecodeError):
                raise KeyRingError(f"{self.path}: cannot read the key file") from None
        var = self.env_var or ENV_VAR
        text = os.environ.get(var, "")
        if not text.strip():
            raise KeyRingError(f"no key: ${var} is not set on this worker")
        return text

    def _ring(self, text: str) -> KeyRing:
        return KeyRing.parse(text, where=self.path or f"${self.env_var or ENV_VAR}")

    def _check(self, ring: KeyRing) -> KeyRing:
        if self.key_ids is not None and tuple(ring.key_ids) != self.key_ids:
            where = self.path or f"${self.env_var or ENV_VAR}"
            raise KeyRingError(f"{where}: this worker holds keys {ring.key_ids}, the run "
                               f"expects {list(self.key_ids)}")
        return ring

    def pinned(self) -> KeyRef:
        """This reference with the key ids the client sees, if it can see the key."""
        if self.key_ids is not None:
            return self
        try:
            ring = self.load()
        except KeyRingError:
            return self
        return KeyRef(self.env_var, self.path, tuple(ring.key_ids))


@dataclass(frozen=True)
class _Spec:
    policy: dict[str, Any]
    sha256: str
    key: KeyRef | None
    records: bool


_plans: dict[tuple[str, KeyRef | None, bytes], Plan] = {}


def _plan(spec: _Spec) -> Plan:
    """The worker's compiled plan, from references only: compiled once per process for a
    policy and key text (a digest of it is the cache key, not the text)."""
    text = spec.key._text() if spec.key is not None else ""
    key = (spec.sha256, spec.key, hashlib.sha256(text.encode()).digest())
    plan = _plans.get(key)
    if plan is None:
        policy = Policy.from_dict(spec.policy, source=f"policy {spec.sha256[:12]}")
        if policy.sha256 != spec.sha256:
            raise PseudonymError("the policy changed on its way to the worker")
        ring = spec.key._check(spec.key._ring(text)) if spec.key is not None else None
        if len(_plans) > 8:
            _plans.clear()
        plan = _plans[key] = Plan(policy, ring)
    return plan


def _as_bytes(item: Any) -> bytes:
    if isinstance(item, str):
        b = item.encode("utf-8", "surrogatepass")
    elif isinstance(item, (bytes, bytearray, memoryview)):
        b = bytes(item)
    else:
        raise TypeError(f"a bag of lines holds str or bytes, not {type(item).__name__}")
    return b[3:] if b.startswith(BOM) else b



def _treat(items: Iterable[Any], spec: _Spec) -> list[tuple[list[Any], dict[str, Any]]]:
    plan = _plan(spec)
    stats = RunStats()
    if spec.records:
        out: list[Any] = []
        for n, record in enumerate(items, 1):
            stats.read = n
            hits: list = []
            try:
                out.append(plan.apply(record, hits))
            except RecordError as e:
                stats.reject(e.at(n))
                continue
            stats.commit(hits)
        positions = stats.read
    else:
        raws = [_as_bytes(i).rstrip(b"\r\n") for i in items]
        out = [b.decode("utf-8") for b in run_lines(plan, raws, stats)]
        positions = len(raws)
    part = {"stats": stats, "positions": positions, "key_uses": plan.key_uses}
    return [(out, part)]


def _output(parts: list[tuple[list[Any], dict[str, Any]]]) -> list[Any]:
    return parts[0][0]


def _counts(parts: list[tuple[list[Any], dict[str, Any]]]) -> list[dict[str, Any]]:
    return [parts[0][1]]


@dataclass
class _AuditPlan:
    """What the audit entry needs from a plan, built without the key (the client may
    not hold it); the key ids come back from the workers."""

    policy: Policy
    key_uses: list[tuple[str, str]]
    rules: list[Any] = field(default_factory=list)


@dataclass
class _RuleInfo:
    number: int
    path: str
    action: Any


class _SharedBag(db.Bag):
    """The treated bag. Writers made from it (``to_textfiles(..., compute=False)``)
    optimise their graph on the spot; a plain bag would fuse the anonymisation into each
    writer task, so the counts would need a second pass over the data. Here nothing is
    fused away: outputs and counts share the anonymisation tasks, computed once."""

    @staticmethod
    def __dask_optimize__(dsk: Any, keys: Any, **kwargs: Any) -> Any:
        return db.core.optimize(dsk, keys, fuse_keys=list(dsk.keys()), **kwargs)


class BagJob:
    """A lazy anonymisation of a bag: ``bag`` is the result; ``run`` computes it, with
    any writers of it, and records the run."""

    def __init__(self, bag: db.Bag, policy: Policy, spec: _Spec, on_error: str) -> None:
        treated = bag.map_partitions(_treat, spec)
        out = treated.map_partitions(_output)
        self.bag: db.Bag = _SharedBag(out.dask, out.name, out.npartitions)
        self._counts = treated.map_partitions(_counts)
        self.policy = policy
        self.on_error = on_error

    def run(self, *outputs: Any, audit: AuditLog | None = None) -> RunStats:
        """Compute ``outputs`` (e.g. ``job.bag.to_textfiles(..., compute=False)``, or
        ``job.bag`` itself) together with the counts; append one audit entry.

        Returns the merged counts; with ``on_error="raise"``, a rejected record raises
        ``RecordError`` (first rejected line, numbered across the whole bag) once the
        audit entry is written. Rejected records are never in the output.
        """
        plan = _AuditPlan(self.policy, [], [
            _RuleInfo(i, r.path, REGISTRY[r.action]) for i, r in enumerate(self.policy.rules, 1)])
        run = audit.start(plan) if audit is not None else None  # type: ignore[arg-type]
        stats = RunStats()
        status = "failed"
        try:
            *results, parts = dask.compute(*outputs, self._counts, optimize_graph=False)
            offset = 0
            uses: set[tuple[tuple[str, str], ...]] = set()
            for part in parts:
                stats.merge(shift_positions(part["stats"], offset))
                offset += part["positions"]
                uses.add(tuple(part["key_uses"]))
            if len(uses) > 1:
                raise KeyRingError("workers used different keys in one run; "
                                   "give KeyRef the expected key_ids")
            plan.key_uses = list(next(iter(uses), ()))
            status = "completed"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            if run is not None:
                run.finish(stats, status)
        self.results = results
        if self.on_error == "raise" and stats.rejected:
            kind = min(stats.errors, key=lambda k: stats.errors[k]["records"][:1] or [0])
            first = stats.errors[kind]["records"]
            raise RecordError(kind, f"{stats.rejected} record(s) rejected and left out",
                              position=first[0] if first else None)
        return stats


def anonymise_bag(bag: db.Bag, policy: Policy | str, *, key: KeyRef | None = None,
                  input: Literal["lines", "records"] = "lines",
                  on_error: Literal["raise", "skip"] = "raise") -> BagJob:
    """Apply ``policy`` to every element of ``bag``: JSON lines (str or bytes, as
    ``read_text`` gives them; results are str lines without line ends, ready for
    ``to_textfiles(..., last_endline=True)``) or, with ``input="records"``, dicts.

    Output order is the bag's order; a record that cannot be fully processed is left out
    and counted (fail closed). ``key`` says where workers find the key (default: their
    ``$PSEUDONYM_KEY``) when the policy has keyed actions.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError("on_error must be 'raise' or 'skip'")
    if input not in ("lines", "records"):
        raise ValueError("input must be 'lines' or 'records'")
    if isinstance(policy, str):
        policy = Policy.load(policy)
    keyed = any(REGISTRY[r.action].keyed for r in policy.rules)
    if keyed and key is None:
        key = KeyRef.env()
    ref = key.pinned() if key is not None else None
    spec = _Spec(policy.canonical(), policy.sha256, ref, input == "records")
    return BagJob(bag, policy, spec, on_error)
