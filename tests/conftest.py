"""Shared helpers: a fresh key ring, the shared data, and 'every form' of a secret."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from pseudonym import KeyRing

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "ralph-video-statements.jsonl.gz"


@pytest.fixture(scope="session")
def keys() -> KeyRing:
    return KeyRing.generate()


@pytest.fixture(scope="session")
def shared_statements() -> list[dict]:
    if not SHARED.exists():
        pytest.skip(f"shared data absent: {SHARED} (CI has ../shared/data beside the clone)")
    with gzip.open(SHARED, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


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
