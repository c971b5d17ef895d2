"""presidio-structured on the same JSON lines, doing a strict subset of the work.

Runs in its own virtual environment (``benchmarks/.venv-presidio``, made by ``run.py``):
presidio pins ``cryptography>=50,<51`` and brings about 0.5 GB (spacy, pandas), which must
never reach the project's environment. It must be called one record at a time (a list is
processed once per mapped key) and its paths split on dots, so xAPI extension keys cannot be
named. The subset it does here is every rule of the benchmarked policies it can express:
the learner's account name and e-mail address hashed (salted SHA-256, the closest it has
to a keyed hash) and the timestamp truncated to the minute (a custom operator doing what
the hand-written pass does). It keeps everything else: no allow-list, no session id.
Explicit entity mappings, so no spaCy model loads.

Run: benchmarks/.venv-presidio/bin/python benchmarks/presidio_pass.py SALT INPUT OUTPUT
"""

from __future__ import annotations

import sys
from datetime import datetime

import orjson
from presidio_anonymizer.entities import OperatorConfig
from presidio_structured import JsonDataProcessor, StructuredAnalysis, StructuredEngine

MAPPING = {"actor.account.name": "USER_ID", "actor.mbox": "EMAIL", "timestamp": "TIME"}


def _minute(ts: str) -> str:
    return datetime.fromisoformat(ts).replace(second=0, microsecond=0).isoformat(
        timespec="seconds")


def operators(salt: str) -> dict[str, OperatorConfig]:
    return {
        "USER_ID": OperatorConfig("hash", {"hash_type": "sha256", "salt": salt}),
        "EMAIL": OperatorConfig("hash", {"hash_type": "sha256", "salt": salt}),
        "TIME": OperatorConfig("custom", {"lambda": _minute}),
    }


def main(salt: str, src: str, dst: str) -> None:
    ops = operators(salt)
    engine = StructuredEngine(data_processor=JsonDataProcessor())
    analysis = StructuredAnalysis(entity_mapping=MAPPING)
    anonymize, loads, dumps = engine.anonymize, orjson.loads, orjson.dumps
    with open(src, "rb") as f, open(dst, "wb") as out:
        write = out.write
        for line in f:
            write(dumps(anonymize(loads(line), analysis, ops)))
            write(b"\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
