from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from pseudonym import KeyRing, Policy

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "ralph-video-statements.jsonl.gz"
EXAMPLES = ROOT / "examples"


def make_policy(rules: list[dict[str, Any]], **header: Any) -> Policy:
    data = {"name": "t", "version": "1", "domain": "test-domain", "rules": rules}
    data.update(header)
    return Policy.from_dict(data)


@pytest.fixture(scope="session")
def keys() -> KeyRing:
    return KeyRing.generate()


@pytest.fixture(scope="session")
def statements() -> list[dict[str, Any]]:
    if not SHARED.exists():
        pytest.skip(f"shared sample data not found at {SHARED}")
    with gzip.open(SHARED, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]
