"""keep, drop, redact: the actions that need no key."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from .base import REMOVE, ActionError, Constant, Options, action

ScalarType = Literal["text", "number", "integer", "boolean", "null"]
_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "text": (str,), "number": (int, float), "integer": (int,), "boolean": (bool,),
    "null": (type(None),)}


class KeepOptions(Options):
    type: tuple[ScalarType, ...] | None = Field(default=None, min_length=1)
    """Keep the value only if it is of one of these types (``text``, ``number``,
    ``integer``, ``boolean``, ``null``; one name or a list); any other value, an object
    say, rejects the record. For fields that hold a plain value by nature (ids,
    timestamps): without it, an object found there would be kept whole, whatever it
    holds. Default: any value."""

    @field_validator("type", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


def json_type(value: Any) -> str:
    """A value's JSON type, as errors name it (never the value)."""
    names = {str: "text", bool: "a boolean", int: "a number", float: "a number",
             dict: "an object", list: "an array", type(None): "null"}
    return names.get(type(value), "a value of another type")


@action("keep", KeepOptions, structural="keep", linkable=True,
        summary="Keep the value unchanged. On an object or array: keep what is inside "
                "unless a more specific rule says otherwise. With `type`, keep only a "
                "value of that type: any other rejects the record.")
def keep(options: KeepOptions, ctx: Any):
    if options.type is None:
        return None
    allowed = frozenset(t for name in options.type for t in _PYTHON_TYPES[name])
    expected = " or ".join(options.type)

    def run(value: Any) -> Any:
        if type(value) not in allowed:
            raise ActionError(f"expected {expected}, found {json_type(value)}")
        return value

    run.keep_types = allowed  # type: ignore[attr-defined]  # the plan checks inline
    return run


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
