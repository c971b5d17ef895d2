"""Run a fuzz target under atheris (libFuzzer): ``python fuzz/run.py policy|anonymise
[corpus dirs] [-max_total_time=60 ...]``. A crash writes its input to ``crash-*``."""

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent))

with atheris.instrument_imports(include=["pseudonym", "targets", "yaml"]):
    import targets

TARGETS = {"policy": targets.policy, "anonymise": targets.anonymise_one}

if __name__ == "__main__":
    target = TARGETS[sys.argv.pop(1)]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()
