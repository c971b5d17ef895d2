"""The compiled plan: where each field's fate is decided.

A policy compiles once into a tree of nodes (a deterministic automaton over the rules'
paths). Per record, the engine walks the record and the tree together with dict
look-ups; no JSONPath is evaluated unless a rule needs a filter or a slice.

Meaning of overlapping rules, the same everywhere:

1. At each field, among the rules whose path matches it (and whose ``when`` holds), the
   most specific decides: the one with more named steps (keys, indices) beats one with
   wildcards or ``..``; on a tie, the rule written first wins.
2. ``keep`` and ``drop`` on an object or array set the default for what is inside:
   more specific rules inside still decide their own fields.
3. Any other action replaces the whole value it matches; nothing inside it is visited.
4. A field no rule decides follows the nearest enclosing ``keep``/``drop``, or the
   policy's ``unmatched`` at top level.
5. An object or array that held something and is left empty by the policy is removed.
   One that was empty already is a value like any other: kept only if a ``keep``
   decides it (so a key taken from the record cannot ride out on an empty value).

Two additions serve learning traces (both cost nothing when a policy does not use them):

6. A rule whose action decodes embedded JSON (``json``) neither replaces the value nor
   changes the default: when the value is a string holding a JSON object or array, the
   rules below the rule's path apply to the decoded value, which is written back as a
   string (Open edX's ``event`` is often such a string), ``"{}"`` if the policy left
   nothing in it, so the field keeps its type. A string that is not JSON follows the
   action's ``otherwise``. A rule at the same place that comes before it and has a
   ``when`` tests its condition on the decoded object, so that JSON text does not slip
   past it (its result is written back as JSON text when it is an object or array).
7. Record-aware actions (``scrub``, ``url``, ``date_shift``) see a per-record context
   (``RecordContext``): before the walk, the values the record holds at the locations of
   *identifying* rules (agents, usernames, user ids, or any rule marked
   ``identifying: true``) are gathered along precompiled steps, so that these actions can
   remove them wherever else they appear. Gathering reads the input, not the output, and
   a more specific rule elsewhere does not stop a value from being gathered: a value is
   treated as identifying as soon as any identifying rule's path reaches it.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .actions import REMOVE, Action, ActionError
from .errors import RecordError
from .paths import ANY, DESCEND, INDEX, KEY, Step, concrete_steps, field_names, shape_step

if TYPE_CHECKING:
    from collections.abc import Callable

# How a field no rule decides is treated.
KEEP, DROP, U_KEEP, U_DROP, U_REJECT = range(5)
UNMATCHED_MODE = {"keep": U_KEEP, "drop": U_DROP, "reject": U_REJECT}


@dataclass(eq=False)
class CompiledRule:
    number: int
    """1-based position of the rule in the policy."""
    path: str
    action: Action
    fn: Callable[[Any], Any] | None
    named: int
    cond: Callable[[Any], bool] | None
    alternatives: tuple[tuple[Step, ...], ...] | None
    expr: Any = None
    record_aware: bool = False
    """The action's function takes ``(value, RecordContext)``."""
    decode: bool = False
    """The action decodes embedded JSON and lets the rules below apply (rule 6)."""

    def __post_init__(self) -> None:
        self.mode = KEEP if self.action.structural == "keep" else DROP
        self.hit = -self.number if self.action.structural == "drop" else self.number


class Node:
    __slots__ = (
        "any",
        "cands",
        "drop_mark",
        "indices",
        "keep_hit",
        "keep_mark",
        "keep_types",
        "keys",
        "leaf",
        "member_drop",
        "member_keep",
        "shape",
        "typed_hit",
    )

    def __init__(self, shape: str) -> None:
        self.cands: tuple[CompiledRule, ...] = ()
        self.keys: dict[str, Node] = {}
        self.indices: dict[int, Node] = {}
        self.any: Node | None = None
        self.shape = shape
        self.drop_mark = ("dropped", shape)
        self.keep_mark = ("kept", shape)
        self.member_drop = ("dropped", shape + "[*]")
        self.member_keep = ("kept", shape + "[*]")
        self.leaf = True
        self.keep_hit = 0
        self.keep_types: frozenset[type] | None = None
        """For a leaf whose rule is ``keep`` with ``type``: the Python types it keeps."""
        self.typed_hit = 0



def build_tree(patterns: list[tuple[CompiledRule, tuple[Step, ...]]],
               public: frozenset[str] | None = None) -> Node:
    """Subset construction over the rules' step sequences.

    ``public``: the field names the policy itself writes. Steps found in a record by a
    dynamic rule may hold other keys (an e-mail address used as a key): the path shapes
    that reach the audit log show those as ``[*]``, never the key.
    """
    memo: dict[tuple[frozenset[tuple[int, int]], str], Node] = {}

    def closure(states: set[tuple[int, int]]) -> frozenset[tuple[int, int]]:
        todo = list(states)
        while todo:
            pid, pos = todo.pop()
            steps = patterns[pid][1]
            if pos < len(steps) and steps[pos].kind == DESCEND and (pid, pos + 1) not in states:
                states.add((pid, pos + 1))
                todo.append((pid, pos + 1))
        return frozenset(states)

    def advance(states: frozenset[tuple[int, int]], kind: str | None, value: Any) -> frozenset:
        out: set[tuple[int, int]] = set()
        for pid, pos in states:
            steps = patterns[pid][1]
            if pos == len(steps):
                continue
            s = steps[pos]
            if s.kind == DESCEND:
                out.add((pid, pos))
            elif s.kind == ANY or (s.kind == kind and s.value == value):
                out.add((pid, pos + 1))
        return closure(out)

    def build(states: frozenset[tuple[int, int]], shape: str) -> Node:
        memo_key = (states, shape)
        node = memo.get(memo_key)
        if node is not None:
            return node
        node = memo[memo_key] = Node(shape)
        ended = {patterns[pid][0] for pid, pos in states if pos == len(patterns[pid][1])}
        node.cands = tuple(sorted(ended, key=lambda r: (-r.named, r.number)))
        pending = [patterns[pid][1][pos] for pid, pos in states if pos < len(patterns[pid][1])]
        in_descent = any(s.kind == DESCEND for s in pending)

        def child_shape(step: Step) -> str:
            if in_descent:
                return shape if shape.endswith("..") else shape + ".."
            if public is not None and step.kind == KEY and step.value not in public:
                return shape + "[*]"
            return shape + shape_step(step)

        for s in pending:
            if s.kind == KEY and s.value not in node.keys:
                nxt = advance(states, KEY, s.value)
                node.keys[s.value] = build(nxt, child_shape(s))  # type: ignore[index]
            elif s.kind == INDEX and s.value not in node.indices:
                nxt = advance(states, INDEX, s.value)
                node.indices[s.value] = build(nxt, child_shape(s))  # type: ignore[index]
        rest = advance(states, None, None)
        if rest:
            node.any = build(rest, child_shape(Step(ANY)))
        node.leaf = not (node.keys or node.indices or node.any)
        top = node.cands[0] if node.cands else None
        if (node.leaf and top is not None and top.cond is None
                and top.action.structural == "keep"):
            if top.fn is None:
                node.keep_hit = top.number
            else:
                node.keep_types = getattr(top.fn, "keep_types", None)
                node.typed_hit = top.number
        return node

    start = closure({(pid, 0) for pid in range(len(patterns))})
    return build(start, "$")


def walk(node: Node, value: Any, mode: int, hits: list, rec: Any = None) -> Any:
    """The treated copy of ``value`` (or ``REMOVE``), recording rule hits in ``hits``.

    ``rec`` is the record's ``RecordContext`` when the plan has record-aware rules.
    """
    for c in node.cands:
        if c.cond is None or c.cond(value):
            fn = c.fn
            if c.decode:
                hits.append(c.number)
                return _decoded(node, c, value, mode, hits, rec)
            if fn is None:
                hits.append(c.hit)
                mode = c.mode
                break
            try:
                new = fn(value, rec) if c.record_aware else fn(value)
            except ActionError as e:
                raise RecordError("action-failed", f"{c.action.name} on {c.path}: {e}",
                                  rule=c.number) from None
            hits.append(-c.number if new is REMOVE or new != value else c.number)
            return new
    return _inside(node, value, mode, hits, rec)


def _decoded(node: Node, c: CompiledRule, value: Any, mode: int, hits: list, rec: Any) -> Any:
    """Rule 6: the rules below ``node`` applied inside a value that may be JSON text."""
    t = type(value)
    if t is dict or t is list:
        return _inside(node, value, mode, hits, rec)
    if t is str:
        inner = decode_json_text(value)
        if inner is not None:
            for o in node.cands:
                if o is c:
                    break
                if o.cond is not None and o.cond(inner):
                    if o.fn is None or o.decode:
                        hits.append(o.hit)
                        mode = o.mode if o.fn is None else mode
                        break
                    try:
                        new = o.fn(inner, rec) if o.record_aware else o.fn(inner)
                    except ActionError as e:
                        raise RecordError("action-failed", f"{o.action.name} on {o.path}: {e}",
                                          rule=o.number) from None
                    hits.append(-o.number)
                    return _json_text(new) if type(new) in (dict, list) else new
            out = _inside(node, inner, mode, hits, rec)
            return _json_text(type(inner)() if out is REMOVE else out)
    try:
        return c.fn(value) if c.fn is not None else REMOVE
    except ActionError as e:
        raise RecordError("action-failed", f"{c.action.name} on {c.path}: {e}",
                          rule=c.number) from None


def decode_json_text(text: str) -> dict | list | None:
    """The object or array a string holds as JSON text, else None."""
    head = text.lstrip()[:1]
    if head != "{" and head != "[":
        return None
    try:
        inner = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return inner if type(inner) in (dict, list) else None


def _json_text(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except ValueError:
        raise RecordError("action-failed", "embedded JSON has a non-finite number") from None


def _inside(node: Node, value: Any, mode: int, hits: list, rec: Any) -> Any:
    if node.leaf:
        return _whole(node, value, mode, hits)
    t = type(value)
    if t is dict:
        out = {}
        keys, anyc = node.keys, node.any
        for k, v in value.items():
            child = keys.get(k, anyc)
            if child is None:
                if mode == KEEP or _member_kept(node, mode, hits):
                    out[k] = v
            elif child.keep_hit:
                hits.append(child.keep_hit)
                out[k] = v
            elif child.keep_types is not None:  # keep with a type: no call when it holds
                if type(v) not in child.keep_types:
                    walk(child, v, mode, hits, rec)  # raises, naming the rule
                hits.append(child.typed_hit)
                out[k] = v
            else:
                r = (walk if child.cands else _inside)(child, v, mode, hits, rec)
                if r is not REMOVE:
                    out[k] = r
        if out:
            return out
        return REMOVE if value else _whole(node, value, mode, hits)  # empty: as a leaf
    if t is list:
        outl = []
        indices, anyc = node.indices, node.any
        for i, v in enumerate(value):
            child = indices.get(i, anyc) if indices else anyc
            if child is None:
                if mode == KEEP or _member_kept(node, mode, hits):
                    outl.append(v)
            elif child.keep_hit:
                hits.append(child.keep_hit)
                outl.append(v)
            elif child.keep_types is not None:  # keep with a type: no call when it holds
                if type(v) not in child.keep_types:
                    walk(child, v, mode, hits, rec)  # raises, naming the rule
                hits.append(child.typed_hit)
                outl.append(v)
            else:
                r = (walk if child.cands else _inside)(child, v, mode, hits, rec)
                if r is not REMOVE:
                    outl.append(r)
        if outl:
            return outl
        return REMOVE if value else _whole(node, value, mode, hits)
    if isinstance(value, (dict, list, tuple)):
        raise RecordError("not-json", "a value is a subclass of dict or list, or a tuple: "
                          "rules inside it could not apply (pass plain dicts and lists)")
    return _whole(node, value, mode, hits)


def _member_kept(node: Node, mode: int, hits: list) -> bool:
    """Whether a member no rule below ``node`` names is kept (not under a ``keep`` rule)."""
    if mode == U_KEEP:
        hits.append(node.member_keep)
        return True
    if mode == U_DROP:
        hits.append(node.member_drop)
        return False
    if mode == U_REJECT:
        raise RecordError("unmatched-field", f"a field at {node.shape}[*] is named by no rule")
    return False


def _whole(node: Node, value: Any, mode: int, hits: list) -> Any:
    """A value no rule below this node can touch: it follows the mode as a whole."""
    if mode == KEEP:
        return value
    if mode == DROP:
        return REMOVE
    if mode == U_KEEP:
        hits.append(node.keep_mark)
        return value
    if mode == U_DROP:
        hits.append(node.drop_mark)
        return REMOVE
    raise RecordError("unmatched-field", f"the field at {node.shape} is named by no rule")


class Tree:
    """The static tree, plus trees specialised for the locations dynamic rules found."""

    def __init__(self, rules: list[CompiledRule], cache_size: int = 256) -> None:
        self.static = [(r, alt) for r in rules if r.alternatives for alt in r.alternatives]
        self.dynamic = [r for r in rules if r.alternatives is None]
        self.public = frozenset({s.value for _, alt in self.static for s in alt if s.kind == KEY}
                                | {k for r in self.dynamic for k in field_names(r.expr)})
        self.root = build_tree(self.static)
        self._cache: OrderedDict[frozenset, Node] = OrderedDict()
        self._cache_size = cache_size

    def root_for(self, record: Any) -> Node:
        if not self.dynamic:
            return self.root
        found = set()
        for r in self.dynamic:
            for m in r.expr.find(record):
                try:
                    steps = concrete_steps(m.full_path)
                    if any(s.kind == INDEX and s.value < 0 for s in steps):  # type: ignore[operator]
                        steps = _from_the_start(record, steps)
                    found.add((r.number, steps))
                except ValueError:
                    raise RecordError("path-failed", f"rule path {r.path} found a location "
                                      "it cannot name", rule=r.number) from None
        if not found:
            return self.root
        key = frozenset(found)
        node = self._cache.get(key)
        if node is None:
            by_number = {r.number: r for r in self.dynamic}
            extra = [(by_number[n], steps) for n, steps in sorted(key, key=repr)]
            node = build_tree(self.static + extra, self.public)
            self._cache[key] = node
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return node


def _from_the_start(record: Any, steps: tuple[Step, ...]) -> tuple[Step, ...]:
    """Negative indices (``[-1]``) counted from the start, as the walk looks them up."""
    out, cur = [], record
    for s in steps:
        if s.kind == INDEX and type(cur) is list:
            i = s.value + len(cur) if s.value < 0 else s.value  # type: ignore[operator]
            out.append(Step(INDEX, i))
            cur = cur[i] if 0 <= i < len(cur) else None
        else:
            out.append(s)
            cur = cur.get(s.value) if s.kind == KEY and type(cur) is dict else None
    return tuple(out)
