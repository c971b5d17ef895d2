"""Rule paths: JSONPath parsed once with jsonpath-ng, then turned into plain steps.

Paths made of named keys, ``[*]``/``.*`` (every member of an object or array), indices
``[0]``, unions ``['a','b']`` and recursive descent ``..`` become step sequences that the
compiled plan follows with dict look-ups. Anything else (filters, slices, negative
indices) stays a jsonpath-ng expression, evaluated per record: correct but slower.
Named operators and arithmetic, which find computed values rather than fields, are
refused.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from functools import lru_cache
from itertools import product
from typing import Any

from jsonpath_ng import jsonpath as jp
from jsonpath_ng.ext.filter import Filter
from jsonpath_ng.ext.parser import ExtendedJsonPathParser

KEY, INDEX, ANY, DESCEND = "key", "index", "any", "descend"
_WILDCARD = getattr(jp, "Wildcard", None)
"""jsonpath-ng >= 1.7 parses ``[*]`` and ``.*`` as ``Wildcard``, older ones as fields."""
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    _UNION = getattr(jp, "_Union", None) or getattr(jp, "Union", None)
    _INTERSECT = getattr(jp, "_Intersect", None) or getattr(jp, "Intersect", None)
"""What jsonpath-ng parses ``&`` into but cannot evaluate (deprecated, going in 2.0)."""
_JOINS = (jp.Child, jp.Descendants, _UNION)
_WHERE = (jp.Where, getattr(jp, "WhereNot", jp.Where))
_FIELDS = {jp.Root, jp.This, jp.Fields, jp.Index, jp.Slice, Filter, _WILDCARD}
"""What a path's locations may be made of. jsonpath-ng's named operators (`sorted`,
sorting ``[/x]``, `len`, `keys`, `str()`, `sub()`, `split()`, `parent`) and arithmetic
yield computed values or locations the plan cannot name: a sorted copy read as the
record itself, so ``keep`` on ``$.a[/b]`` kept the whole record."""


@dataclass(frozen=True)
class Step:
    kind: str
    value: str | int | None = None


ANY_STEP = Step(ANY)
DESCEND_STEP = Step(DESCEND)


class Dynamic(Exception):
    """The path needs jsonpath-ng evaluation per record."""


@dataclass(frozen=True)
class RulePath:
    text: str
    expr: Any
    alternatives: tuple[tuple[Step, ...], ...] | None
    """Step sequences (several for a union); None when the path is dynamic."""
    named: int
    """How many named steps the path has: the more, the more specific the rule."""


def parse_path(text: str) -> RulePath:
    """Parse a rule path; raises ValueError with a reason when it is not valid JSONPath."""
    if not isinstance(text, str) or not text.strip().startswith("$"):
        raise ValueError("a path must be a JSONPath starting with '$'")
    return _parse_cached(text)


_parser: ExtendedJsonPathParser | None = None
_parser_lock = threading.Lock()


def _parse(text: str) -> Any:
    """One jsonpath-ng parser for the process: making one loads its LALR tables (about
    half a millisecond), and a policy's paths are parsed at every start-up. PLY parsers
    keep state while parsing, hence the lock."""
    global _parser
    with _parser_lock:
        if _parser is None:
            _parser = ExtendedJsonPathParser()
        with warnings.catch_warnings():  # '&' warns of its deprecation: it is refused below
            warnings.simplefilter("ignore", DeprecationWarning)
            return _parser.parse(text)


@lru_cache(maxsize=4096)
def _parse_cached(text: str) -> RulePath:
    try:
        expr = _parse(text)
    except Exception as e:  # jsonpath-ng raises bare Exceptions on syntax errors
        raise ValueError(f"not a valid JSONPath ({e})") from None
    if _INTERSECT is not None and _has(expr, _INTERSECT):
        raise ValueError("'&' (intersection) is not supported: jsonpath-ng parses it but "
                         "cannot evaluate it")
    if _computed(expr):
        raise ValueError("named operators (`sorted`, [/x], `len`, `keys`, `parent`, `str()`, "
                         "`sub()`, `split()`) and arithmetic are not supported: a rule path "
                         "must name fields of the record")
    try:
        alts = tuple(tuple(s) for s in _steps(expr))
    except Dynamic:
        return RulePath(text, expr, None, _named(expr))
    named = max(sum(s.kind in (KEY, INDEX) for s in a) for a in alts)
    return RulePath(text, expr, alts, named)


def _has(e: Any, kind: type) -> bool:
    """Whether an expression tree holds a node of ``kind`` anywhere."""
    if isinstance(e, kind):
        return True
    if isinstance(e, (list, tuple)):
        return any(_has(v, kind) for v in e)
    if type(e).__module__.startswith("jsonpath_ng") and hasattr(e, "__dict__"):
        return any(_has(v, kind) for v in vars(e).values())
    return False


def _computed(e: Any) -> bool:
    """Whether a location the path finds may be something else than a field (filter
    conditions and ``where``'s right side only test, so they may use anything)."""
    t = type(e)
    if t in _JOINS:
        return _computed(e.left) or _computed(e.right)
    if t in _WHERE:
        return _computed(e.left)
    return t not in _FIELDS


def _steps(e: Any) -> list[list[Step]]:
    if isinstance(e, jp.Root):
        return [[]]
    if isinstance(e, jp.Child):
        return [a + b for a, b in product(_steps(e.left), _steps(e.right))]
    if isinstance(e, jp.Descendants):
        return [[*a, DESCEND_STEP, *b] for a, b in product(_steps(e.left), _steps(e.right))]
    if type(e) is jp.Fields:
        return [[ANY_STEP if f == "*" else Step(KEY, f)] for f in e.fields]
    if _WILDCARD is not None and type(e) is _WILDCARD:
        return [[ANY_STEP]]
    if type(e) is jp.Index:
        if any(i < 0 for i in e.indices):
            raise Dynamic
        return [[Step(INDEX, i)] for i in e.indices]
    if type(e) is jp.Slice and e.start is None and e.end is None and e.step is None:
        return [[ANY_STEP]]
    raise Dynamic


def _named(e: Any) -> int:
    if isinstance(e, (jp.Child, jp.Descendants)):
        return _named(e.left) + _named(e.right)
    if type(e) is jp.Fields:
        return 0 if "*" in e.fields else 1
    if type(e) is jp.Index:
        return 1
    return 0


def field_names(e: Any) -> set[str]:
    """The field names a path's text writes (not those inside filters)."""
    if isinstance(e, (jp.Child, jp.Descendants)):
        return field_names(e.left) | field_names(e.right)
    if type(e) is jp.Fields:
        return {f for f in e.fields if f != "*"}
    return set()


def concrete_steps(full_path: Any) -> tuple[Step, ...]:
    """The steps of a location jsonpath-ng found (its ``full_path``)."""
    out: list[Step] = []

    def walk(p: Any) -> None:
        if isinstance(p, jp.Child):
            walk(p.left)
            walk(p.right)
        elif isinstance(p, jp.Fields):
            out.append(Step(KEY, p.fields[0]))
        elif isinstance(p, jp.Index):
            out.append(Step(INDEX, p.index if hasattr(p, "index") else p.indices[0]))
        elif isinstance(p, (jp.Root, jp.This)):
            pass
        else:
            raise ValueError("unsupported location")

    walk(full_path)
    return tuple(out)


def shape_step(step: Step) -> str:
    """How a step reads in the path shapes the audit log records."""
    if step.kind == KEY:
        k = str(step.value)
        return f".{k}" if k.isidentifier() else "[" + repr(k) + "]"
    if step.kind == INDEX:
        return f"[{step.value}]"
    if step.kind == DESCEND:
        return ".."
    return "[*]"
