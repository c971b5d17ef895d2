"""The documentation cannot drift from the code: generated pages cover everything the
code has, hand-written pages quote the README and policies that really pass ``check``."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from pseudonym import docgen
from pseudonym.actions import REGISTRY
from pseudonym.cli import COMMANDS
from pseudonym.policy import PolicyModel, Rule, builtin_names
from tests.dpo_helpers import ROOT, run_cli


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_getting_started_quotes_the_readme_commands():
    readme = blocks((ROOT / "README.md").read_text(), "sh")[:2]
    page = (ROOT / "docs" / "getting-started.md").read_text()
    assert len(readme) == 2
    for cmd in readme:
        assert cmd in blocks(page, "sh")


def test_getting_started_policy_passes_strict_check(tmp_path):
    [policy] = blocks((ROOT / "docs" / "getting-started.md").read_text(), "yaml")
    (tmp_path / "first.yaml").write_text(policy)
    r = run_cli("check", "--strict", "first.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_generated_pages_cover_the_code():
    pages = docgen.pages(ROOT)
    cli = pages["reference/cli.md"]
    for name in COMMANDS:
        assert f"\n## {name}\n" in cli
    assert "### audit report" in cli and "--strict" in cli
    actions = pages["reference/actions.md"]
    for name, a in REGISTRY.items():
        assert f"\n## {name}\n" in actions
        docs = a.options.option_docs()
        for opt in a.options.model_fields:
            assert docs.get(opt), f"option {name}.{opt} has no docstring"
            first = docs[opt].split("\n")[0].replace("|", "\\|")
            assert f"| `{opt}` |" in actions and first in actions
    policy = pages["reference/policy.md"]
    for model in (PolicyModel, Rule):
        for f, field in model.model_fields.items():
            assert field.description, f"policy field {f} has no description"
            assert f"| `{f}` |" in policy
    for n in builtin_names():
        assert f"policies/{n}.md" in pages
        assert f"({n}.md)" in pages["policies/index.md"]


def test_audit_example_is_a_real_entry():
    text = docgen.audit_example(ROOT)
    assert '"entry": "run"' in text and '"identifier_digest"' in text
    assert '"rejected": 1' in text and "learner-0042" not in text


@pytest.mark.skipif(shutil.which("mkdocs", path=str(ROOT / ".venv" / "bin")) is None
                    and shutil.which("mkdocs") is None,
                    reason="mkdocs not installed (pip install -e '.[docs]')")
def test_site_builds_strict(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                        str(tmp_path / "site")], cwd=ROOT, capture_output=True, timeout=300,
                       env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").exists()


def test_policy_page_is_explain_plus_check():
    from tests.dpo_helpers import BAD, EXAMPLE
    page = docgen.policy_page(str(EXAMPLE))
    assert "## Policy video-research, version 1.1" in page
    assert "### Treatment of each field" in page and "- no finding." in page
    bad = docgen.policy_page(str(BAD / "free-text.yaml"))
    assert "**warning** `free-text-kept` (rule 1)" in bad
