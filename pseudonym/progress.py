"""A one-line progress display for a person watching a terminal: records done, records/s.

It only ever writes to a terminal, so logs, pipes and CI output stay clean; it shows
counts and rates, never anything from a record.
"""

from __future__ import annotations

import time
from typing import TextIO


class Progress:
    """Redraws one stderr line at most every ``interval`` seconds; ``close`` leaves a summary."""

    def __init__(self, stream: TextIO, interval: float = 0.25) -> None:
        self.stream = stream
        self.interval = interval
        self.start = time.monotonic()
        self._next = self.start + interval
        self._shown = False

    @classmethod
    def for_stream(cls, stream: TextIO, quiet: bool) -> Progress | None:
        """A display when ``stream`` is a terminal and not ``quiet``; otherwise None."""
        if quiet:
            return None
        try:
            tty = stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        return cls(stream) if tty else None

    def _line(self, records: int, rejected: int) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        text = f"{records:,} records, {records / elapsed:,.0f} records/s, {elapsed:.1f} s"
        return text + (f", {rejected:,} rejected" if rejected else "")

    def update(self, records: int, rejected: int = 0) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.interval
        self.stream.write("\r\x1b[K" + self._line(records, rejected))
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        """Wipe the line, so that a message can be printed on a clean one."""
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False
            self._next = 0.0

    def close(self, records: int, rejected: int = 0) -> None:
        self.stream.write("\r\x1b[K" + self._line(records, rejected) + "\n")
        self.stream.flush()
