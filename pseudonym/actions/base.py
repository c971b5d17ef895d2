"""The action registry: one name, one options model, one builder.

An action is a small pure function, value in, new value (or ``REMOVE``) out. Its builder
runs once when a policy is compiled: it validates nothing at run time, derives keys once,
and returns the function the engine calls per value. ``keep`` and ``drop`` are
*structural*: on an object or array they set the default for what is inside.
"""

from __future__ import annotations

import ast
import inspect
import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, JsonValue

from ..errors import KeyRingError

if TYPE_CHECKING:
    from ..crypto import Cipher, Hasher
    from ..keys import KeyRing


class _Remove:
    __slots__ = ()

    def __repr__(self) -> str:
        return "REMOVE"

    def __reduce__(self) -> str:
        return "REMOVE"


REMOVE: Any = _Remove()
"""Returned by an action to remove the field it was given."""


class ActionError(Exception):
    """An action cannot treat a value. The reason must never contain the value."""


class Options(BaseModel):
    """Base of every action's options: unknown options are refused; each option's
    docstring is its description (in the JSON Schema and the actions reference)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @property
    def keyed(self) -> bool:
        """Whether these options make an action that is not keyed by nature use the key
        (``scrub`` writing pseudonyms)."""
        return False

    @property
    def unchanged(self) -> str | None:
        """Why these options make the action give its values back as they came, if they
        do (``check`` then counts the rule as ``keep``)."""
        return None

    @classmethod
    def option_docs(cls) -> dict[str, str]:
        """Each option's docstring, read from the source when documentation asks for it.

        pydantic's ``use_attribute_docstrings`` reads them when the class is made, which
        cost every start-up (each command, each Dask worker) about 17 ms."""
        found: dict[str, str] = {}
        for klass in reversed(cls.__mro__[:cls.__mro__.index(Options)]):
            found |= _attribute_docstrings(klass)
        return {k: v for k, v in found.items() if k in cls.model_fields}

    @classmethod
    def described_schema(cls) -> dict[str, Any]:
        """The options' JSON Schema, each described by its docstring."""
        out = cls.model_json_schema()
        props = out["properties"]
        for name, doc in cls.option_docs().items():
            props[name] = dict(sorted({"description": doc, **props[name]}.items()))
        return out


def _attribute_docstrings(klass: type) -> dict[str, str]:
    try:
        source = inspect.getsource(klass)
    except (OSError, TypeError):  # installed without sources: options go undescribed
        return {}
    body = ast.parse(textwrap.dedent(source)).body[0].body
    return {node.target.id: inspect.cleandoc(doc.value.value)
            for node, doc in pairwise(body)
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
            and isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)
            and isinstance(doc.value.value, str)}


def _finite(value: JsonValue) -> JsonValue:
    todo = [value]
    while todo:
        v = todo.pop()
        if type(v) is float and not math.isfinite(v):
            raise ValueError("NaN and infinities are not JSON values")
        if isinstance(v, dict):
            todo += v.values()
        elif isinstance(v, list):
            todo += v
    return value


Constant = Annotated[JsonValue, AfterValidator(_finite)]
"""A constant a rule writes into records: any JSON value. YAML's ``.nan`` and ``.inf``
are refused: no JSON writer can write them (orjson would write ``null``)."""

ValueFn = Callable[..., Any]


def scalar_identifiers(value: Any) -> list[str]:
    """A scalar's text as an identifier (numbers too: a user id 42 shows as "42")."""
    t = type(value)
    if t is str:
        return [value] if value.strip() else []
    if t is int:
        return [str(value)]
    if t is dict:
        return [s for v in value.values() for s in scalar_identifiers(v)]
    if t is list:
        return [s for v in value for s in scalar_identifiers(v)]
    return []


@dataclass
class BuildContext:
    """What a builder may use: the policy's domain and, for keyed actions, the key ring."""

    domain: str
    keys: KeyRing | None = None
    key_uses: set[tuple[str, str]] = field(default_factory=set)

    def _ring(self, action: str) -> KeyRing:
        if self.keys is None:
            raise KeyRingError(f"action {action!r} needs a key: pass keys=KeyRing.from_env() "
                               "(CLI: set PSEUDONYM_KEY or give --key-file)")
        return self.keys

    def hasher(self, action: str) -> Hasher:
        h = self._ring(action).hasher(self.domain)
        self.key_uses.add((h.key_id, self.domain))
        return h

    def cipher(self, action: str) -> Cipher:
        c = self._ring(action).cipher(self.domain)
        self.key_uses.add((c.key_id, self.domain))
        return c


@dataclass(frozen=True)
class Action:
    name: str
    options: type[Options]
    build: Callable[[Any, BuildContext], ValueFn | None]
    summary: str
    structural: Literal["keep", "drop"] | None = None
    keyed: bool = False
    reversible: bool = False
    linkable: bool = False
    record_aware: bool = False
    """The function takes ``(value, RecordContext)``: it may use the record's identifiers."""
    decode: bool = False
    """The action decodes embedded JSON for the rules below it (see ``plan``)."""
    identifies: Callable[[Any], list[str]] | None = None
    """The identifiers a value this action treats holds; set for actions whose fields are
    identifying by nature (agents, usernames, user ids)."""

    def needs_key(self, options: Options) -> bool:
        """Whether a rule of this action with these options uses the key."""
        return self.keyed or options.keyed


REGISTRY: dict[str, Action] = {}


FULL_PREFIX = "a full-length prefix keeps every bit of the address"


class NoOptions(Options):
    pass


def action(name: str, options: type[Options] = NoOptions, *, summary: str,
           structural: Literal["keep", "drop"] | None = None, keyed: bool = False,
           reversible: bool = False, linkable: bool = False, record_aware: bool = False,
           decode: bool = False, identifies: Callable[[Any], list[str]] | None = None):
    """Register a builder ``build(options, ctx) -> value function`` under ``name``.

    ``linkable``: equal inputs give equal outputs, so records stay linkable through it.
    ``record_aware``, ``decode``, ``identifies``: see ``Action``.
    """

    def register(build: Callable[[Any, BuildContext], ValueFn | None]):
        if name in REGISTRY:
            raise RuntimeError(f"action {name!r} registered twice")
        REGISTRY[name] = Action(name, options, build, summary, structural, keyed,
                                reversible, linkable, record_aware, decode, identifies)
        return build

    return register
