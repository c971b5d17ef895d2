"""keep, drop, redact: the actions that need no key."""

from __future__ import annotations

from typing import Any

from .base import REMOVE, Constant, Options, action


@action("keep", structural="keep", linkable=True,
        summary="Keep the value unchanged. On an object or array: keep what is inside "
                "unless a more specific rule says otherwise.")
def keep(options: Any, ctx: Any) -> None:
    return None


@action("drop", structural="drop",
        summary="Remove the field. On an object or array: remove what is inside unless "
                "a more specific rule keeps or transforms it.")
def drop(options: Any, ctx: Any) -> None:
    return None


class RedactOptions(Options):
    value: Constant = "[REDACTED]"
    """The constant that replaces the value (any JSON value)."""


@action("redact", RedactOptions,
        summary="Replace the value with a constant named by the rule (default "
                "\"[REDACTED]\").")
def redact(options: RedactOptions, ctx: Any):
    constant = options.value

    def run(value: Any) -> Any:
        return constant

    return run


__all__ = ["REMOVE", "drop", "keep", "redact"]
