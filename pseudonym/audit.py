"""The audit log the DPO keeps: one JSON line per run, chained so tampering shows.

Each entry carries ``seq``, its 1-based position, ``prev``, the SHA-256 of the previous
line (64 zeros for the first), and, when an audit key is given, ``hmac``: HMAC-SHA-256 of
the entry under a key derived from that audit key. The chain alone catches edits to past
entries; the HMAC also catches a forger who rewrites the whole chain. Entries hold counts,
path shapes, key ids and record numbers, never a value from a trace or a key.

A log keeps one audit key, or none, from its first entry to its last, and a failed write
leaves it as it was: anything else would leave it unverifiable for good.

Neither shows that the last entries were removed: verifying against an ``Anchor``, a copy
of an entry (or of its hash) kept outside the pipeline, does.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .canonical import dumps
from .crypto import hmac_sha256
from .errors import AuditError
from .keys import MasterKey

if TYPE_CHECKING:
    from .engine import Plan, RunStats

GENESIS = "0" * 64
AUDIT_KEY_ENV = "PSEUDONYM_AUDIT_KEY"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _no_constant(text: str) -> Any:
    raise ValueError("NaN or Infinity")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number beyond floating point")
    return value


def _once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("a name given twice")
    return out


def load_entry(line: bytes, names_once: bool = False) -> Any:
    """One line as JSON, refusing NaN, Infinity and numbers beyond a float, which no entry
    holds and whose canonical form cannot be written (so neither chained nor sealed); with
    ``names_once``, a name given twice in an object too (JSON keeps its last value, so the
    text would show what the entry does not say). Raises ValueError or RecursionError."""
    return json.loads(line, parse_constant=_no_constant, parse_float=_finite,
                      object_pairs_hook=_once if names_once else None)


def entry_hash(line: bytes) -> str:
    """The SHA-256 of an entry's line: the next entry's ``prev``, and what to keep outside
    the pipeline to verify the log against later."""
    return hashlib.sha256(line).hexdigest()


def _mac_key(key: MasterKey | None) -> bytes | None:
    return key.derive("pseudonym audit hmac v1") if key is not None else None


def _entry_hmac(mac_key: bytes, entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hmac"}
    return hmac_sha256(mac_key, dumps(body).encode("utf-8")).hex()


def _seal(entry: dict[str, Any], seq: int, prev: str, mac_key: bytes | None) -> bytes:
    body = {k: v for k, v in entry.items() if k not in ("seq", "prev", "hmac")}
    body["seq"] = seq
    body["prev"] = prev
    if mac_key is not None:
        body["hmac"] = _entry_hmac(mac_key, body)
    return dumps(body).encode("utf-8")


def _last_line(f: Any) -> bytes | None:
    end = f.seek(0, os.SEEK_END)
    if end == 0:
        return None
    pos, buf = end, b""
    while pos > 0:
        step = min(65536, pos)
        pos -= step
        f.seek(pos)
        buf = f.read(step) + buf
        stripped = buf.rstrip(b"\n")
        i = stripped.rfind(b"\n")
        if i >= 0:
            return stripped[i + 1:]
    return buf.rstrip(b"\n")


class AuditLog:
    """An append-only audit log file. Use ``AuditLog.open(path)`` as a context manager."""

    def __init__(self, path: str | os.PathLike[str], key: MasterKey | None = None) -> None:
        self.path = Path(path)
        self._mac_key = _mac_key(key)
        self.key_id = key.key_id if key is not None else None
        self.last: dict[str, Any] | None = None

    @classmethod
    def open(cls, path: str | os.PathLike[str], key: MasterKey | None = None) -> AuditLog:
        log = cls(path, key)
        try:
            log.path.parent.mkdir(parents=True, exist_ok=True)
            log.path.touch(exist_ok=True)
        except OSError as e:
            raise AuditError(f"{log.path}: cannot open audit log ({e.strerror})") from None
        try:
            with open(log.path, "rb") as f:
                fcntl.flock(f, fcntl.LOCK_SH)
                log._next_seq(_last_line(f))
        except OSError as e:
            raise AuditError(f"{log.path}: cannot read audit log ({e.strerror})") from None
        return log

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        pass

    def _next_seq(self, last: bytes | None) -> int:
        """The next entry's ``seq``, refusing an entry that would leave the log unverifiable:
        one without an HMAC after entries with one, or under another key than theirs."""
        if last is None:
            return 1
        try:
            entry = load_entry(last)
        except (ValueError, RecursionError):
            entry = None
        if not isinstance(entry, dict) or type(entry.get("seq")) is not int:
            raise AuditError(f"{self.path}: the audit log's last entry is damaged; run "
                             "'pseudonym audit verify'")
        seq = entry["seq"]
        if "hmac" in entry and self._mac_key is None:
            raise AuditError(f"{self.path}: its entries carry an HMAC and no audit key was given "
                             f"(--audit-key-file or ${AUDIT_KEY_ENV}); an entry without one "
                             "would leave the log unverifiable")
        if self._mac_key is not None:
            if "hmac" not in entry:
                raise AuditError(f"{self.path}: its entries carry no HMAC, so an audit key "
                                 "cannot be used with it (the log would no longer verify); "
                                 "start a new log to use an audit key")
            if entry["hmac"] != _entry_hmac(self._mac_key, entry):
                raise AuditError(f"{self.path}: the audit key given does not verify its last "
                                 f"entry (entry {seq}): another key, or the entry was changed; "
                                 "give the key the log was written with, or start a new log "
                                 "for a new key")
        return seq + 1

    def append(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Append one entry, chained to the last line, under an exclusive file lock.

        A write that fails (full disk, file size limit, failed fsync) is cut off again
        before the lock is released: a partial last line would make every later append
        refuse the log. The error is still raised, so that the run fails closed.
        """
        try:
            with open(self.path, "a+b", buffering=0) as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                try:
                    line = self._append_locked(f, entry)
                finally:
                    fcntl.flock(f, fcntl.LOCK_UN)
        except OSError as e:
            raise AuditError(f"{self.path}: cannot write audit entry ({e.strerror})") from None
        self.last = json.loads(line)
        return self.last

    def _append_locked(self, f: Any, entry: dict[str, Any]) -> bytes:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        last = _last_line(f)
        prev = GENESIS if last is None else entry_hash(last)
        line = _seal(entry, self._next_seq(last), prev, self._mac_key)
        data = memoryview(line + b"\n")
        try:
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        except OSError as e:
            try:
                os.ftruncate(fd, size)
            except OSError:
                raise AuditError(f"{self.path}: cannot write audit entry ({e.strerror}), and "
                                 "the partial entry could not be removed; run 'pseudonym "
                                 "audit verify'") from None
            with contextlib.suppress(OSError):
                os.fsync(fd)
            raise AuditError(f"{self.path}: cannot write audit entry ({e.strerror}); the log "
                             "was left as it was") from None
        return line

    def refuse_master_keys(self, key_ids: Iterable[str]) -> None:
        """Refuse an audit key that is also a master key in use: whoever runs the pipeline
        holds that key, so its HMACs would prove nothing against them."""
        if self.key_id is not None and self.key_id in set(key_ids):
            raise AuditError(f"{self.path}: the audit key is also a master key in use (key "
                             f"{self.key_id}); the audit key must be another key, held by "
                             "someone other than those who run the pipeline")

    def start(self, plan: Plan) -> Run:
        keys = getattr(plan, "keys", None)
        self.refuse_master_keys([*(keys.key_ids if keys is not None else ()),
                                 *(k for k, _ in plan.key_uses)])
        return Run(self, plan)


class Run:
    """One run in progress; ``finish`` writes its single audit entry."""

    def __init__(self, log: AuditLog, plan: Plan) -> None:
        self.log, self.plan = log, plan
        self.run_id = uuid.uuid4().hex
        self.started = now()
        self.done = False

    def finish(self, stats: RunStats, status: str, **extra: Any) -> dict[str, Any] | None:
        if self.done:
            return None
        self.done = True
        self.log.refuse_master_keys(k for k, _ in self.plan.key_uses)
        entry = {"entry": "run", "run_id": self.run_id, "started": self.started,
                 "ended": now(), "status": status, "library": f"pseudonym {__version__}",
                 "policy": self.plan.policy.describe(),
                 "keys": [{"key_id": k, "domain": d} for k, d in self.plan.key_uses],
                 **stats.to_dict(self.plan), **extra}
        return self.log.append(entry)


@dataclass
class Verification:
    ok: bool
    entries: int
    broken_at: int | None = None
    """1-based line number of the first entry that does not verify; None when every entry
    does but the anchor's is not among them."""
    reason: str = ""
    hmac_checked: bool = False
    last_hash: str | None = None
    """The last entry's hash, to keep outside the pipeline; None unless the log verifies."""
    anchored_at: int | None = None
    """The number of the entry the anchor given is a copy of."""

    def __str__(self) -> str:
        if self.ok:
            how = "hash chain and HMACs" if self.hmac_checked else "hash chain"
            kept = (f"; entry {self.anchored_at} is the one kept elsewhere"
                    if self.anchored_at is not None else "")
            count = "1 entry" if self.entries == 1 else f"{self.entries} entries"
            return f"intact: {count}, {how} verified{kept}"
        if self.broken_at is None:
            return self.reason
        return f"broken at entry {self.broken_at}: {self.reason}"


SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class Anchor:
    """A copy of one entry kept outside the pipeline (after a run, its last): the log must
    still hold it, which the chain alone cannot show once its last entries are removed.
    The whole line also says which entry it is and, with the audit key, whether the copy
    itself was changed; its hash is enough to find it."""

    sha256: str
    line: bytes | None = None
    """The entry's canonical line, when the copy is the whole line."""

    @classmethod
    def parse(cls, copy: str | bytes, where: str = "anchor") -> Anchor:
        """The entry's line as copied (reformatted JSON too: a ticket may re-indent it) or
        its SHA-256 in hex. ``where`` names the copy in errors, which never quote it."""
        data = copy.encode("utf-8", "surrogatepass") if isinstance(copy, str) else copy
        anchor = _one_copy(data)
        if anchor is not None:
            return anchor
        lines = [x for x in data.splitlines() if x.strip()]
        if len(lines) > 1 and all(_one_copy(x) is not None for x in lines):
            raise AuditError(f"{where}: holds {len(lines)} lines; give one entry, the last one "
                             "kept (tail -n 1)")
        raise AuditError(f"{where}: neither a line of the audit log nor an entry's SHA-256 "
                         "(64 hex digits)")

    def _missing_from(self, entries: int, mac_key: bytes | None) -> str:
        """Why a log of ``entries`` verified entries does not hold this one."""
        if self.line is None:
            return (f"no entry has the hash kept elsewhere ({self.sha256}): entries were "
                    "removed from the end of the log, it was rewritten, or the copy is of "
                    "another log")
        entry = json.loads(self.line)
        seq = entry["seq"]
        if mac_key is not None and entry.get("hmac") != _entry_hmac(mac_key, entry):
            return (f"the copy of entry {seq} kept elsewhere does not verify under the "
                    "audit key: it was changed, or is of a log under another key")
        if seq > entries:
            end = f"ends at entry {entries}" if entries else "is empty"
            which = "last entries" if entries else "entries"
            return (f"entry {seq}, kept elsewhere, is missing: the log {end}; its {which} "
                    "were removed, or the copy is of another log")
        return (f"entry {seq} is not the one kept elsewhere: the log was rewritten, or the "
                "copy is of another log")


def _one_copy(data: bytes) -> Anchor | None:
    text = data.strip()
    if SHA256_HEX.fullmatch(text.decode("ascii", "replace")):
        return Anchor(text.decode("ascii").lower())
    try:
        entry = load_entry(text, names_once=True)
        if not isinstance(entry, dict) or type(entry.get("seq")) is not int or entry["seq"] < 1:
            return None
        line = dumps(entry).encode("utf-8")
    except (ValueError, RecursionError, UnicodeEncodeError):
        return None
    return Anchor(entry_hash(line), line)


def split_lines(data: bytes) -> tuple[list[bytes], bool]:
    """The log's lines, numbered as ``verify`` numbers entries, and whether the last one
    is incomplete (no line end)."""
    if data and not data.endswith(b"\n"):
        return data.split(b"\n"), True
    return (data.split(b"\n")[:-1] if data else []), False


def verify(path: str | os.PathLike[str], key: MasterKey | None = None,
           anchor: Anchor | str | bytes | None = None) -> Verification:
    """Check the chain (and the HMACs when ``key`` is given) from the first line on and,
    given an ``anchor`` (an ``Anchor``, or what ``Anchor.parse`` reads), that the log holds
    that entry among its verified ones; later entries may follow it."""
    if anchor is not None and not isinstance(anchor, Anchor):
        anchor = Anchor.parse(anchor)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise AuditError(f"{path}: cannot read audit log ({e.strerror})") from None
    return verify_bytes(data, key, anchor)


def verify_bytes(data: bytes, key: MasterKey | None = None,
                 anchor: Anchor | None = None) -> Verification:
    """``verify`` on the log's content, so that a report reads the log once.

    When an entry does not chain to the one before it, the HMAC decides which to blame:
    an entry whose own HMAC holds was written as it is, so the one before was changed.
    Without the key the chain cannot tell, and the earlier entry is named.
    """
    mac_key = _mac_key(key)
    lines, partial = split_lines(data)
    prev = GENESIS
    anchored_at = None
    for n, line in enumerate(lines, 1):
        if partial and n == len(lines):
            return Verification(False, n - 1, n, "the last entry is incomplete")
        try:
            entry = load_entry(line)
        except (ValueError, RecursionError):
            return Verification(False, n - 1, n, "not a JSON entry")
        if not isinstance(entry, dict):
            return Verification(False, n - 1, n, "not a JSON object")
        if type(entry.get("seq")) is not int or entry["seq"] != n:
            return Verification(False, n - 1, n, "out of sequence: entries before it were "
                                "removed, inserted or reordered")
        sealed = mac_key is None or entry.get("hmac") == _entry_hmac(mac_key, entry)
        if entry.get("prev") != prev:
            if n == 1:
                return Verification(False, 0, 1, "chain broken at the first entry")
            if not sealed:
                return Verification(False, n - 1, n, "HMAC does not match (forged, or another "
                                    "audit key)")
            if mac_key is not None:
                return Verification(False, n - 2, n - 1, f"changed after entry {n} was "
                                    f"written (entry {n}, whose HMAC is valid, no longer "
                                    "chains to it)")
            return Verification(False, n - 2, n - 1, f"changed after entry {n} was written, "
                                f"or entry {n}'s prev was (entry {n} no longer chains to it)")
        if line != dumps(entry).encode("utf-8"):
            return Verification(False, n - 1, n, "the entry was edited")
        if not sealed:
            return Verification(False, n - 1, n, "HMAC does not match (forged, or another "
                                "audit key)")
        prev = entry_hash(line)
        if anchor is not None and prev == anchor.sha256:
            anchored_at = n
    if anchor is not None and anchored_at is None:
        return Verification(False, len(lines), reason=anchor._missing_from(len(lines), mac_key),
                            hmac_checked=mac_key is not None)
    return Verification(True, len(lines), hmac_checked=mac_key is not None,
                        last_hash=prev if lines else None, anchored_at=anchored_at)


def read_entries(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_bytes().splitlines() if line.strip()]
