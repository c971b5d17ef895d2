"""Known places of personal data in xAPI statements and Open edX tracking logs.

``check`` uses this catalogue to find identifiers a policy keeps as they are, and free
text it keeps without scrubbing; ``diff`` uses it to show how a change moves their
treatment. Each entry is a concrete location with the surrounding values that make it
mean what it means (an xAPI ``object`` is a person only when its ``objectType`` says so,
while an actor, instructor, authority or group member without ``objectType`` is an Agent),
so that rules with ``when`` conditions are judged as the engine would apply them.

Sources: the xAPI 1.0.3 specification (Agent and Group inverse functional identifiers
``mbox``, ``mbox_sha1sum``, ``openid``, ``account``; ``name``; ``result.response``; a
SubStatement object holds its own actor, object, context and result), xAPI 2.0's
context agents and groups, and the Open edX tracking log format (common fields
``username``, ``ip``, ``context.user_id``, ``agent``; forum and problem event payloads).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .fields import Loc, loc_text

Kind = Literal["direct", "free_text"]
PLACEHOLDER = "placeholder"
"""The value an entry's record holds at its field (``diff`` looks for it among the
identifiers the engine gathers)."""


@dataclass(frozen=True)
class Entry:
    format: Literal["xapi", "edx"]
    loc: Loc
    kind: Kind
    label: str
    context: dict[Loc, dict[str, Any]] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return loc_text(self.loc)

    def record(self) -> dict[str, Any]:
        """A minimal record holding this field (a placeholder value) and its context."""
        rec: dict[str, Any] = {}
        for where, values in self.context.items():
            for k, v in values.items():
                _put(rec, (*where, k), v)
        _put(rec, self.loc, PLACEHOLDER)
        return rec


def _put(rec: Any, loc: Loc, value: Any) -> None:
    cur = rec
    for i, p in enumerate(loc):
        last = i == len(loc) - 1
        nxt_is_index = not last and isinstance(loc[i + 1], int)
        if isinstance(p, int):
            while len(cur) <= p:
                cur.append({})
            if last:
                cur[p] = value
            else:
                if not isinstance(cur[p], (dict, list)):
                    cur[p] = [] if nxt_is_index else {}
                cur = cur[p]
        elif last:
            cur[p] = value
        else:
            cur = cur.setdefault(p, [] if nxt_is_index else {})


_AGENT_IFIS = [
    (("name",), "the person's name"),
    (("mbox",), "e-mail address (mailto: IRI)"),
    (("mbox_sha1sum",), "unkeyed SHA-1 of the e-mail address, recomputable from a list"),
    (("openid",), "OpenID URI"),
    (("account", "name"), "account name on the platform"),
]


def _agents(prefix: Loc, who: str, context: dict[Loc, dict[str, Any]]) -> list[Entry]:
    return [Entry("xapi", (*prefix, *loc), "direct", f"{who}: {label}", context)
            for loc, label in _AGENT_IFIS]


_UNTYPED = "without objectType, hence an Agent"

XAPI: list[Entry] = [
    *_agents(("actor",), "actor", {("actor",): {"objectType": "Agent"}}),
    *_agents(("actor",), f"actor {_UNTYPED}", {}),
    *_agents(("actor", "member", 0), "member of a group actor",
             {("actor",): {"objectType": "Group"},
              ("actor", "member", 0): {"objectType": "Agent"}}),
    *_agents(("actor", "member", 0), f"member of a group actor {_UNTYPED}",
             {("actor",): {"objectType": "Group"}}),
    *_agents(("object",), "object that is a person",
             {("object",): {"objectType": "Agent"}}),
    *_agents(("context", "instructor"), "instructor",
             {("context", "instructor"): {"objectType": "Agent"}}),
    *_agents(("context", "instructor"), f"instructor {_UNTYPED}", {}),
    *_agents(("context", "team", "member", 0), "member of the team",
             {("context", "team"): {"objectType": "Group"},
              ("context", "team", "member", 0): {"objectType": "Agent"}}),
    *_agents(("context", "team", "member", 0), f"member of the team {_UNTYPED}",
             {("context", "team"): {"objectType": "Group"}}),
    *_agents(("context", "contextAgents", 0, "agent"), "context agent (xAPI 2.0)",
             {("context", "contextAgents", 0): {"objectType": "contextAgent"}}),
    *_agents(("context", "contextGroups", 0, "group", "member", 0),
             "member of a context group (xAPI 2.0)",
             {("context", "contextGroups", 0): {"objectType": "contextGroup"},
              ("context", "contextGroups", 0, "group"): {"objectType": "Group"}}),
    *_agents(("authority",), "authority", {("authority",): {"objectType": "Agent"}}),
    *_agents(("authority",), f"authority {_UNTYPED}", {}),
    *_agents(("object", "actor"), "actor of a sub-statement",
             {("object",): {"objectType": "SubStatement"},
              ("object", "actor"): {"objectType": "Agent"}}),
    *_agents(("object", "actor"), f"actor of a sub-statement {_UNTYPED}",
             {("object",): {"objectType": "SubStatement"}}),
    *_agents(("object", "object"), "object of a sub-statement that is a person",
             {("object",): {"objectType": "SubStatement"},
              ("object", "object"): {"objectType": "Agent"}}),
    *_agents(("object", "context", "instructor"), f"instructor of a sub-statement {_UNTYPED}",
             {("object",): {"objectType": "SubStatement"}}),
    Entry("xapi", ("result", "response"), "free_text", "learner's response (may be free text)"),
    Entry("xapi", ("object", "result", "response"), "free_text",
          "response in a sub-statement (may be free text)",
          {("object",): {"objectType": "SubStatement"}}),
]

EDX: list[Entry] = [
    Entry("edx", ("username",), "direct", "username"),
    Entry("edx", ("ip",), "direct", "IP address of the learner"),
    Entry("edx", ("context", "user_id"), "direct", "numeric user id"),
    Entry("edx", ("context", "username"), "direct", "username (in context)"),
    Entry("edx", ("event", "username"), "direct", "username (in the event payload)"),
    Entry("edx", ("event", "user_id"), "direct", "user id (in the event payload)"),
    Entry("edx", ("event", "email"), "direct", "e-mail address (in the event payload)"),
    Entry("edx", ("event", "body"), "free_text", "forum post or comment body"),
    Entry("edx", ("event", "title"), "free_text", "forum thread title"),
    Entry("edx", ("event", "answers"), "free_text", "problem answers as submitted"),
]

CATALOGUE: list[Entry] = XAPI + EDX

ANCHORS = {"xapi": {"actor", "verb", "object", "result", "authority", "stored"},
           "edx": {"event_type", "event", "username", "ip", "event_source", "page", "agent"}}


def formats_of(top_keys: set[str]) -> list[str]:
    """The formats a policy is written for, from the top-level fields its rules name."""
    found = [f for f, keys in ANCHORS.items() if keys & top_keys]
    return found or list(ANCHORS)


def entries(formats: list[str]) -> list[Entry]:
    return [e for e in CATALOGUE if e.format in formats]
