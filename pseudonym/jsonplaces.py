"""Where things are in a JSON policy, for its errors: json.loads keeps no positions.

The text is read a second time into the node tree PyYAML composes (mappings of key and
value nodes, sequences, scalars, each with its start line), so that one function places
the errors of both syntaxes. json.loads stays the only judge of what is valid JSON: this
reader runs on text it has read, and says nothing (``None``) where it cannot follow.
Lines are counted as json.loads counts them in its own errors, by ``\\n``.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from json.decoder import scanstring

import yaml

_SPACE = re.compile(r"[ \t\n\r]*")
_SCALAR = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|true|false|null"
                     r"|NaN|Infinity|-Infinity")
_CONSTANTS = frozenset({"NaN", "Infinity", "-Infinity"})


class _Refused(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


def compose(text: str) -> yaml.Node | None:
    """The node tree of a JSON text json.loads accepted, or ``None``."""
    try:
        return _read(text)
    except (_Refused, IndexError, ValueError):
        return None


def refusal_line(text: str) -> int | None:
    """Line of the first duplicate key, NaN or infinity that json.loads meets in ``text``
    (the loader refuses them): a constant as it reads it, a duplicate key once its mapping
    ends."""
    try:
        _read(text)
    except _Refused as e:
        return e.line
    except (IndexError, ValueError):
        pass
    return None


def _read(text: str) -> yaml.Node:
    """Raises ``_Refused`` as json.loads' hooks would, ValueError or IndexError where the
    text is not JSON (iterative: nesting json.loads reads is no limit here)."""
    newlines = [m.start() for m in re.finditer("\n", text)]

    def mark(pos: int) -> yaml.Mark:
        return yaml.Mark("<json>", pos, bisect_left(newlines, pos), 0, None, None)

    def key(pos: int) -> tuple[yaml.ScalarNode, int]:
        if text[pos] != '"':
            raise ValueError("a key was expected")
        value, end = scanstring(text, pos + 1)
        colon = _SPACE.match(text, end).end()
        if text[colon] != ":":
            raise ValueError("a colon was expected")
        return yaml.ScalarNode(None, value, mark(pos)), _SPACE.match(text, colon + 1).end()

    open_: list[yaml.Node] = []
    keys: list[yaml.ScalarNode | None] = []
    pos = _SPACE.match(text).end()
    while True:
        c = text[pos]
        if c in "{[":
            node: yaml.Node = (yaml.MappingNode(None, [], mark(pos)) if c == "{"
                               else yaml.SequenceNode(None, [], mark(pos)))
            pos = _SPACE.match(text, pos + 1).end()
            if text[pos] != ("}" if c == "{" else "]"):
                open_.append(node)
                k = None
                if c == "{":
                    k, pos = key(pos)
                keys.append(k)
                continue
            pos += 1
        elif c == '"':
            value, end = scanstring(text, pos + 1)
            node, pos = yaml.ScalarNode(None, value, mark(pos)), end
        else:
            m = _SCALAR.match(text, pos)
            if m is None:
                raise ValueError("a value was expected")
            if m.group() in _CONSTANTS:
                raise _Refused(mark(pos).line + 1)
            node, pos = yaml.ScalarNode(None, m.group(), mark(pos)), m.end()
        while True:  # the value ends; so may the mappings and sequences it closes
            if not open_:
                return node
            parent, k = open_[-1], keys[-1]
            parent.value.append(node if k is None else (k, node))
            pos = _SPACE.match(text, pos).end()
            if text[pos] == ",":
                pos = _SPACE.match(text, pos + 1).end()
                if k is not None:
                    keys[-1], pos = key(pos)
                break
            if text[pos] != ("]" if k is None else "}"):
                raise ValueError("a comma or an end was expected")
            pos += 1
            open_.pop()
            keys.pop()
            if k is not None:
                _duplicate(parent)
            node = parent


def _duplicate(mapping: yaml.MappingNode) -> None:
    seen: set[str] = set()
    for k, _ in mapping.value:
        if k.value in seen:
            raise _Refused(k.start_mark.line + 1)
        seen.add(k.value)
