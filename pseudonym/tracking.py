"""Open edX ``tracking.log`` lines: the JSON event after a logger prefix.

Open edX's tracking logger writes lines such as
``2024-01-02 03:04:05,678 INFO 123 [tracking] [user 6] [ip 172.18.0.1] logger.py:41 - {...}``.
The prefix holds a user id and an IP address. ``strip_logger_prefix`` cuts it off before
parsing, so it never reaches the output; it is never quoted in errors either (a bad line
is reported by number and kind only).
"""

from __future__ import annotations

SEPARATOR = b" - {"


def strip_logger_prefix(raw: bytes) -> bytes | None:
    """The JSON part of a prefixed line, or None when the line has no logger prefix.

    A line whose first non-blank byte is ``{`` or ``[`` is plain JSON and has none.
    """
    head = raw.lstrip()[:1]
    if head in (b"{", b"["):
        return None
    cut = raw.find(SEPARATOR)
    if cut == -1:
        return None
    return raw[cut + 3:]
