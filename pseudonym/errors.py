"""Errors the library declares.

Every message names a place (file, line, rule, record number) and a reason, and never
carries a value taken from a trace or a key: they are safe to log.
"""

from __future__ import annotations


class PseudonymError(Exception):
    """Base class of every error the library raises on purpose."""


class PolicyError(PseudonymError):
    """A policy file or policy value is invalid; raised when the policy loads."""

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None,
                 rule: int | None = None, field: str | None = None) -> None:
        self.reason = message
        self.source = source
        self.line = line
        self.rule = rule
        self.field = field
        self.problems: list[PolicyError] = [self]
        where = []
        if source:
            where.append(source + (f":{line}" if line else ""))
        elif line:
            where.append(f"line {line}")
        if rule is not None:
            where.append(f"rule {rule}")
        if field:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class KeyRingError(PseudonymError):
    """A key is missing, malformed, too short or unknown (never shows key material)."""


class RecordError(PseudonymError):
    """A record could not be fully processed, so it was not emitted (fail closed).

    ``position`` is the 1-based record number (the line number for JSON lines input);
    ``kind`` is a short machine-readable error kind; ``reason`` explains without values.
    """

    def __init__(self, kind: str, reason: str, *, position: int | None = None,
                 rule: int | None = None) -> None:
        self.kind = kind
        self.reason = reason
        self.position = position
        self.rule = rule
        super().__init__(self._text())

    def _text(self) -> str:
        where = f"record {self.position}" if self.position is not None else "record"
        if self.rule is not None:
            where += f", rule {self.rule}"
        return f"{where}: {self.kind}: {self.reason}"

    def __reduce__(self) -> tuple:
        """Picklable with its fields, so it can come back from a worker process."""
        return (_record_error, (type(self), self.kind, self.reason, self.position, self.rule))

    def at(self, position: int) -> RecordError:
        """The same error, placed at a record number."""
        self.position = position
        self.args = (self._text(),)
        return self


def _record_error(cls: type[RecordError], kind: str, reason: str, position: int | None,
                  rule: int | None) -> RecordError:
    return cls(kind, reason, position=position, rule=rule)


class StreamError(PseudonymError):
    """Reading the input or writing the output failed (a full disk, a truncated file)."""


class AuditError(PseudonymError):
    """The audit log cannot be written or read."""
