from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BAD = ROOT / "tests" / "policies" / "bad"
EXAMPLE = ROOT / "examples" / "research.yaml"
TRACES = ROOT / "examples" / "traces.jsonl"


def run_cli(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The real command, in a subprocess, as a user runs it."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("PSEUDONYM_")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "pseudonym", *args], capture_output=True,
                          env=full, input=stdin, cwd=cwd, timeout=60)


def key_env() -> dict[str, str]:
    from pseudonym.keys import MasterKey
    return {"PSEUDONYM_KEY": MasterKey.generate().text}
