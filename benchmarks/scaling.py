"""How well this machine runs two CPU-bound processes at once: the ceiling for --workers.

    python benchmarks/scaling.py

Parses and re-encodes the sample statements with orjson (the bulk of a pseudonymisation
pass) in one process, then in two processes at the same time, and prints the speed-up two
processes can reach here. Shared caches, memory bandwidth or SMT siblings make it less
than 2; ``--workers 2`` cannot beat it.
"""

from __future__ import annotations

import gzip
import os
import sys
import time
from pathlib import Path

import orjson

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / \
    "ralph-video-statements.jsonl.gz"


def work(lines: list[bytes], rounds: int = 5) -> float:
    t = time.perf_counter()
    for _ in range(rounds):
        for line in lines:
            orjson.dumps(orjson.loads(line))
    return time.perf_counter() - t


def main() -> int:
    with gzip.open(DATA, "rb") as f:
        lines = f.read().splitlines()
    alone = min(work(lines) for _ in range(3))
    r, w = os.pipe()
    pids = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            os.write(w, f"{work(lines)}\n".encode())
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    os.close(w)
    together = [float(x) for x in os.read(r, 1000).split()]
    slowest = max(together)
    print(f"one process alone: {alone:.3f} s; two at once: "
          f"{', '.join(f'{t:.3f}' for t in together)} s; "
          f"ceiling for 2 workers: {2 * alone / slowest:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
