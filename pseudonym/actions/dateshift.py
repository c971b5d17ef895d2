"""date_shift: move a learner's timestamps by a keyed number of days, the same for all
of that learner's records, so intervals inside one trajectory survive while calendar
dates no longer single anyone out."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import Field, field_validator

from ..canonical import canonical_bytes
from ..paths import INDEX, KEY, parse_path
from .agent import identity
from .base import ActionError, BuildContext, Options, action


class DateShiftOptions(Options):
    days: int = Field(ge=1, le=3650)
    """The offset is a whole number of days in [-days, +days]."""
    learner: str
    """JSONPath of the field that says whose record it is: an xAPI agent ($.actor) or an
    id ($.username); named keys and indices only."""

    @field_validator("learner")
    @classmethod
    def _static(cls, v: str) -> str:
        rp = parse_path(v)
        if rp.alternatives is None or len(rp.alternatives) != 1 or any(
                s.kind not in (KEY, INDEX) for s in rp.alternatives[0]):
            raise ValueError("learner must name one field with keys and indices only")
        return v


def _lookup(record: Any, steps: tuple) -> Any:
    v = record
    for s in steps:
        found = (s.kind == KEY and type(v) is dict and s.value in v) or (
            s.kind == INDEX and type(v) is list and s.value < len(v))
        if found:
            v = v[s.value]
        else:
            return None
    return v


@action("date_shift", DateShiftOptions, keyed=True, record_aware=True,
        summary="Shift a timestamp (ISO 8601 text, format kept, or epoch seconds) by a "
                "keyed whole number of days within ±days, the same for every record of one "
                "learner (read at `learner`). A record without a learner, or text that is "
                "not wholly a timestamp (the part after the date is copied), is rejected.")
def date_shift(options: DateShiftOptions, ctx: BuildContext):
    digest = ctx.hasher("date_shift").digest
    steps = parse_path(options.learner).alternatives[0]  # type: ignore[index]
    span = 2 * options.days + 1
    days = options.days
    memo_key = ("date_shift", options.learner, days)

    def offset(rec: Any) -> int:
        got = rec.memo.get(memo_key)
        if got is None:
            who = _lookup(rec.record, steps)
            ident = identity(who) if type(who) is dict else (
                canonical_bytes(who) if type(who) in (str, int) and str(who) != "" else None)
            if ident is None:
                raise ActionError("the record has no learner identifier to shift dates by")
            d = digest(b"date_shift\x00" + ident)
            got = rec.memo[memo_key] = int.from_bytes(d[:8], "big") % span - days
        return got

    def run(value: Any, rec: Any) -> Any:
        if value is None:
            return None
        t = type(value)
        if t is str:
            try:
                datetime.fromisoformat(value)
                day = date.fromisoformat(value[:10])
            except ValueError:
                raise ActionError("value is not an ISO 8601 timestamp") from None
            if len(value) > 10 and value[10] not in "Tt ":
                raise ActionError("value is not an ISO 8601 timestamp")
            return (day + timedelta(days=offset(rec))).isoformat() + value[10:]
        if t in (int, float) and math.isfinite(value):
            return value + offset(rec) * 86400
        raise ActionError("value is not a timestamp (ISO 8601 text or epoch seconds)")

    return run
