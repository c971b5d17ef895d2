"""The ``pseudonym`` command line. Errors are one line on stderr, never a traceback.

Exit status: 0 success; 1 the run finished but rejected records (or a check/verify
failed); 2 bad usage, policy or key; 70 internal error; 74 input or output failed (a
full disk, a truncated .gz); 130 interrupted (Ctrl-C, SIGTERM). ``check`` has its own:
0 clean, 1 errors (or the policy does not load), 2 warnings under --strict; ``diff``
exits 1 when the policies differ.
"""

from __future__ import annotations

import argparse
import errno
import gzip
import io
import json
import os
import signal
import stat
import sys
import traceback
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from . import __version__, cli_dpo
from .audit import AUDIT_KEY_ENV, SHA256_HEX, Anchor, AuditLog, verify
from .engine import RunStats, compile_plan, run_block
from .errors import PseudonymError, RecordError, StreamError
from .jsonlines import AtomicOutput, open_input
from .keys import ENV_VAR, KeyFileWarning, KeyRing, MasterKey
from .parallel import (
    WorkerSpec,
    can_inherit_descriptors,
    file_ranges,
    iter_blocks,
    run_parallel,
    stream_blocks,
)
from .policy import Policy, builtin_names, json_schema
from .progress import Progress

T = TypeVar("T")

EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_INTERNAL, EXIT_IO, EXIT_INTERRUPTED = 0, 1, 2, 70, 74, 130


@dataclass(frozen=True)
class Command:
    """A subcommand: its help texts, its arguments and what it runs."""

    help: str
    description: str
    epilog: str
    add_args: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def err(message: str) -> None:
    print(f"pseudonym: {message}", file=sys.stderr, flush=True)


def _echoing_key_warnings(read: Callable[[], T]) -> T:
    """``read()``, its key-file warnings (readable by others) printed on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", KeyFileWarning)
        value = read()
    for w in caught:
        err(f"warning: {w.message}")
    return value


def load_keys(key_file: str | None, required: bool = False) -> KeyRing | None:
    if key_file:
        return _echoing_key_warnings(lambda: KeyRing.from_file(key_file))
    if os.environ.get(ENV_VAR, "").strip() or required:
        return KeyRing.from_env()
    return None


def load_audit_key(path: str | None) -> MasterKey | None:
    if path:
        return _echoing_key_warnings(lambda: MasterKey.from_file(path, what="audit key file"))
    text = os.environ.get(AUDIT_KEY_ENV, "")
    return MasterKey.parse(text, where=f"${AUDIT_KEY_ENV}") if text.strip() else None


# -- anonymise ----------------------------------------------------------------------------
_ANONYMISE_TEXT = (
    "apply a policy to JSON lines",
         "Apply a policy to JSON lines (one trace a line), from a file or standard input, to "
         "a file or standard output. Files ending in .gz are (de)compressed; Open edX "
         "tracking.log lines are read too (their logger prefix is cut off). A record that "
         "cannot be fully processed is not written: it is reported on stderr by line number "
         "(never its content), counted in the audit log, and the exit status is 1.",
         "examples:\n"
         "  pseudonym anonymise --policy xapi < in.jsonl > out.jsonl\n"
         "  pseudonym anonymise --policy research.yaml --input in.jsonl.gz "
         "--output out.jsonl.gz --audit audit.jsonl\n\n"
         f"The key is read from ${ENV_VAR} or --key-file (text made by 'pseudonym keygen').")


def _anonymise_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", "-p", required=True,
                   help=f"policy file, or a built-in name ({', '.join(builtin_names()) or 'none'})")
    p.add_argument("--input", "-i", default="-", help="input JSON lines (default: stdin)")
    p.add_argument("--output", "-o", default="-", help="output JSON lines (default: stdout)")
    p.add_argument("--audit", "-a", help="audit log to append this run's entry to")
    p.add_argument("--key-file", help=f"master key file (default: ${ENV_VAR})")
    p.add_argument("--audit-key-file", help=f"key for the audit log's HMAC "
                   f"(default: ${AUDIT_KEY_ENV}, if set)")
    p.add_argument("--max-errors", type=int, default=20,
                   help="rejected lines reported one by one on stderr (default: 20); "
                        "all are counted")
    p.add_argument("--workers", "-w", type=_workers, default=1, metavar="N",
                   help="worker processes (default: 1; 0: one per core). Output order, "
                        "line numbers and the single audit entry are the same for any N")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="no progress display (it is only shown when stderr is a terminal)")


def _workers(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a whole number") from None
    if n < 0:
        raise argparse.ArgumentTypeError("must be 0 (one per core) or more")
    return n or os.cpu_count() or 1


def _anonymise(a: argparse.Namespace) -> int:
    policy = Policy.load(a.policy)
    keys = load_keys(a.key_file)
    plan = compile_plan(policy, keys)
    if a.audit and _is_audit_log(a.output, a.audit):
        name = "standard output" if a.output == "-" else a.output
        raise PseudonymError(f"{name}: is the audit log; write the output to another file")
    audit = AuditLog.open(a.audit, load_audit_key(a.audit_key_file)) if a.audit else None
    run = audit.start(plan) if audit else None
    stats = RunStats()
    shown = 0
    progress = Progress.for_stream(sys.stderr, a.quiet)

    def report(e: RecordError) -> None:
        nonlocal shown
        shown += 1
        if shown <= a.max_errors:
            if progress is not None:
                progress.clear()
            rule = f" (rule {e.rule})" if e.rule is not None else ""
            err(f"line {e.position}: rejected: {e.kind}{rule}: {e.reason}")

    def advance(s: RunStats) -> None:
        if progress is not None:
            progress.update(s.read, s.rejected)

    status = "failed"

    def completed() -> None:
        nonlocal status
        status = "completed"
        if run is not None:
            run.finish(stats, status)

    direct = a.output in (None, "-")
    try:
        try:
            src = open_input(a.input)
        except OSError as e:
            raise StreamError(f"{a.input}: cannot read input ({e.strerror})") from None
        try:
            with src, AtomicOutput(a.output, precompressed=a.workers > 1) as out:
                direct = out.direct
                write = out.stream.write
                if a.workers > 1:
                    spec = WorkerSpec(a.policy, policy.sha256, a.key_file,
                                      tuple(keys.key_ids) if keys is not None else None,
                                      out.gzip, "standard input" if a.input == "-" else a.input)
                    ranged = _ranged_input(src, a.input)
                    tasks = (file_ranges(ranged, workers=a.workers) if ranged is not None
                             else stream_blocks(src))

                    def block_done(s: RunStats) -> None:
                        out.sync_so_far(wait=True)  # the parent's idle time
                        advance(s)

                    try:
                        run_parallel(plan, spec, _read(tasks, a.input), a.workers, write,
                                     stats, report, block_done)
                    finally:
                        if isinstance(ranged, int):
                            os.close(ranged)
                else:
                    live = out.path is None
                    for first_line, block in _read(iter_blocks(src), a.input):
                        part = RunStats()
                        treated = run_block(plan, block, part, first_line, report)
                        stats.merge(part)
                        write(treated)
                        if live:
                            out.stream.flush()
                        else:
                            out.sync_so_far()
                        advance(stats)
                if out.gzip and a.workers > 1 and not stats.written:
                    write(gzip.compress(b"", mtime=0))  # no block wrote a member: still gzip
                out.commit(before_publish=completed)
        except BrokenPipeError:
            raise
        except OSError as e:  # input errors are StreamErrors already: this is the output
            if a.output in (None, "-"):
                _quiet_stdout()
                raise StreamError(f"standard output: cannot write ({e.strerror}); the "
                                  "output is incomplete") from None
            if direct:
                raise StreamError(f"{a.output}: cannot write output ({e.strerror}); the "
                                  "output is incomplete") from None
            raise StreamError(f"{a.output}: cannot write output ({e.strerror}); no output "
                              "file was published") from None
    except KeyboardInterrupt:
        status = "interrupted"
        if direct:  # what was written before the signal has gone to its reader
            raise _Interrupted("interrupted; the output is incomplete") from None
        raise
    except BrokenPipeError:
        status = "interrupted"
        raise
    finally:
        if run is not None:
            run.finish(stats, status)
        if progress is not None:
            progress.close(stats.read, stats.rejected)
    if stats.rejected:
        err(f"{stats.rejected} of {stats.read} records rejected; {stats.written} written")
        return EXIT_REJECTED
    return EXIT_OK


def _is_audit_log(output: str, audit: str) -> bool:
    """Whether the output would land in the audit log (one file under two names, or
    standard output redirected to it): the rename, or the lines, would destroy its
    entries once the run's own is appended."""
    try:
        st = os.fstat(sys.stdout.fileno()) if output == "-" else os.stat(output)
        return os.path.samestat(st, os.stat(audit))
    except (OSError, ValueError):
        return output != "-" and os.path.realpath(output) == os.path.realpath(audit)


def _ranged_input(src: IO[bytes], path: str) -> str | int | None:
    """Where workers can read their share of the input themselves: an uncompressed file,
    or standard input redirected from one (``< traces.jsonl``; the workers' own standard
    input is closed). Where workers are forked, a duplicate of the descriptor ``src``
    reads (the very file opened, even if renamed or replaced during the run), which they
    inherit; elsewhere, the file's path. None: the input is a stream (a pipe, gzip), and
    blocks are sent to the workers."""
    if isinstance(src, gzip.GzipFile):
        return None
    try:
        if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
            return None
    except (OSError, ValueError, io.UnsupportedOperation):
        return None
    if can_inherit_descriptors():
        return os.dup(src.fileno())
    return None if path == "-" else path


def _read(items: Iterator[T], name: str) -> Iterator[T]:
    """The input's blocks; a read failure (I/O, corrupt or truncated .gz) is a StreamError."""
    try:
        yield from items
    except (OSError, EOFError, zlib.error) as e:
        why = getattr(e, "strerror", None) or ("truncated" if isinstance(e, EOFError)
                                                 else "corrupt compressed data")
        raise StreamError(f"{'standard input' if name == '-' else name}: cannot read input "
                          f"({why})") from None


# -- keygen -------------------------------------------------------------------------------
_KEYGEN_TEXT = (
    "print a new random master key",
         "Print a new random 256-bit master key on stdout (and its key id on stderr). Store "
         f"it as a secret: in ${ENV_VAR}, or in a file only its owner can read "
         "(--output writes one with mode 600). Anyone holding it can re-create pseudonyms "
         "and reverse encrypted fields.",
         "example:\n  pseudonym keygen --output /run/secrets/pseudonym.key\n"
         f"  export {ENV_VAR}=\"$(pseudonym keygen)\"")


def _keygen_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", "-o", help="write the key to this new file (mode 600)")


def _keygen(a: argparse.Namespace) -> int:
    key = MasterKey.generate()
    if a.output:
        _write_key(a.output, key.text)
    else:
        print(key.text, flush=True)
    print(f"key id: {key.key_id}", file=sys.stderr)
    return EXIT_OK


def _write_key(path: str, text: str) -> None:
    """A new file (mode 600) holding the key. A write that fails removes the file: a
    truncated key would only be refused, by every command and by the next keygen."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise PseudonymError(f"{path}: already exists; not overwriting a key") from None
    except OSError as e:
        raise StreamError(f"{path}: cannot write the key ({e.strerror})") from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
    except OSError as e:
        with suppress(OSError):
            os.unlink(path)
        raise StreamError(f"{path}: cannot write the key ({e.strerror})") from None


# -- schema -------------------------------------------------------------------------------
_SCHEMA_TEXT = (
    "print the JSON Schema of policy files",
         "Print the JSON Schema (draft 2020-12) of policy files, for editors that validate "
         "YAML or JSON as it is typed.",
         "example (VS Code + YAML extension):\n  pseudonym schema > policy.schema.json\n"
         "  # then, first line of a policy: # yaml-language-server: $schema=policy.schema.json")


def _schema_args(p: argparse.ArgumentParser) -> None:
    pass


def _schema(a: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2))
    return EXIT_OK


# -- audit --------------------------------------------------------------------------------
_AUDIT_TEXT = (
    "work with an audit log",
         "Audit log commands. 'verify' checks the hash chain (and HMACs, given the audit "
         "key): exit 0 when intact, 1 naming the first broken entry. It prints the last "
         "entry's SHA-256: keep it outside the pipeline, and give it back with --anchor to "
         "catch the removal of the last entries, which the chain alone cannot show.",
         "examples:\n  pseudonym audit verify audit.jsonl\n"
         "  pseudonym audit verify audit.jsonl --anchor /mnt/dpo/audit-last.jsonl\n"
         "  xargs -n 1 pseudonym audit verify audit.jsonl --anchor < /mnt/dpo/audit-hashes.txt\n\n"
         "Keep the copies where those who run the pipeline cannot change or remove them; "
         "if the pipeline sends them itself, verify against every one (the last one sent may "
         "be of a log cut since).")


def _audit_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="audit_command", required=True, metavar="{verify,report}")
    v = sub.add_parser("verify", help="verify an audit log's chain",
                       description="Verify the hash chain of an audit log and, with the audit "
                       "key, every entry's HMAC; with --anchor, that the log still holds the "
                       "entry kept outside the pipeline. When it verifies, print the last "
                       "entry's SHA-256, to keep.")
    v.add_argument("file", help="audit log (JSON lines)")
    v.add_argument("--audit-key-file", help=f"audit key (default: ${AUDIT_KEY_ENV}, if set)")
    v.add_argument("--anchor", metavar="COPY",
                   help="a copy of an entry kept outside the pipeline (after each run, the "
                   "last): its SHA-256 (64 hex digits, as this command prints it), or a file "
                   "holding its line or that hash, - for standard input. Exit 1 unless the "
                   "log holds that entry among its verified ones; entries may follow it")
    r = sub.add_parser("report", help="summarise an audit log for the DPO",
                       description="Summarise an audit log: runs by policy, version and key "
                       "id, records read/written/rejected, lookups and re-identifications "
                       "with their reasons, and whether the chain verifies (exit 1 if not).")
    cli_dpo.report_args(r)


def _audit(a: argparse.Namespace) -> int:
    if a.audit_command == "report":
        return cli_dpo.report(a)
    result = verify(a.file, load_audit_key(a.audit_key_file),
                    _anchor(a.anchor) if a.anchor is not None else None)
    print(f"{a.file}: {result}", file=sys.stdout if result.ok else sys.stderr)
    if result.last_hash is not None:
        print(f"{a.file}: last entry {result.entries}, sha256 {result.last_hash}")
    return EXIT_OK if result.ok else EXIT_REJECTED


def _anchor(value: str) -> Anchor:
    """``--anchor``: an entry's SHA-256 as given, or the file (``-``: standard input)
    holding the copy."""
    if value == "-":
        return Anchor.parse(sys.stdin.buffer.read(), "standard input")
    if SHA256_HEX.fullmatch(value):
        return Anchor.parse(value, "--anchor")
    if not value.strip():
        raise PseudonymError("--anchor: empty; give an entry's SHA-256 (64 hex digits) or a "
                             "file holding the copy")
    try:
        data = Path(value).read_bytes()
    except OSError as e:
        if value.lstrip().startswith("{"):  # the line itself: a lookup's reason may name someone
            raise PseudonymError("--anchor: an entry's line given in place of a file naming "
                                 "the copy; keep it in a file and give the file's name, or "
                                 "give it on standard input with --anchor -") from None
        raise PseudonymError(f"--anchor: {value}: neither an entry's SHA-256 (64 hex digits) "
                             f"nor a file that can be read ({e.strerror})") from None
    return Anchor.parse(data, value)


COMMANDS: dict[str, Command] = {
    "anonymise": Command(*_ANONYMISE_TEXT, _anonymise_args, _anonymise),
    "keygen": Command(*_KEYGEN_TEXT, _keygen_args, _keygen),
    "check": Command(*cli_dpo.CHECK_TEXT, cli_dpo.check_args, cli_dpo.check),
    "schema": Command(*_SCHEMA_TEXT, _schema_args, _schema),
    "audit": Command(*_AUDIT_TEXT, _audit_args, _audit),
    "explain": Command(*cli_dpo.EXPLAIN_TEXT, cli_dpo.explain_args, cli_dpo.explain),
    "diff": Command(*cli_dpo.DIFF_TEXT, cli_dpo.diff_args, cli_dpo.diff),
    "lookup": Command(*cli_dpo.LOOKUP_TEXT, cli_dpo.lookup_args, cli_dpo.lookup),
    "reidentify": Command(*cli_dpo.REIDENTIFY_TEXT, cli_dpo.reidentify_args,
                          cli_dpo.reidentify),
}


# -- main ---------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="pseudonym",
        description="Pseudonymise learning traces (xAPI, Open edX) according to a policy "
                    "a DPO can read, with a tamper-evident audit log.",
        epilog="Run 'pseudonym COMMAND --help' for a command's options.")
    top.add_argument("--version", action="version", version=f"pseudonym {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, c in COMMANDS.items():
        p = sub.add_parser(name, help=c.help, description=c.description, epilog=c.epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        c.add_args(p)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)  # a SIGTERM may come while it runs, too
        return COMMANDS[args.command].run(args)
    except StreamError as e:
        err(str(e))
        return EXIT_IO
    except PseudonymError as e:
        err(str(e))
        return EXIT_USAGE
    except KeyboardInterrupt as e:
        err(str(e) or "interrupted; no output file was published")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_OK
    except OSError as e:  # standard output closed, say (files are StreamErrors already)
        err(f"cannot write ({e.strerror})")
        return EXIT_IO
    except Exception as e:  # never a traceback that might quote a value
        if os.environ.get("PSEUDONYM_DEBUG"):
            traceback.print_exc()
        err(f"internal error ({type(e).__name__}); set PSEUDONYM_DEBUG=1 for details")
        return EXIT_INTERNAL


def _quiet_stdout() -> None:
    """After a closed pipe downstream, keep Python from complaining at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class _Interrupted(KeyboardInterrupt):
    """An interruption that says what became of the output."""


class _ClosedOutput(io.RawIOBase):
    """Standard output the shell closed (``>&-``): writing to it fails as it would have."""

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))


class _Diagnostics(io.RawIOBase):
    """Standard error, best effort: a reader gone or a full disk loses the lines but never
    stops the run. Its failure would pass for the output's (a BrokenPipeError is taken for
    standard output closing: exit 0, nothing published, a failed check or verification
    passed)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return os.isatty(self.fd)

    def fileno(self) -> int:
        return self.fd

    def write(self, b: Any) -> int:
        with suppress(OSError):
            return os.write(self.fd, b)
        return len(b)


def _stand_in_for_closed_streams() -> None:
    """Started with descriptor 0, 1 or 2 closed, Python leaves ``sys.stdout`` (...) None,
    and the next file opened would take the descriptor: whatever then goes to standard
    output would go into it. The descriptors get ``/dev/null``; standard output fails
    when written to (so a result is never lost silently), standard error is silenced."""
    closed = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.append(fd)
    for fd in closed:
        if os.open(os.devnull, os.O_RDWR) != fd:  # takes the lowest free descriptor
            break
    if sys.stdout is None:
        sys.stdout = io.TextIOWrapper(io.BufferedWriter(_ClosedOutput()), encoding="utf-8")


def _best_effort_stderr() -> None:
    """Standard error through ``_Diagnostics`` (descriptor 2 is open by now)."""
    sys.stderr = io.TextIOWrapper(io.BufferedWriter(_Diagnostics(2)),
                                  encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                                  errors="backslashreplace", line_buffering=True)


def entry() -> None:
    """The console command. Everything it writes is flushed and closed (outputs are
    fsynced and renamed, the audit entry written) before ``main`` returns, so it ends with
    ``os._exit``: tearing down the interpreter (freeing every object one by one) would add
    tens of milliseconds to every run and could not lose anything."""
    signal.signal(signal.SIGTERM, _terminate)
    if hasattr(signal, "SIGHUP"):  # a closed terminal: clean up (temporary files) as well
        signal.signal(signal.SIGHUP, _terminate)
    _stand_in_for_closed_streams()
    _best_effort_stderr()
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            if code == EXIT_OK:
                code = EXIT_IO
    os._exit(code)
