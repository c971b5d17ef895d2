"""presidio-structured on the same JSON lines, doing a strict subset of the work.

Runs in its own virtual environment (``benchmarks/.venv-presidio``, made by ``run.py``):
presidio pins ``cryptography>=50,<51`` and brings about 0.5 GB (spacy, pandas), which must
never reach the project's environment. It must be called one record at a time (a list is
processed once per mapped key) and its paths split on dots, so xAPI extension keys cannot be
named. The subset it does here is what it can express of the benchmarked policy: the
learner's account name and e-mail address hashed (salted SHA-256, the closest it has to a
keyed hash), plus, for ``xapi``, the account's homePage replaced, and for the research
example, the timestamp truncated to the minute (a custom operator doing what the
hand-written pass does). It keeps everything else: no allow-list, no session id.
Explicit entity mappings, so no spaCy model loads.

Run: benchmarks/.venv-presidio/bin/python benchmarks/presidio_pass.py POLICY_NAME SALT INPUT OUTPUT
"""

from __future__ import annotations

import sys
from datetime import datetime

import orjson
from presidio_anonymizer.entities import OperatorConfig
from presidio_structured import JsonDataProcessor, StructuredAnalysis, StructuredEngine

HOME = "https://fun-mooc.fr/pseudonyms"


def _minute(ts: str) -> str:
    return datetime.fromisoformat(ts).replace(second=0, microsecond=0).isoformat(
        timespec="seconds")


def setup(policy: str, salt: str) -> tuple[dict[str, str], dict[str, OperatorConfig]]:
    """Entity mapping and operators: the subset of each benchmarked policy presidio can do."""
    hashed = OperatorConfig("hash", {"hash_type": "sha256", "salt": salt})
    if policy == "video-research":
        return ({"actor.account.name": "USER_ID", "actor.mbox": "EMAIL", "timestamp": "TIME"},
                {"USER_ID": hashed, "EMAIL": hashed,
                 "TIME": OperatorConfig("custom", {"lambda": _minute})})
    if policy == "xapi":
        return ({"actor.account.name": "USER_ID", "actor.account.homePage": "HOME",
                 "actor.mbox": "EMAIL"},
                {"USER_ID": hashed, "EMAIL": hashed,
                 "HOME": OperatorConfig("replace", {"new_value": HOME})})
    raise SystemExit(f"no presidio subset for policy {policy!r}")


def main(policy: str, salt: str, src: str, dst: str) -> None:
    mapping, ops = setup(policy, salt)
    engine = StructuredEngine(data_processor=JsonDataProcessor())
    analysis = StructuredAnalysis(entity_mapping=mapping)
    anonymize, loads, dumps = engine.anonymize, orjson.loads, orjson.dumps
    with open(src, "rb") as f, open(dst, "wb") as out:
        write = out.write
        for line in f:
            write(dumps(anonymize(loads(line), analysis, ops)))
            write(b"\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
