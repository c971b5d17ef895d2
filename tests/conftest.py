from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

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


def variants(secret: str) -> dict[str, str]:
    """The forms of a value a policy must remove: raw, cases, URL-encoded, unkeyed digests."""
    data = secret.encode()
    return {
        "raw": secret,
        "upper": secret.upper(),
        "lower": secret.lower(),
        "urlencoded": quote(secret, safe=""),
        "urlencoded_plus": quote_plus(secret),
        "md5": hashlib.md5(data).hexdigest(),
        "sha1": hashlib.sha1(data).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def assert_gone(output: object, *secrets: str) -> None:
    """No form of any secret appears anywhere in the output (case-insensitively)."""
    text = json.dumps(output, ensure_ascii=False).lower()
    for secret in secrets:
        for name, form in variants(secret).items():
            assert form.lower() not in text, f"{name} form of a planted value survived"
