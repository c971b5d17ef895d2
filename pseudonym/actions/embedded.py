"""json: let the rules below a field apply inside JSON text that the field holds."""

from __future__ import annotations

from typing import Literal

from .base import REMOVE, BuildContext, Constant, Options, action


class JsonOptions(Options):
    otherwise: Literal["drop", "redact"] = "redact"
    """What a value that is not a JSON object or array (in text or as is) becomes."""
    value: Constant = ""
    """The constant ``redact`` puts instead (default: empty text)."""


@action("json", JsonOptions, decode=True,
        summary="For a field that may hold JSON as text (Open edX `event`): the rules "
                "whose paths go below it apply inside the decoded object or array, which "
                "is written back as JSON text; an object or array is treated in place. "
                "Anything else is dropped or replaced by a constant (`otherwise`).")
def json_(options: JsonOptions, ctx: BuildContext):
    if options.otherwise == "drop":
        return lambda value: REMOVE
    constant = options.value
    return lambda value: constant
