"""JSON lines on several cores: blocks of lines go to worker processes, results come back
in input order, and the per-block counts merge into the one run's statistics.

The parent only hands out blocks of whole lines and puts the answers in order, and does as
little as it can besides: on two cores, every millisecond it spends pickling, reading and
writing a block is taken from the workers. From a regular file (named, or standard input
redirected from one), workers read their byte range themselves and only offsets travel.
Where workers are forked, blocks read from a stream and results travel through memory
shared with the workers (anonymous: never a file, so nothing outlives the run), and only
slot numbers cross a pipe; elsewhere they are pickled through pipes. Nothing the run
handles is written to disk but its output.
Workers load the policy and the key themselves (the key from the same environment variable
or key file as the parent): the key never crosses a pipe.
"""

from __future__ import annotations

import gc
import gzip
import mmap
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from typing import IO, TYPE_CHECKING

from .engine import Plan, RunStats, compile_plan, run_block
from .errors import PseudonymError, RecordError, StreamError
from .jsonlines import BOM
from .keys import KeyRing
from .policy import Policy

if TYPE_CHECKING:
    from concurrent.futures import Future

BLOCK_BYTES = 1 << 20
"""About this many bytes of input per block: large enough that the per-block overhead
vanishes, small enough that memory stays bounded (in flight: about 3 blocks a worker)."""
TAIL_BYTES = 1 << 16
"""The smallest range ``file_ranges`` hands out towards the end of a file."""
IN_FLIGHT = 3
"""Blocks handed out per worker and not yet written back."""
SLOT_BYTES = 2 * BLOCK_BYTES
"""Room for a block, and for its result, in a slot of shared memory (a block of whole
lines is about ``BLOCK_BYTES``; one with a very long line travels pickled)."""


def iter_blocks(stream: IO[bytes], size: int = BLOCK_BYTES, full_reads: bool = False
                ) -> Iterator[tuple[int, bytes]]:
    """(number of the block's first line, block of whole lines) pairs, BOM dropped.

    A block holds whole lines only: it ends after its last newline, except the stream's
    last block, which may end without one. Reads take what is there (``read1``), so lines
    trickling through a pipe come out as they arrive, not once a block is full; with
    ``full_reads``, each read waits for ``size`` bytes (or the end of the stream).
    """
    read: Callable[[int], bytes] = (
        (lambda n: _read_full(stream.read, n)) if full_reads
        else getattr(stream, "read1", stream.read))
    line, rest = 1, b""
    head = read(max(size, len(BOM)))
    while 0 < len(head) < len(BOM):
        more = read(len(BOM) - len(head))
        if not more:
            break
        head += more
    chunk = head[len(BOM):] if head.startswith(BOM) else head
    if head and not chunk:
        chunk = read(size)
    while True:
        if not chunk:
            if rest:
                yield line, rest
            return
        data = rest + chunk if rest else chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            rest = data
        else:
            block, rest = data[:cut + 1], data[cut + 1:]
            yield line, block
            line += block.count(b"\n")
        chunk = read(size)


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to rebuild the parent's plan: references, never key bytes."""

    policy: str
    policy_sha256: str
    key_file: str | None
    key_ids: tuple[str, ...] | None
    gzip: bool = False
    """Compress each block's output as a gzip member, so the parent only writes bytes."""
    input_name: str = "input"
    """How errors name the input when workers read it through a descriptor."""


class _Slots:
    """Shared memory where blocks and their results travel between the parent and forked
    workers: anonymous (never a file), one slot per block in flight, each with room for
    a block and for its result. A block or result that does not fit travels pickled
    through a pipe instead. Pickling, piping and unpickling copy each byte four times,
    in processes that share the cores with the workers; a slot copies it once.

    Slot ``i % count`` carries the ``i``-th block: at most ``count`` blocks are in flight,
    so a slot is reused only once its last result has been written out.
    """

    IN, OUT = 0, 1

    def __init__(self, count: int, size: int | None = None) -> None:
        self.count, self.size = count, size or SLOT_BYTES
        self.mem = mmap.mmap(-1, count * 2 * self.size)

    def _at(self, slot: int, half: int) -> int:
        return (2 * slot + half) * self.size

    def put(self, slot: int, half: int, data: bytes) -> bool:
        """Copy ``data`` into a slot's half; False (nothing copied) if it does not fit."""
        if len(data) > self.size:
            return False
        at = self._at(slot, half)
        self.mem[at:at + len(data)] = data
        return True

    def take(self, slot: int, half: int, size: int) -> bytes:
        at = self._at(slot, half)
        return self.mem[at:at + size]

    def write_out(self, write: Callable[[bytes], object], result: bytes | tuple[int, int]
                  ) -> None:
        """Write a result, from its slot when it came back as ``(slot, size)``."""
        if not isinstance(result, tuple):
            write(result)
            return
        slot, size = result
        at = self._at(slot, self.OUT)
        with memoryview(self.mem) as whole, whole[at:at + size] as part:
            write(part)  # type: ignore[arg-type]


_plan: Plan | None = None
_spec: WorkerSpec | None = None
_slots: _Slots | None = None


def _init_worker(spec: WorkerSpec, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the parent decides

    def stop_if_orphaned(signum: int, frame: object) -> None:
        if os.getppid() != parent:
            os._exit(128 + signum)

    for name in ("SIGTERM", "SIGHUP"):  # likewise, unless the parent is gone
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), stop_if_orphaned)
    _die_with(parent)
    global _plan, _spec
    _spec = spec
    if _plan is not None and _plan.policy.sha256 == spec.policy_sha256:
        return  # forked: the parent's compiled plan came with the process
    policy = Policy.load(spec.policy)
    if policy.sha256 != spec.policy_sha256:
        raise PseudonymError("the policy file changed while the run was starting")
    keys = None
    if spec.key_ids is not None:
        keys = KeyRing.from_file(spec.key_file) if spec.key_file else KeyRing.from_env()
        if tuple(keys.key_ids) != spec.key_ids:
            raise PseudonymError("a worker found another key than the parent's")
    _plan = compile_plan(policy, keys)


PR_SET_PDEATHSIG = 1
"""``prctl`` option (linux/prctl.h)."""


def _die_with(parent: int) -> None:
    """On Linux, ask for a SIGTERM when the parent dies (killed with SIGKILL, say): a worker
    waiting for a block would otherwise linger, its call queue never closing."""
    if sys.platform.startswith("linux"):
        import ctypes

        with suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # gone already, before the request
        os._exit(1)


def file_ranges(source: str | int, size: int = BLOCK_BYTES, workers: int = 0,
                tail: int = TAIL_BYTES) -> Iterator[tuple[None, str | int, int, int]]:
    """Tasks naming byte ranges of whole lines of a regular file: workers read the bytes
    themselves, so the parent neither reads nor sends the input.

    With ``workers``, ranges shrink towards the end (to half of a worker's share of what is
    left, down to ``tail`` bytes), so that the workers finish together: with equal ranges,
    one worker is left alone with the last one, for half a range's time on average.

    ``source`` is a path, or the descriptor of a regular file opened for reading (opened
    once by the caller, or standard input redirected from a file): ranges then start at
    its current offset, forked workers read through the descriptor they inherit, and once
    every range is handed out the offset is left where they end, as reading would leave
    it (what was appended meanwhile stays for the next reader).
    """
    fd = source if isinstance(source, int) else os.open(source, os.O_RDONLY)
    try:
        total = os.fstat(fd).st_size
        start = os.lseek(fd, 0, os.SEEK_CUR) if isinstance(source, int) else 0
        if os.pread(fd, len(BOM), start) == BOM:
            start += len(BOM)
        while start < total:
            want = size
            if workers > 1:
                want = min(size, max(tail, (total - start) // (2 * workers)))
            end = min(start + want, total)
            while end < total:
                piece = os.pread(fd, 8192, end)
                if not piece:
                    end = total
                    break
                i = piece.find(b"\n")
                if i >= 0:
                    end += i + 1
                    break
                end += len(piece)
            yield None, source, start, end
            start = end
        if isinstance(source, int):
            os.lseek(fd, start, os.SEEK_SET)
    finally:
        if not isinstance(source, int):
            os.close(fd)


def can_inherit_descriptors() -> bool:
    """Whether workers are forked here, so that they share the parent's open files."""
    return "fork" in _start_methods()


def stream_blocks(stream: IO[bytes], size: int = BLOCK_BYTES) -> Iterator[tuple[bytes]]:
    """Tasks carrying blocks of a stream (a pipe, gzip) to the workers, each of
    about ``size`` bytes of whole lines, BOM dropped: ``iter_blocks`` over full-size
    reads. Workers want full blocks, and one read cut once copies each byte twice, where
    joining pipe-sized pieces copied it four times (on two cores, the parent's copies
    are the workers' loss)."""
    for _, block in iter_blocks(stream, size, full_reads=True):
        yield (block,)


def _read_full(read: Callable[[int], bytes], size: int) -> bytes:
    """``size`` bytes, fewer only at the end of the stream (raw streams read less)."""
    data = read(size)
    if data and len(data) < size:
        parts, got = [data], len(data)
        while got < size:
            more = read(size - got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        data = b"".join(parts)
    return data


_files: dict[str, int] = {}


def _work(block: bytes | None, source: str | int | None = None, start: int = 0, end: int = 0,
          slot: int | None = None
          ) -> tuple[bytes | tuple[int, int], RunStats, list[RecordError], int]:
    """One block, lines numbered from 1; the parent shifts the numbers into place.

    The block comes as bytes, as a byte range of a file to read, or (``source`` None) as
    the first ``end`` bytes of its shared-memory ``slot``. The output comes back as bytes,
    or as ``(slot, size)`` when it waits in the slot."""
    assert _plan is not None and _spec is not None
    if block is None and source is None:
        assert _slots is not None and slot is not None
        block = _slots.take(slot, _Slots.IN, end)
    elif block is None:
        assert source is not None
        name = _spec.input_name if isinstance(source, int) else source
        try:
            if isinstance(source, int):
                fd = source
            else:
                fd = _files.get(source)
                if fd is None:
                    fd = _files[source] = os.open(source, os.O_RDONLY)
            block = os.pread(fd, end - start, start)
        except OSError as e:
            raise StreamError(f"{name}: cannot read input ({e.strerror})") from None
        if len(block) != end - start:
            raise StreamError(f"{name}: the input file shrank during the run")
    rejected: list[RecordError] = []
    stats = RunStats()
    out = run_block(_plan, block, stats, 1, rejected.append)
    if _spec.gzip and out:
        out = gzip.compress(out, compresslevel=6, mtime=0)
    lines = block.count(b"\n") + (1 if block and not block.endswith(b"\n") else 0)
    if slot is not None and _slots is not None and _slots.put(slot, _Slots.OUT, out):
        return (slot, len(out)), stats, rejected, lines
    return out, stats, rejected, lines


def run_parallel(plan: Plan, spec: WorkerSpec, tasks: Iterator[tuple], workers: int,
                 write: Callable[[bytes], object], stats: RunStats,
                 on_reject: Callable[[RecordError], None] | None = None,
                 on_block: Callable[[RunStats], None] | None = None) -> None:
    """Treat tasks (from ``file_ranges`` or ``stream_blocks``) on ``workers`` processes,
    writing results in input order with ``write`` (which may be given a memoryview, valid
    during the call only).

    Where processes fork, workers inherit ``plan`` as compiled, and blocks and results
    travel through shared memory; elsewhere workers rebuild the plan from ``spec`` (policy
    reference and key source) and check they got the same one.
    """
    from concurrent.futures import ProcessPoolExecutor  # imports only when used
    from concurrent.futures.process import BrokenProcessPool
    from multiprocessing import get_context

    global _plan, _slots
    fork = can_inherit_descriptors()
    pending: deque[Future] = deque()
    slots = None
    if fork:
        with suppress(OSError):  # memory refused (strict overcommit, a limit): pipes then
            slots = _Slots(IN_FLIGHT * workers)
    if slots is not None:
        write = partial(slots.write_out, write)
    done = _Collector(write, stats, on_reject, on_block)
    _plan, _slots = plan if fork else None, slots
    if fork:
        gc.freeze()  # forked workers then never touch (so never copy) the parent's objects
    try:
        with ProcessPoolExecutor(workers, mp_context=get_context("fork" if fork else "spawn"),
                                 initializer=_init_worker, initargs=(spec, os.getpid())) as pool:
            try:
                for n, (block, *where) in enumerate(tasks):
                    slot = None
                    if slots is not None:
                        slot = n % slots.count
                        if block is not None and slots.put(slot, _Slots.IN, block):
                            block, where = None, [None, 0, len(block)]
                    pending.append(pool.submit(_work, block, *where, slot=slot))
                    if len(pending) >= IN_FLIGHT * workers:
                        done(pending.popleft())
                while pending:
                    done(pending.popleft())
            except BaseException:
                for f in pending:
                    f.cancel()
                raise
    except BrokenProcessPool:
        raise PseudonymError("a worker process stopped (it could not load the policy or the "
                             "key, or it was killed); no output was published") from None
    finally:
        _plan = _slots = None
        gc.unfreeze()
        if slots is not None:
            slots.mem.close()


@dataclass
class _Collector:
    write: Callable[[bytes], object]
    stats: RunStats
    on_reject: Callable[[RecordError], None] | None
    on_block: Callable[[RunStats], None] | None
    lines: int = 0

    def __call__(self, fut: Future) -> None:
        out, part, rejected, lines = fut.result()
        self.stats.merge(shift_positions(part, self.lines))
        self.write(out)
        if self.on_reject is not None:
            for e in rejected:
                self.on_reject(e.at(e.position + self.lines))
        self.lines += lines
        if self.on_block is not None:
            self.on_block(self.stats)


def shift_positions(stats: RunStats, offset: int) -> RunStats:
    """Counts of a block whose lines were numbered from 1, renumbered from ``offset + 1``."""
    if offset:
        for e in stats.errors.values():
            e["records"] = [p + offset for p in e["records"]]
    return stats


def _start_methods() -> list[str]:
    from multiprocessing import get_all_start_methods
    return get_all_start_methods() if os.name == "posix" else ["spawn"]
