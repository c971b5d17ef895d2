"""mkdocs hooks: the generated pages (``pseudonym.docgen``) are made at every build, and
the "Built-in policies" section lists whatever ``pseudonym/policies/*.yaml`` holds."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files

from pseudonym import docgen
from pseudonym.policy import builtin_names

ROOT = Path(__file__).resolve().parent.parent
SECTION = "Built-in policies"
MARKERS = {"<!-- generated: audit-example -->": lambda: docgen.audit_example(ROOT)}


def on_config(config):
    entries = [{"Overview": "policies/index.md"}]
    entries += [{n: f"policies/{n}.md"} for n in builtin_names()]
    for item in config["nav"] or []:
        if isinstance(item, dict) and SECTION in item:
            item[SECTION] = entries
    return config


def on_files(files: Files, config) -> Files:
    for path, text in docgen.pages(ROOT).items():
        old = files.get_file_from_path(path)
        if old is not None:
            files.remove(old)
        files.append(File.generated(config, path, content=text))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    for marker, make in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown
