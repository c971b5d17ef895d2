"""Which rule decides each field: the plan's decisions, read without running any action.

The DPO tools (``check``, ``explain``, ``diff``) need to say *which* rule treats a field,
not only what comes out. They compile the policy into the same tree the engine walks
(``plan.build_tree``) and follow ``plan.walk``'s semantics, so what they report is what
``anonymise`` does; no key is needed because no action runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .actions import REGISTRY
from .engine import _condition
from .plan import (
    DROP,
    KEEP,
    U_DROP,
    U_KEEP,
    U_REJECT,
    UNMATCHED_MODE,
    CompiledRule,
    Node,
    Tree,
    decode_json_text,
)
from .policy import Policy

Loc = tuple[str | int, ...]


def _never_called(value: Any) -> Any:  # pragma: no cover - the tracer never applies actions
    raise AssertionError("actions do not run while tracing")


def compile_rules(policy: Policy) -> list[CompiledRule]:
    """The policy's rules as the engine compiles them, with placeholder action functions."""
    out = []
    for i, rule in enumerate(policy.rules, 1):
        act = REGISTRY[rule.action]
        rp = rule.parsed_path
        fn = None if act.structural else _never_called
        out.append(CompiledRule(i, rule.path, act, fn, rp.named, _condition(rule.when),
                                rp.alternatives, rp.expr, act.record_aware, act.decode))
    return out


@dataclass(frozen=True)
class Decision:
    """What happens to one field and who decided it."""

    treatment: str
    """keep, drop, an action's name, or reject (``unmatched: reject``)."""
    rule: int | None
    """1-based number of the deciding rule; None when ``unmatched`` decided."""
    whole: bool = False
    """The rule's action replaced a whole object or array containing this field."""


def loc_text(loc: Loc) -> str:
    out = "$"
    for p in loc:
        if isinstance(p, int):
            out += f"[{p}]"
        elif p.isidentifier():
            out += f".{p}"
        else:
            out += "[" + repr(p) + "]"
    return out


class Tracer:
    """Decisions of one policy on concrete records (leaf by leaf)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.rules = compile_rules(policy)
        self.tree = Tree(self.rules)
        self.mode = UNMATCHED_MODE[policy.model.unmatched]

    def decide(self, record: dict[str, Any]) -> dict[Loc, Decision]:
        """Every leaf of ``record`` (and every whole value an action replaces) -> decision."""
        out: dict[Loc, Decision] = {}
        self._walk(self.tree.root_for(record), record, self.mode, None, (), out)
        return out

    def _walk(self, node: Node, value: Any, mode: int, by: int | None, loc: Loc,
              out: dict[Loc, Decision]) -> None:
        for c in node.cands:
            if c.cond is None or c.cond(value):
                if c.decode:
                    self._decoded(node, c, value, mode, by, loc, out)
                    return
                if c.fn is None:
                    mode, by = c.mode, c.number
                    break
                out[loc] = Decision(c.action.name, c.number,
                                    whole=isinstance(value, (dict, list)) and bool(value))
                return
        self._inside(node, value, mode, by, loc, out)

    def _decoded(self, node: Node, c: CompiledRule, value: Any, mode: int, by: int | None,
                 loc: Loc, out: dict[Loc, Decision]) -> None:
        """plan's rule 6: the rules below apply inside (JSON text decoded); other values
        follow the action's ``otherwise``."""
        if type(value) in (dict, list):
            self._inside(node, value, mode, by, loc, out)
            return
        out[loc] = Decision(c.action.name, c.number, whole=True)
        inner = decode_json_text(value) if type(value) is str else None
        if inner is not None:
            self._inside(node, inner, mode, by, loc, out)

    def _inside(self, node: Node, value: Any, mode: int, by: int | None, loc: Loc,
                out: dict[Loc, Decision]) -> None:
        items: Any = ()
        if not loc and type(value) is dict and not value:
            out[loc] = Decision("keep", None)  # an empty record has no field to decide
            return
        if type(value) is dict and value:
            items = [(k, v, node.keys.get(k, node.any)) for k, v in value.items()]
        elif type(value) is list and value:
            items = [(i, v, node.indices.get(i, node.any) if node.indices else node.any)
                     for i, v in enumerate(value)]
        else:
            out[loc] = _by_mode(mode, by)
            return
        for k, v, child in items:
            if child is None:
                _all_leaves(v, (*loc, k), _by_mode(mode, by), out)
            elif child.keep_hit:
                _all_leaves(v, (*loc, k), Decision("keep", child.keep_hit), out)
            else:
                self._walk(child, v, mode, by, (*loc, k), out)


def _by_mode(mode: int, by: int | None) -> Decision:
    if mode == KEEP:
        return Decision("keep", by)
    if mode == DROP:
        return Decision("drop", by)
    if mode == U_KEEP:
        return Decision("keep", None)
    if mode == U_DROP:
        return Decision("drop", None)
    assert mode == U_REJECT
    return Decision("reject", None)


def _all_leaves(value: Any, loc: Loc, d: Decision, out: dict[Loc, Decision]) -> None:
    if type(value) is dict and value:
        for k, v in value.items():
            _all_leaves(v, (*loc, k), d, out)
    elif type(value) is list and value:
        for i, v in enumerate(value):
            _all_leaves(v, (*loc, i), d, out)
    else:
        out[loc] = d


def get(record: Any, loc: Loc) -> Any:
    """The value at ``loc`` (KeyError/IndexError/TypeError when absent)."""
    for p in loc:
        record = record[p]
    return record


def decision_at(decisions: dict[Loc, Decision], loc: Loc) -> Decision | None:
    """The decision for ``loc``, or for the nearest enclosing value an action replaced."""
    for n in range(len(loc), -1, -1):
        d = decisions.get(loc[:n])
        if d is not None and (n == len(loc) or d.whole):
            return d
    return None


def reachable(tracer: Tracer) -> dict[int, bool]:
    """For each static rule: can it ever decide a field? (False when shadowed.)

    A rule is unreachable when every tree node where its path ends is behind an action
    that replaces a whole ancestor, or comes after an unconditional candidate that is
    always preferred at that node. Dynamic rules (filters, slices) are not judged.
    """
    seen: set[int] = set()
    can: dict[int, bool] = {r.number: False for r in tracer.rules if r.alternatives}
    todo = [tracer.tree.root]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        blocked = False
        for c in node.cands:
            can[c.number] = can.get(c.number, False) or c.alternatives is not None
            if c.cond is None:
                blocked = c.fn is not None and not c.decode
                break
        if blocked:
            continue
        todo.extend(node.keys.values())
        todo.extend(node.indices.values())
        if node.any is not None:
            todo.append(node.any)
    return can


def overlaps(tracer: Tracer) -> list[tuple[int, int, str]]:
    """Pairs of unconditional rules (winner, loser, where) that match the same locations
    with different actions or options; the winner is the one the engine applies."""
    found: dict[tuple[int, int], str] = {}
    seen: set[int] = set()
    todo = [tracer.tree.root]
    opts = tracer.policy.options
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        plain = [c for c in node.cands if c.cond is None]
        for loser in plain[1:]:
            w = plain[0]
            if (w.action.name, opts[w.number - 1]) != (loser.action.name, opts[loser.number - 1]):
                found.setdefault((w.number, loser.number), node.shape)
        todo.extend(node.keys.values())
        todo.extend(node.indices.values())
        if node.any is not None:
            todo.append(node.any)
    return [(w, lo, where) for (w, lo), where in sorted(found.items())]
