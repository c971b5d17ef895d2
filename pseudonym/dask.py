"""A policy applied to a Dask bag, on as many machines as the cluster has.

    import dask.bag as db
    from pseudonym import AuditLog
    from pseudonym.dask import KeyRef, anonymise_bag

    bag = db.read_text("logs/*.jsonl.gz")                  # one partition per file
    job = anonymise_bag(bag, "xapi", key=KeyRef.env())     # lazy
    out = job.to_textfiles("clean/part-*.jsonl.gz")        # staged, lazy
    with AuditLog.open("audit.jsonl") as audit:
        stats = job.run(out, audit=audit)                  # computes, audits, publishes

The key never enters the task graph: what travels is a ``KeyRef``, the name of an
environment variable or the path of a key file, which each worker reads in its own
process (on Kubernetes, a mounted secret). The policy travels as its canonical form and
is checked against its SHA-256 on arrival. Each partition sends back counts only; the
client merges them, line numbers made global in bag order, into one audit entry.
Output written with ``job.to_textfiles`` is published (moved into place) only after that
entry is written, and removed if the run fails, as the command line does. A destination
already holding parts is refused before anything is computed (a reader of
``clean/part-*.jsonl.gz`` would take two runs' parts for one); with ``overwrite=True``
the new parts replace the former set whole, which a failed run leaves as it was.
Install with ``pip install pseudonym[dask]``.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import uuid
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

try:
    import dask
    import dask.bag as db
    import fsspec
    from dask.base import get_scheduler, is_dask_collection
    from fsspec.implementations.local import LocalFileSystem
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError("pseudonym.dask needs the dask extra: "
                      "pip install 'pseudonym[dask]'") from e

from .actions import REGISTRY
from .engine import Plan, RunStats, run_lines
from .errors import KeyRingError, PseudonymError, RecordError, StreamError
from .jsonlines import BOM
from .keys import ENV_VAR, KeyRing
from .parallel import shift_positions
from .policy import Policy

if TYPE_CHECKING:
    from .audit import AuditLog

__all__ = ["BagJob", "KeyRef", "StagedFiles", "anonymise_bag"]


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
    return b



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
        if raws and raws[0].startswith(BOM):  # where a file starts, with read_text's default
            raws[0] = raws[0][len(BOM):]
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


STAGING_PREFIX = ".pseudonym-staging-"


class StagedFiles:
    """Part files written to a hidden staging directory inside their destination
    (``.pseudonym-staging-<id>``) and moved into place by ``BagJob.run`` once the run's
    audit entry is written; a failed run removes them. Made by ``BagJob.to_textfiles``.

    A destination already holding files named like the parts is refused (a reader of
    ``part-*.jsonl`` would take two runs' parts for one), unless ``overwrite``: then the
    former files are set aside in the staging directory while the new parts go in, put
    back if publishing fails, and removed once every output of the run is in place."""

    def __init__(self, bag: db.Bag, path: str, storage_options: dict[str, Any] | None,
                 kwargs: dict[str, Any], overwrite: bool = False) -> None:
        self.path = path
        self.overwrite = overwrite
        self.fs, root = fsspec.core.url_to_fs(path, **(storage_options or {}))
        directory, pattern = posixpath.split(root) if "*" in root else (root, "*.part")
        if "*" in directory or not pattern:
            raise ValueError(f"{path}: a * may appear in the file name only")
        self.directory = directory.rstrip("/") or "/"
        self.pattern = pattern
        self._place = self.fs.unstrip_protocol(
            os.path.realpath(self.directory) if isinstance(self.fs, LocalFileSystem)
            else self.directory)
        self.staging = posixpath.join(self.directory, STAGING_PREFIX + uuid.uuid4().hex)
        self._parts = posixpath.join(self.staging, "parts")
        self._replaced = posixpath.join(self.staging, "replaced")
        self._make = (bag, posixpath.join(self._parts, pattern), storage_options, kwargs)
        self.created = False
        self.published: list[str] = []
        self._aside: list[tuple[str, str]] = []

    def clashes(self, other: StagedFiles) -> bool:
        """Whether ``other`` writes to the same directory parts that could be named like
        these: each would take the other's new parts for former ones."""
        if self._place != other._place:
            return False
        head, _, tail = self.pattern.partition("*")
        other_head, _, other_tail = other.pattern.partition("*")
        return ((head.startswith(other_head) or other_head.startswith(head))
                and (tail.endswith(other_tail) or other_tail.endswith(tail)))

    def check(self) -> None:
        """Refuse, before the run starts, a destination holding parts (unless
        ``overwrite``: they would be mixed with this run's) or that cannot be listed."""
        try:
            former = self._former()
        except OSError as e:
            raise StreamError(f"{self.path}: cannot list the destination "
                              f"({e.strerror or type(e).__name__}); nothing was computed"
                              ) from None
        if not self.overwrite:
            self._refuse_former(former, "nothing was computed")

    def writes(self) -> list[Any]:
        """The writer tasks; nothing is created on storage before the run asks for them."""
        bag, staged, storage_options, kwargs = self._make
        self.created = not self.fs.exists(self.directory)
        return bag.to_textfiles(self.fs.unstrip_protocol(staged), compute=False,
                                storage_options=storage_options, **kwargs)

    def publish(self) -> list[str]:
        """Move the staged parts into place, the former ones aside (``overwrite``); on
        failure, take back the parts already moved and put the former ones back."""
        self.published = []  # a former run's parts are former parts now
        try:
            self.fs.invalidate_cache(self.staging)
            staged = self.fs.ls(self._parts, detail=False) if self.fs.exists(
                self._parts) else []  # a bag of no partitions writes nothing
            former = self._former()
            if not self.overwrite:
                self._refuse_former(former, "no output was published (another run wrote "
                                    "there meanwhile?)")
            names = {posixpath.basename(p): p for p in former}
            for src in sorted(staged):
                name = posixpath.basename(src)
                dst = posixpath.join(self.directory, name)
                if name in names:
                    self._set_aside(names.pop(name))
                self.published.append(dst)  # a move that fails half done is undone too
                self.fs.mv(src, dst)
            for old in sorted(names.values()):
                self._set_aside(old)
        except OSError as e:
            self.discard()  # leaves aside only the files it could not put back
            stranded = (f"; {len(self._aside)} of the files the destination held could not "
                        f"be put back: they are in {self.fs.unstrip_protocol(self._replaced)}"
                        if self._aside else "")
            raise PseudonymError(f"{self.path}: cannot publish the output "
                                 f"({e.strerror or type(e).__name__}); no output was "
                                 "published (the run's audit entry is already written)"
                                 f"{stranded}") from None
        if isinstance(self.fs, LocalFileSystem):
            return list(self.published)
        return [self.fs.unstrip_protocol(p) for p in self.published]

    def finish(self) -> None:
        """Remove the staging directory, with the former files set aside: called once
        every output of the run is published, so that until then they can be put back."""
        try:
            self._remove_staging()
        except OSError as e:
            if self._aside:
                raise PseudonymError(
                    f"{self.path}: the output is published, but the files it replaced "
                    f"could not be removed ({e.strerror or type(e).__name__}): delete "
                    f"{self.fs.unstrip_protocol(self.staging)}") from None
        self._aside = []

    def discard(self) -> None:
        """Remove what this run wrote, the staged parts and any part already published,
        and put back the former files set aside."""
        for dst in self.published:
            with suppress(OSError):
                self.fs.rm(dst)
        self.published = []
        stranded = []
        for old, aside in reversed(self._aside):
            try:
                self.fs.mv(aside, old)
            except OSError:
                stranded.append((old, aside))
        self._aside = stranded
        if stranded:
            return  # the staging directory holds them
        with suppress(OSError):
            self._remove_staging()
        if self.created:
            with suppress(OSError):
                self.fs.rmdir(self.directory)  # only if empty: never another's files

    def _former(self) -> list[str]:
        """The destination's files named like the parts (a staging directory is not)."""
        head, _, tail = self.pattern.partition("*")
        self.fs.invalidate_cache(self.directory)
        try:
            entries = self.fs.ls(self.directory, detail=True)
        except FileNotFoundError:
            return []
        names = ((e["name"], posixpath.basename(e["name"].rstrip("/"))) for e in entries
                 if e["type"] != "directory")
        return sorted(p for p, n in names if len(n) >= len(head) + len(tail)
                      and n.startswith(head) and n.endswith(tail))

    def _refuse_former(self, former: list[str], outcome: str) -> None:
        if former:
            raise StreamError(f"{self.path}: holds {len(former)} file"
                              f"{'s' if len(former) > 1 else ''} named like "
                              f"{self.pattern} already (another run's parts?); {outcome}. "
                              "Write to another destination, or pass overwrite=True to "
                              "replace them all with this run's parts")

    def _set_aside(self, path: str) -> None:
        aside = posixpath.join(self._replaced, posixpath.basename(path))
        if not self._aside:
            self.fs.makedirs(self._replaced, exist_ok=True)
        self.fs.mv(path, aside)
        self._aside.append((path, aside))

    def _remove_staging(self) -> None:
        with suppress(FileNotFoundError):
            self.fs.rm(self.staging, recursive=True)


def _compute(*outputs: Any) -> list[Any]:
    """``dask.compute(*outputs)``, one graph, nothing fused. On a distributed cluster
    every task is let finish, failed or not, before the first error is raised, so that no
    writer is still at work when a failed run's staged output is removed."""
    scheduler = get_scheduler()
    client = getattr(scheduler, "__self__", None)
    if client is None or not hasattr(client, "gather"):
        return list(dask.compute(*outputs, optimize_graph=False,
                                 scheduler=scheduler or db.Bag.__dask_scheduler__))
    from distributed import wait
    shapes = [isinstance(o, (list, tuple)) for o in outputs]
    flat = [x for o, many in zip(outputs, shapes, strict=True) for x in (o if many else [o])]
    todo = [x for x in flat if is_dask_collection(x)]
    futures = client.compute(todo, optimize_graph=False)
    wait(futures)
    done = iter(client.gather(futures))
    values = iter([next(done) if is_dask_collection(x) else x for x in flat])
    return [[next(values) for _ in o] if many else next(values)
            for o, many in zip(outputs, shapes, strict=True)]


def _fused(bag: db.Bag) -> db.Bag:
    """The input bag with its own graph optimised, as computing it alone would: the run
    computes without fusing (``_compute``), and an unfused input passes iterators
    between tasks (``read_text`` reads a file into a generator, then lists it), which a
    scheduler of processes cannot send."""
    dsk = db.core.optimize(bag.__dask_graph__(), bag.__dask_keys__())
    return db.Bag(dsk, bag.name, bag.npartitions)


class BagJob:
    """A lazy anonymisation of a bag: ``bag`` is the result; ``run`` computes it, with
    any writers of it, and records the run."""

    def __init__(self, bag: db.Bag, policy: Policy, spec: _Spec, on_error: str) -> None:
        treated = _fused(bag).map_partitions(_treat, spec)
        out = treated.map_partitions(_output)
        self.bag: db.Bag = _SharedBag(out.dask, out.name, out.npartitions)
        self._counts = treated.map_partitions(_counts)
        self.policy = policy
        self.on_error = on_error

    def to_textfiles(self, path: str, *, storage_options: dict[str, Any] | None = None,
                     last_endline: bool = True, overwrite: bool = False, **kwargs: Any
                     ) -> StagedFiles:
        """Lazy part files of ``bag`` at ``path`` (as ``Bag.to_textfiles``: a directory, or
        a name with ``*`` for the part number; any fsspec URL), for ``run``. They are
        written under a hidden staging directory there and published (moved into place)
        only after the run's audit entry is written; a failed run leaves none of them.

        ``run`` refuses a destination already holding files named like the parts, before
        computing anything: its readers would take both runs' parts for one output. With
        ``overwrite=True``, the published parts replace all of those files instead (a
        failed run leaves them as they were)."""
        if "compute" in kwargs:
            raise TypeError("to_textfiles is lazy here: run() computes it")
        return StagedFiles(self.bag, path, storage_options,
                           {"last_endline": last_endline, **kwargs}, overwrite)

    def run(self, *outputs: Any, audit: AuditLog | None = None) -> RunStats:
        """Compute ``outputs`` (``job.to_textfiles(...)``, ``job.bag`` itself, or any
        writer made from ``job.bag``) together with the counts; append one audit entry;
        then publish the ``to_textfiles`` outputs. ``self.results`` holds each output's
        result (for ``to_textfiles``, the published paths).

        A ``to_textfiles`` destination that already holds parts is refused first (see
        ``to_textfiles``), as are two ``to_textfiles`` outputs whose parts could be named
        alike in one directory (``part-*.jsonl`` and ``*.jsonl``; ``part-*.jsonl`` and
        ``part-*.jsonl.gz`` may share one). If the run fails (a partition fails, the
        audit entry cannot be written, a part cannot be moved into place), the
        ``to_textfiles`` outputs are removed, the files they were to replace put back, and
        nothing is published.
        Writers made directly from ``job.bag`` write while the run computes: their files
        exist, maybe incomplete, before the audit entry and stay after a failure; treat
        them as published only once ``run`` returns, and delete them if it raises.

        Returns the merged counts; with ``on_error="raise"``, a rejected record raises
        ``RecordError`` (first rejected line, numbered across the whole bag) once the
        audit entry is written and the output published. Rejected records are never in
        the output.
        """
        staged = [o for o in outputs if isinstance(o, StagedFiles)]
        for i, o in enumerate(staged):
            for other in staged[:i]:
                if o is other:
                    raise ValueError(f"{o.path}: this output is given to run twice, which "
                                     "would publish its parts twice to the same destination")
                if other.clashes(o):
                    raise ValueError(f"{other.path}: another output of this run, {o.path}, "
                                     "writes parts that could be named like these to the same "
                                     "destination; give each output a directory or a name "
                                     "pattern of its own")
        for o in staged:
            o.check()
        try:
            stats = self._run(outputs, audit)
            self.results = [o.publish() if isinstance(o, StagedFiles) else r
                            for o, r in zip(outputs, self.results, strict=True)]
        except BaseException:
            for o in staged:
                o.discard()
            raise
        failures = []
        for o in staged:
            try:
                o.finish()
            except PseudonymError as e:
                failures.append(e)
        if failures:
            raise failures[0]
        if self.on_error == "raise" and stats.rejected:
            kind = min(stats.errors, key=lambda k: stats.errors[k]["records"][:1] or [0])
            first = stats.errors[kind]["records"]
            raise RecordError(kind, f"{stats.rejected} record(s) rejected and left out",
                              position=first[0] if first else None)
        return stats

    def _run(self, outputs: tuple[Any, ...], audit: AuditLog | None) -> RunStats:
        plan = _AuditPlan(self.policy, [], [
            _RuleInfo(i, r.path, REGISTRY[r.action]) for i, r in enumerate(self.policy.rules, 1)])
        run = audit.start(plan) if audit is not None else None  # type: ignore[arg-type]
        stats = RunStats()
        status = "failed"
        try:
            computed = [o.writes() if isinstance(o, StagedFiles) else o for o in outputs]
            *results, parts = _compute(*computed, self._counts)
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
    keyed = any(REGISTRY[r.action].needs_key(o)
                for r, o in zip(policy.rules, policy.options, strict=True))
    if keyed and key is None:
        key = KeyRef.env()
    ref = key.pinned() if key is not None else None
    spec = _Spec(policy.canonical(), policy.sha256, ref, input == "records")
    return BagJob(bag, policy, spec, on_error)
