"""generalise: keep a coarser value, so that analytics keeps its shape but not the detail."""

from __future__ import annotations

import ipaddress
import math
from datetime import UTC, datetime
from fractions import Fraction
from itertools import pairwise
from typing import Any, Literal

from pydantic import Field, model_validator

from .base import FULL_PREFIX, ActionError, BuildContext, Options, action

Unit = Literal["second", "minute", "hour", "day", "month", "year"]
_ZERO = {"second": {"microsecond": 0},
         "minute": {"second": 0, "microsecond": 0},
         "hour": {"minute": 0, "second": 0, "microsecond": 0},
         "day": {"hour": 0, "minute": 0, "second": 0, "microsecond": 0}}
_ZERO["month"] = {**_ZERO["day"], "day": 1}
_ZERO["year"] = {**_ZERO["month"], "month": 1}


class GeneraliseOptions(Options):
    kind: Literal["timestamp", "ip", "number"]
    """What the value is: an ISO 8601 or epoch timestamp, an IP address, or a number."""
    unit: Unit | None = None
    """timestamp: truncate to this unit."""
    ipv4_prefix: int = Field(24, ge=0, le=32)
    """ip: bits of an IPv4 address kept (the rest are zeroed)."""
    ipv6_prefix: int = Field(48, ge=0, le=128)
    """ip: bits of an IPv6 address kept (the rest are zeroed)."""
    width: float | None = Field(None, gt=0)
    """number: bucket width; the value becomes its bucket's lower bound."""
    origin: float = 0
    """number: where the buckets of width start."""
    bounds: list[float] | None = None
    """number: ascending bucket bounds; the value becomes a label such as "18-25"."""

    @property
    def unchanged(self) -> str | None:
        if self.kind == "ip" and (self.ipv4_prefix == 32 or self.ipv6_prefix == 128):
            return FULL_PREFIX
        return None

    @model_validator(mode="after")
    def _check(self) -> GeneraliseOptions:
        if self.kind == "timestamp" and self.unit is None:
            raise ValueError("a timestamp generalisation needs a unit")
        if self.kind != "timestamp" and self.unit is not None:
            raise ValueError("unit applies to kind: timestamp only")
        if self.kind == "number":
            if (self.width is None) == (self.bounds is None):
                raise ValueError("a number generalisation needs exactly one of width, bounds")
            if self.bounds is not None and (not self.bounds or any(
                    a >= b for a, b in pairwise(self.bounds))):
                raise ValueError("bounds must be a non-empty ascending list")
        elif self.width is not None or self.bounds is not None:
            raise ValueError("width and bounds apply to kind: number only")
        return self


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else x


def _decimal(x: float) -> Fraction:
    """A number as its JSON text says it: buckets are counted in decimal, since in binary
    0.3 / 0.1 is 2.9999999999999996, which put 0.3 in the bucket of 0.2 (and 0.7 in that
    of 0.6000000000000001)."""
    return Fraction(repr(x)) if type(x) is float else Fraction(x)


def _timestamp(unit: str):
    zero = _ZERO[unit]

    def run(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            try:
                dt = datetime.fromisoformat(value)
            except ValueError:
                raise ActionError("value is not an ISO 8601 timestamp") from None
            out = dt.replace(**zero)
            if len(value) <= 10:
                return out.date().isoformat()
            text = out.isoformat(timespec="seconds")
            if value.endswith(("Z", "z")) and text.endswith("+00:00"):
                text = text[:-6] + "Z"
            return text
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                dt = datetime.fromtimestamp(value, UTC).replace(**zero)
            except (OverflowError, OSError, ValueError):
                raise ActionError("epoch seconds out of the range of dates") from None
            return int(dt.timestamp())
        raise ActionError("value is not a timestamp (ISO 8601 text or epoch seconds)")

    return run


def _ip(v4: int, v6: int):
    def run(value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ActionError("value is not an IP address")
        try:
            ip = ipaddress.ip_address(value.strip())
        except ValueError:
            raise ActionError("value is not an IP address") from None
        prefix = v4 if ip.version == 4 else v6
        return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)

    return run


def _number(width: float | None, origin: float, bounds: list[float] | None):
    def check(value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ActionError("value is not a number")
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an integer beyond a double: finite, and too large
            raise ActionError("number too large to generalise") from None
        if not finite:
            raise ActionError("value is not a finite number")
        return True

    if width is not None:
        w, o = _decimal(width), _decimal(origin)
        scale = math.lcm(w.denominator, o.denominator)
        step, start = int(w * scale), int(o * scale)  # whole numbers of 1/scale

        def by_width(value: Any) -> Any:
            if value is None:
                return None
            check(value)
            try:
                q = (value - origin) / width
                k = math.floor(q)
                if min(q - k, k + 1 - q) <= 1e-12 * ((abs(value) + abs(origin)) / width + 1):
                    k = (_decimal(value) * scale - start) // step  # near a bound: in decimal
                return _num((k * step + start) / scale)
            except (OverflowError, ValueError):  # beyond a double, or an infinite bucket
                raise ActionError("number too large to bucket") from None
        return by_width

    edges = [_num(b) for b in bounds or []]

    def by_bounds(value: Any) -> Any:
        if value is None:
            return None
        check(value)
        if value < edges[0]:
            return f"<{edges[0]}"
        for lo, hi in pairwise(edges):
            if value < hi:
                return f"{lo}-{hi}"
        return f">={edges[-1]}"

    return by_bounds


@action("generalise", GeneraliseOptions, linkable=True,
        summary="Replace the value with a coarser one: a timestamp truncated to a unit "
                "(format kept), an IP address to its network prefix, a number to its "
                "bucket. null stays null; any other type rejects the record.")
def generalise(options: GeneraliseOptions, ctx: BuildContext):
    if options.kind == "timestamp":
        return _timestamp(options.unit or "second")
    if options.kind == "ip":
        return _ip(options.ipv4_prefix, options.ipv6_prefix)
    return _number(options.width, options.origin, options.bounds)
