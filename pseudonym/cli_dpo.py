"""The DPO's commands: check (with lint), explain, diff, audit report, lookup, reidentify.

Each is ``(help, description, epilog, add_args, run)`` for ``cli.COMMANDS``; helpers from
``cli`` are imported when a command runs, as ``cli`` imports this module.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .canonical import canonical_bytes
from .errors import PseudonymError, RecordError, StreamError
from .keys import ENV_VAR
from .policy import Policy

_KEY_HELP = f"master key file (default: ${ENV_VAR})"


def _write(text: str, output: str | None) -> None:
    if output and output != "-":
        from .jsonlines import AtomicOutput
        try:
            with AtomicOutput(output) as out:
                out.stream.write(text.encode("utf-8"))
                out.commit()
        except OSError as e:
            raise StreamError(f"{output}: cannot write output ({e.strerror}); no output file "
                              "was published") from None
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


# -- check --------------------------------------------------------------------------------
CHECK_TEXT = (
    "validate and lint a policy",
    "Load and validate a policy file (or built-in), then lint it: findings a DPO reviewer "
    "would raise, each citing the GDPR article or EDPB Guidelines 01/2025 it rests on. "
    "Errors: the policy cannot load, a known direct identifier is kept as is, an agent or "
    "learner_id rule is marked identifying: false (scrub and url then leave its values in "
    "clear), or a field is encrypted (reversible) without a declared need for "
    "re-identification. Warnings: a "
    "missing header field (Art. 30), unmatched: keep, free text kept, a rule without why, "
    "overlapping rules, a rule that never applies, hash where re-identification is "
    "declared.",
    "exit status: 0 clean (warnings allowed without --strict), 1 errors (or the policy "
    "does not load), 2 warnings under --strict.\n\n"
    "examples:\n  pseudonym check examples/research.yaml\n"
    "  pseudonym check --strict --format json xapi")


def check_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("policy", help="policy file or built-in name")
    p.add_argument("--strict", action="store_true", help="exit 2 when there are warnings")
    p.add_argument("--format", choices=["text", "json"], default="text",
                   help="output format (default: text)")


def check(a: argparse.Namespace) -> int:
    from .lint import exit_status, lint
    try:
        policy = Policy.load(a.policy)
    except PseudonymError as e:
        if a.format == "json":
            problems = getattr(e, "problems", [e])
            print(json.dumps({"policy": a.policy, "valid": False, "errors": len(problems),
                              "warnings": 0, "findings": [
                                  {"code": "invalid", "severity": "error", "message": str(p),
                                   "rule": getattr(p, "rule", None),
                                   "line": getattr(p, "line", None)} for p in problems]},
                             indent=2))
        else:
            print(str(e), file=sys.stderr)
        return 1
    findings = lint(policy)
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    if a.format == "json":
        print(json.dumps({"policy": policy.source, "valid": True, "name": policy.name,
                          "version": policy.version, "sha256": policy.sha256,
                          "errors": errors, "warnings": warnings,
                          "findings": [f.to_dict() for f in findings]}, indent=2))
    else:
        for f in findings:
            print(f.text(policy.source))
        print(f"{policy.source}: valid: {policy.name} version {policy.version}, "
              f"{len(policy.rules)} rules, domain {policy.domain!r}, sha256 {policy.sha256}; "
              f"{errors} errors, {warnings} warnings")
    return exit_status(findings, a.strict)


# -- explain ------------------------------------------------------------------------------
EXPLAIN_TEXT = (
    "the policy as a document a DPO signs",
    "Print a policy as a document: its header (controller, purpose, legal basis, "
    "retention, recipients, domain) and a table with one row per rule: the field, its "
    "treatment, whether it is reversible, linkable across records and across domains, "
    "and why. With --sample, one trace before and after, each changed field attributed "
    "to the rule that changed it.",
    "examples:\n  pseudonym explain examples/research.yaml > policy.md\n"
    "  pseudonym explain xapi --format html --sample examples/traces.jsonl -o xapi.html\n\n"
    "The sample is the first record of TRACE (JSON lines, .gz, or one JSON object). Its "
    "pseudonyms use the key given, or else a throwaway key.")


def explain_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("policy", help="policy file or built-in name")
    p.add_argument("--format", choices=["md", "html"], default="md",
                   help="Markdown or standalone HTML (default: md)")
    p.add_argument("--sample", metavar="TRACE", help="file whose first record is shown "
                   "before and after")
    p.add_argument("--key-file", help=_KEY_HELP + "; without a key, a throwaway one")
    p.add_argument("--output", "-o", help="write to this file (default: stdout)")


def read_sample(path: str) -> dict[str, Any]:
    """The first record of a JSON lines file (or the object of a JSON file)."""
    from .jsonlines import iter_lines, loads, open_input
    try:
        with open_input(path) as src:
            data = src.read()
    except OSError as e:
        raise PseudonymError(f"{path}: cannot read the sample ({e.strerror})") from None
    try:
        record = loads(data)
    except RecordError:
        import io
        record = None
        for n, line in enumerate(iter_lines(io.BytesIO(data)), 1):
            if line.strip():
                try:
                    record = loads(line)
                except RecordError as e:
                    raise PseudonymError(f"{path}: line {n}: {e.reason}") from None
                break
    if not isinstance(record, dict):
        raise PseudonymError(f"{path}: the sample must start with a JSON object")
    return record


def explain(a: argparse.Namespace) -> int:
    from .cli import load_keys
    from .explain import explain as build
    policy = Policy.load(a.policy)
    sample = read_sample(a.sample) if a.sample else None
    keys = load_keys(a.key_file) if sample is not None else None
    _write(build(policy, sample, keys).render(a.format), a.output)
    return 0


# -- diff ---------------------------------------------------------------------------------
DIFF_TEXT = (
    "what changed between two versions of a policy",
    "Compare two versions of a policy for review: header fields, rules (matched by path "
    "and when; each option and whether the rule's values are identifying count), and the "
    "treatment of the known identifier and free-text fields of xAPI "
    "and Open edX under each version.",
    "exit status: 0 identical, 1 different (like diff), 2 a policy does not load.\n\n"
    "example:\n  git show v1:policy.yaml > old.yaml && pseudonym diff old.yaml policy.yaml")


def diff_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("old", help="old policy file or built-in name")
    p.add_argument("new", help="new policy file or built-in name")
    p.add_argument("--format", choices=["md", "html"], default="md",
                   help="Markdown or standalone HTML (default: md)")


def diff(a: argparse.Namespace) -> int:
    from .diff import diff as build
    doc, changed = build(Policy.load(a.old), Policy.load(a.new))
    _write(doc.render(a.format), None)
    return 1 if changed else 0


# -- audit report -------------------------------------------------------------------------
def report_args(p: argparse.ArgumentParser) -> None:
    from .audit import AUDIT_KEY_ENV
    p.add_argument("file", help="audit log (JSON lines)")
    p.add_argument("--format", choices=["md", "html"], default="md",
                   help="Markdown or standalone HTML (default: md)")
    p.add_argument("--audit-key-file", help=f"audit key, to check HMACs too "
                   f"(default: ${AUDIT_KEY_ENV}, if set)")
    p.add_argument("--output", "-o", help="write to this file (default: stdout)")


def report(a: argparse.Namespace) -> int:
    from .cli import load_audit_key
    from .report import report as build
    doc, ok = build(a.file, load_audit_key(a.audit_key_file))
    _write(doc.render(a.format), a.output)
    return 0 if ok else 1


# -- lookup and reidentify ----------------------------------------------------------------
def _subject_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", "-p", required=True, help="policy file or built-in name")
    p.add_argument("--reason", required=True,
                   help="why (request reference, legal ground); recorded in the audit log")
    p.add_argument("--audit", "-a", required=True,
                   help="audit log to append the entry to (required)")
    p.add_argument("--key-file", help=_KEY_HELP)
    p.add_argument("--audit-key-file", help="key for the audit log's HMAC")


LOOKUP_TEXT = (
    "the pseudonyms of an identifier (access and erasure requests)",
    "Print the pseudonyms an identifier (e-mail address, account name, user id...) has "
    "under a policy: one per keyed rule (hash, encrypt, agent, learner_id) and per key of "
    "the ring, so that a learner's records can be found in data sets made before or after "
    "a key rotation. For an agent rule the identifier is read as an xAPI account name, and "
    "also as a mailbox (e-mail address; a mailto: IRI only as a mailbox), mailbox SHA-1 (40 "
    "hex digits) or OpenID (http(s) URL) when it has that form; the pseudonym printed is "
    "the account name the agent gets. For a scrub rule with replace: pseudonym, it is the "
    "pseudonym inside the tokens free text gets ([EMAIL:...], [USER:...]), in anyone's "
    "records, whatever form it held the identifier in (any case, URL-encoded, digest); with "
    "the hex_digest detector, also one per digest of the identifier (as free text, MD5 "
    "hex...), which a record that does not hold the identifier itself carries, as scrub "
    "cannot trace it back. Rules that give no pseudonym of an identifier "
    "(date_shift) are named on standard error. "
    "Needs the key. Appends an audit entry with the reason and a keyed digest of the "
    "identifier, never the identifier in clear.",
    "examples:\n  pseudonym lookup --policy xapi --reason 'DSR-2026-014, Art. 15' "
    "--audit audit.jsonl learner-0042\n"
    "  printf %s 'mailto:ada@example.org' | pseudonym lookup --policy xapi "
    "--reason 'DSR-2026-016' --audit audit.jsonl -\n"
    "  pseudonym lookup --policy edx --json --reason 'DSR-2026-015, Art. 17' "
    "--audit audit.jsonl 12345\n\n"
    "Give the identifier as it appears in the traces (an xAPI mbox is 'mailto:...').")


def _stdin_arg(value: str, what: str) -> str:
    """``-`` reads the value from standard input, out of shell history and ``ps``."""
    if value != "-":
        return value
    text = sys.stdin.read().rstrip("\r\n")
    if not text:
        raise PseudonymError(f"no {what} on standard input")
    return text


def lookup_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("identifier", help="the identifier, as it appears in the traces; - reads "
                   "it from standard input (keeps it out of shell history and the process "
                   "list)")
    p.add_argument("--json", action="store_true",
                   help="read IDENTIFIER as a JSON value (e.g. the number 12345)")
    p.add_argument("--format", choices=["text", "json"], default="text",
                   help="output format (default: text)")
    _subject_args(p)


def _subject_setup(a: argparse.Namespace):
    from .audit import AuditLog
    from .cli import load_audit_key, load_keys
    policy = Policy.load(a.policy)
    keys = load_keys(a.key_file, required=True)
    audit = AuditLog.open(a.audit, load_audit_key(a.audit_key_file))
    audit.refuse_master_keys(keys.key_ids)
    return policy, keys, audit


def lookup(a: argparse.Namespace) -> int:
    from .subjects import lookup as run
    ident: Any = _stdin_arg(a.identifier, "identifier")
    if a.json:
        ident = _json_identifier(ident)
    policy, keys, audit = _subject_setup(a)
    result = run(ident, policy, keys=keys, reason=a.reason, audit=audit)
    for s in result.skipped:
        print(f"pseudonym: note: rule {s['rule']} ({s['action']} {s['path']}) skipped: "
              f"{s['why']}", file=sys.stderr)
    if a.format == "json":
        print(json.dumps(result.rows, indent=2, ensure_ascii=False))
    else:
        for r in result.rows:
            active = "" if r["active"] else " (older key)"
            read_as = "" if r["as"] == "value" else f" (as {r['as']})"
            print(f"rule {r['rule']}\t{r['action']}\t{r['path']}{read_as}\t"
                  f"key {r['key_id']}{active}\t"
                  f"{json.dumps(r['pseudonym'], ensure_ascii=False)}")
    return 0


def _json_identifier(text: str) -> Any:
    """``--json`` input: a JSON value that a record could hold (no NaN or infinity, not
    nested beyond what records may be)."""
    try:
        value = json.loads(text)
        canonical_bytes(value)
    except RecursionError:
        raise PseudonymError("--json: IDENTIFIER is nested too deeply") from None
    except ValueError:
        raise PseudonymError("--json: IDENTIFIER is not a JSON value (NaN and infinities "
                             "are not)") from None
    return value


def _print_json(value: Any) -> None:
    """Readable JSON, except for text no encoding can print (a lone surrogate, which a
    record may hold): then escaped, as JSON allows."""
    text = json.dumps(value, ensure_ascii=False)
    try:
        text.encode(sys.stdout.encoding or "utf-8")
    except UnicodeEncodeError:
        text = json.dumps(value)
    print(text)


REIDENTIFY_TEXT = (
    "reverse an encrypt token (with a stated reason)",
    "Print the value an encrypt token (pse1.<key id>.<...>) stands for under a policy's "
    "domain, as JSON. Needs the key that made the token and a stated reason; appends an "
    "audit entry with the reason, the key id and a keyed digest of the token, never the "
    "token or the value in clear.",
    "example:\n  pseudonym reidentify --policy contact.yaml --reason 'consented follow-up, "
    "ticket 881' --audit audit.jsonl pse1.3f2a...")


def reidentify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("token", help="the encrypt token; - reads it from standard input")
    _subject_args(p)


def reidentify(a: argparse.Namespace) -> int:
    from .reidentify import reidentify as run
    policy, keys, audit = _subject_setup(a)
    token = _stdin_arg(a.token, "token").strip()
    value = run(token, policy, keys=keys, reason=a.reason, audit=audit)
    _print_json(value)
    return 0
