"""Reference pages of the documentation site, generated from the code at build time
(``tools/mkdocs_hooks.py``), so that they cannot drift from it: the policy reference from
the pydantic models, the actions reference from the registry, the command-line
reference from the argparse parser, one page per built-in policy from ``explain``, and
real audit entries from a real run."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, JsonValue
from pydantic_core import PydanticUndefined

from .actions import REGISTRY, Options
from .audit import AuditLog, read_entries
from .engine import anonymise
from .explain import explain
from .keys import KeyRing
from .lint import CODES, lint
from .policy import LEGAL_BASES, Policy, PolicyModel, Rule, builtin_names, json_schema

GENERATED = "<!-- Generated from the code at docs build time; edit the code, not this page. -->"


def _type(t: Any) -> str:
    """A type as a policy author reads it: JSON words, not Python's."""
    origin, args = get_origin(t), get_args(t)
    if t is Any:
        return "any"
    if t is JsonValue:
        return "any JSON value"
    if origin is Literal:
        return "one of " + ", ".join(f"`{json.dumps(a)}`" for a in args)
    if origin in (Union, UnionType):
        parts = [_type(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in args else "")
    if origin in (list, tuple):
        return f"list of {_type(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping of {_type(args[0])} to {_type(args[1])}" if args else "mapping"
    names = {str: "text", int: "integer", float: "number", bool: "true or false"}
    if t in names:
        return names[t]
    return getattr(t, "__name__", str(t))


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        return f"`{json.dumps(field.default_factory())}`"
    if field.default is PydanticUndefined:
        return ""
    return f"`{json.dumps(field.default, default=str)}`"


def _fields_table(model: type[BaseModel]) -> list[str]:
    out = ["| Field | Type | Default | Meaning |", "|---|---|---|---|"]
    docs = model.option_docs() if issubclass(model, Options) else {}
    for name, f in model.model_fields.items():
        desc = (f.description or docs.get(name, "")).replace("|", "\\|").replace("\n", " ")
        out.append(f"| `{name}` | {_type(f.annotation)} | {_default(f)} | {desc} |")
    return out


def policy_reference() -> str:
    lines = [
        "# Policy file reference", "", GENERATED, "",
        "A policy is a YAML (or JSON) file with a header and a list of rules. Unknown "
        "fields are refused, and so are YAML aliases, duplicate keys and keys that are not "
        "text (as in JSON: quote `on:` or `1:`); every error names the file, line, rule "
        "and field. The tables below are generated from the "
        "pydantic models in `pseudonym/policy.py`.", "",
        "## Header", "", *_fields_table(PolicyModel), "",
        "### Legal bases", "", "| `legal_basis` | GDPR |", "|---|---|",
        *[f"| `{k}` | {v} |" for k, v in LEGAL_BASES.items()], "",
        "## Rules", "", "Each item of `rules`:", "", *_fields_table(Rule), "",
        "How overlapping rules combine is explained in "
        "[Concepts](../concepts.md#how-a-policy-decides-each-field); each action's options "
        "are in the [actions reference](actions.md).", "",
        "## Checks", "",
        "`pseudonym check POLICY` validates a policy and lints it. The findings, with what "
        "each rests on:", "", "| Finding | Severity | Rests on |", "|---|---|---|",
        *[f"| `{c}` | {sev} | {basis} |" for c, (sev, basis) in CODES.items()], "",
        "## JSON Schema", "",
        "`pseudonym schema` prints this schema, for editors that validate a policy as it "
        "is typed.", "", "??? note \"The schema\"", "", "    ```json",
        *["    " + line for line in json.dumps(json_schema(), indent=2).splitlines()],
        "    ```", ""]
    return "\n".join(lines)


def actions_reference() -> str:
    lines = ["# Actions reference", "", GENERATED, "",
             "What a rule can do with the value its path matches. Generated from the action "
             "registry (`pseudonym/actions/`).", "",
             "| Action | Keyed | Reversible | Linkable | On objects and arrays |",
             "|---|---|---|---|---|"]
    yes = {True: "yes", False: "no"}
    for name, a in sorted(REGISTRY.items()):
        whole = ("sets the default inside" if a.structural else "replaces the whole value")
        lines.append(f"| [`{name}`](#{name}) | {yes[a.keyed]} | {yes[a.reversible]} | "
                     f"{yes[a.linkable]} | {whole} |")
    lines += ["", "*Keyed*: needs the master key (`PSEUDONYM_KEY` or `--key-file`); "
              "`scrub` needs it too with `replace: pseudonym`. "
              "*Linkable*: equal inputs give equal outputs, so records stay linkable "
              "through the field.", ""]
    for name, a in sorted(REGISTRY.items()):
        lines += [f"## {name}", "", a.summary, ""]
        if a.options.model_fields:
            lines += ["Options:", "", *_fields_table(a.options), ""]
        else:
            lines += ["No options.", ""]
    return "\n".join(lines)


def _sub_parsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for act in p._actions:
        if isinstance(act, argparse._SubParsersAction):
            return dict(act.choices)
    return {}


def cli_reference() -> str:
    """The help of every command, at a fixed width so the page does not depend on the
    terminal that built it."""
    from .cli import COMMANDS, parser
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        return _cli_reference(COMMANDS, parser)
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


def _cli_reference(commands: dict, make_parser: Any) -> str:
    top = make_parser()
    top.prog = "pseudonym"
    lines = ["# Command-line reference", "", GENERATED, "",
             "Generated from the command's own parser (`pseudonym.cli.parser()`): what "
             "`pseudonym COMMAND --help` prints.", "", "```text",
             top.format_help().rstrip(), "```", "",
             "## Exit status", "",
             "| Status | Meaning |", "|---|---|",
             "| 0 | success |",
             "| 1 | the run finished but rejected records; a check found errors; the audit "
             "log does not verify; `diff`: the policies differ |",
             "| 2 | bad usage, policy or key; `check --strict`: warnings (and no error) |",
             "| 70 | internal error (no traceback, which might quote a value; set "
             "`PSEUDONYM_DEBUG=1` for one) |",
             "| 74 | input or output failed (a full disk, a truncated or corrupt `.gz`, a "
             "missing input file); no output file was published |",
             "| 130 | interrupted (Ctrl-C or `SIGTERM`); no output file was published |", "",
             "When the reader of standard output goes away (`pseudonym anonymise ... | head`), "
             "the run stops quietly with status 0 and its audit entry says `interrupted`.", "",
             "Errors are one line on standard error, naming the place (file, line, rule, "
             "record number), never a value from a trace or a key.", ""]
    subs = _sub_parsers(top)
    for name in commands:
        p = subs[name]
        lines += [f"## {name}", "", "```text", p.format_help().rstrip(), "```", ""]
        for sub_name, sp in _sub_parsers(p).items():
            lines += [f"### {name} {sub_name}", "", "```text", sp.format_help().rstrip(),
                      "```", ""]
    return "\n".join(lines)


def policy_page(name: str) -> str:
    policy = Policy.load(name)
    body = explain(policy).markdown(heading=2)
    findings = lint(policy)
    check = ["## Check", "", f"`pseudonym check {name}` reports:", ""]
    if findings:
        check += [f"- **{f.severity}** `{f.code}`"
                  + (f" (rule {f.rule})" if f.rule else "") + f": {f.message} ({f.basis})"
                  for f in findings]
    else:
        check.append("- no finding.")
    return "\n".join([f"# Built-in policy `{name}`", "", GENERATED, "",
                      f"Use it with `--policy {name}` or `Policy.load(\"{name}\")`. "
                      "This page is `pseudonym explain " + name + "`, rendered at build time.",
                      "", body, *check, ""])


def policies_index(names: list[str]) -> str:
    lines = ["# Built-in policies", "", GENERATED, "",
             "Policies shipped with the library (`pseudonym/policies/*.yaml`), loadable by "
             "name: `pseudonym anonymise --policy NAME`, `Policy.load(\"NAME\")`. Each page "
             "is rendered by `pseudonym explain`. Start from one, or copy it and adapt its "
             "header to your processing.", ""]
    if names:
        lines += [f"- [`{n}`]({n}.md): {Policy.load(n).model.description or ''}".rstrip()
                  for n in names]
    else:
        lines.append("No built-in policy is shipped yet.")
    return "\n".join(lines) + "\n"


def audit_example(root: Path) -> str:
    """Real audit entries: a run of the README's example and a lookup, with a throwaway key."""
    from .subjects import lookup
    policy = Policy.load(root / "examples" / "research.yaml")
    records = [json.loads(line) for line in
               (root / "examples" / "traces.jsonl").read_text("utf-8").splitlines() if line]
    records.append({"id": "bad-timestamp", "timestamp": "yesterday"})
    keys = KeyRing.generate()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "audit.jsonl"
        audit = AuditLog.open(path)
        for _ in anonymise(records, policy, keys=keys, audit=audit, on_error="skip"):
            pass
        lookup("learner-0042", policy, keys=keys, reason="Access request DSR-2026-014",
               audit=audit)
        run, look = read_entries(path)
    return "\n".join([
        "A run entry, from `examples/research.yaml` applied to `examples/traces.jsonl` plus "
        "one record the policy cannot process (shown on several lines; in the file it is "
        "one line):", "", "```json", json.dumps(run, indent=2, ensure_ascii=False), "```", "",
        "A `lookup` entry (`reidentify` entries are alike, with `token_digest`, `key_id` "
        "and `outcome`):", "", "```json", json.dumps(look, indent=2, ensure_ascii=False),
        "```"])


def pages(root: Path) -> dict[str, str]:
    """Every generated page, by its path under docs/."""
    names = builtin_names()
    out = {"reference/policy.md": policy_reference(),
           "reference/actions.md": actions_reference(),
           "reference/cli.md": cli_reference(),
           "policies/index.md": policies_index(names)}
    for n in names:
        out[f"policies/{n}.md"] = policy_page(n)
    return out
