"""Policy files: the model a DPO reads and signs, and its loading.

Loading does all parsing and checking (YAML safely, without aliases or duplicate keys;
pydantic models that refuse unknown keys; JSONPath parsed; each action's options
validated), so that a policy that loads is one the engine can run. Errors name the file,
the line, the rule and the field.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .actions import REGISTRY
from .canonical import dumps
from .errors import PolicyError
from .jsonplaces import compose, refusal_line
from .paths import RulePath, parse_path

LEGAL_BASES = {
    "consent": "Art. 6(1)(a)",
    "contract": "Art. 6(1)(b)",
    "legal_obligation": "Art. 6(1)(c)",
    "vital_interests": "Art. 6(1)(d)",
    "public_task": "Art. 6(1)(e)",
    "legitimate_interests": "Art. 6(1)(f)",
}
LegalBasis = Literal["consent", "contract", "legal_obligation", "vital_interests",
                     "public_task", "legitimate_interests"]
Scalar = str | int | float | bool | None


class Rule(BaseModel):
    """One rule: which fields (``path``), what happens to them (``action``), and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="JSONPath of the fields the rule treats, e.g. "
                      "$.actor.account.name or $.context.extensions['http://...']")
    action: str = Field(description="The action's name: " + ", ".join(sorted(REGISTRY)))
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="The action's options (see the actions reference)")
    when: dict[str, list[Scalar]] | None = Field(
        None, description="Apply only where the matched value is an object whose named fields "
        "hold one of the listed values (null stands for an absent field), e.g. "
        "{objectType: [Agent, Group]}; a name written !field asks for none of the listed "
        "values instead, e.g. {'!setting': [null, pref-lang]}")
    why: str | None = Field(None, description="The justification the DPO reads")
    identifying: bool | None = Field(
        None, description="The matched values identify a person: record-aware actions "
        "(scrub, url) remove them wherever else they appear in the record. "
        "Default: true for agent and learner-id actions, false otherwise")

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        parse_path(v)
        return v

    @field_validator("action")
    @classmethod
    def _action(cls, v: str) -> str:
        if v not in REGISTRY:
            raise ValueError(f"unknown action {v!r}; known actions: {', '.join(sorted(REGISTRY))}")
        return v

    @model_validator(mode="after")
    def _whole_record(self) -> Rule:
        if self.path.strip() == "$" and REGISTRY[self.action].structural is None:
            raise ValueError("the whole record ($) can only be kept or dropped")
        return self

    @cached_property
    def parsed_path(self) -> RulePath:
        return parse_path(self.path)


class PolicyModel(BaseModel):
    """A pseudonymisation policy (its header answers GDPR Art. 30's questions)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100,
                      description="Short name of the policy")
    version: str = Field(min_length=1, description="Version of the policy, as text (quote it)")
    description: str | None = Field(None, description="What the processing is, for readers")
    controller: str | None = Field(None, description="The controller (Art. 30(1)(a))")
    dpo_contact: str | None = Field(None, description="Contact of the DPO (Art. 30(1)(a))")
    purpose: str | None = Field(None, description="Purpose of the processing (Art. 30(1)(b))")
    legal_basis: LegalBasis | None = Field(
        None, description="Art. 6(1): " + ", ".join(f"{k} = {v}" for k, v in LEGAL_BASES.items()))
    retention: str | None = Field(None, description="Time limit for erasure (Art. 30(1)(f))")
    recipients: list[str] = Field(default_factory=list,
                                  description="Recipients of the output (Art. 30(1)(d))")
    domain: str = Field(min_length=1, max_length=200,
                        description="Pseudonymisation domain: pseudonyms from two domains "
                        "cannot be linked (EDPB Guidelines 01/2025)")
    reidentification: str | None = Field(
        None, description="Why re-identification may be needed, if it may (reversible actions)")
    unmatched: Literal["drop", "keep", "reject"] = Field(
        "drop", description="What happens to fields no rule names: drop (allow-list, the "
        "default), keep, or reject the record")
    rules: list[Rule] = Field(default_factory=list,
                              description="What happens to each field (see Rules below)")


class Policy:
    """A loaded, validated policy. ``Policy.load`` takes a path or a built-in name."""

    def __init__(self, model: PolicyModel, source: str = "<policy>") -> None:
        self.model = model
        self.source = source
        self.options = [REGISTRY[r.action].options.model_validate(r.options) for r in model.rules]

    # -- loading -------------------------------------------------------------------------
    @classmethod
    def load(cls, ref: str | Path) -> Policy:
        """Load a policy file (``.yaml``, ``.yml``, ``.json``) or a built-in by name."""
        path = Path(ref)
        if not path.exists() and isinstance(ref, str) and path.suffix == "" and "/" not in ref:
            builtin = resources.files("pseudonym.policies") / f"{ref}.yaml"
            if builtin.is_file():
                return cls.from_text(builtin.read_text("utf-8"), source=f"builtin:{ref}")
            raise PolicyError(f"no policy file and no built-in policy named {ref!r} "
                              f"(built-ins: {', '.join(builtin_names())})")
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise PolicyError(f"cannot read policy file ({e.strerror})", source=str(path)) from None
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise PolicyError(f"not UTF-8 text (bad byte at offset {e.start})",
                              source=str(path)) from None
        return cls.from_text(text, source=str(path), json_syntax=path.suffix.lower() == ".json")

    @classmethod
    def from_text(cls, text: str, *, source: str = "<policy>", json_syntax: bool = False) -> Policy:
        if not text.strip():
            raise PolicyError("the policy is empty", source=source)
        if json_syntax:
            data, node = _load_json(text, source), None
        else:
            data, node = _load_yaml(text, source)
        if data is None:
            raise PolicyError("the policy is empty", source=source)
        if json_syntax:  # json.loads keeps no places: the text is read for them on error
            try:
                return cls.from_dict(data, source=source)
            except PolicyError:
                node = compose(text)
        return cls.from_dict(data, source=source, _node=node)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<dict>", _node: Any = None) -> Policy:
        if not isinstance(data, dict):
            raise PolicyError("a policy must be a mapping of header fields and rules",
                              source=source, line=_line(_node, ()))
        lone = _lone_surrogate(data)
        if lone is not None:  # pydantic fails on it, or stops there without reading on
            raise _problem(lone[0], NOT_UNICODE, source, _node, place=lone[1])
        problems: list[PolicyError] = []
        model: PolicyModel | None = None
        faulty: set[Any] = set()
        try:
            model = PolicyModel.model_validate(data)
        except ValidationError as e:
            for err in e.errors():
                loc = err["loc"]
                problems.append(_problem(loc, err["msg"], source, _node, err["type"]))
                if loc[:1] == ("rules",) and (len(loc) < 3 or loc[2] in ("action", "options")):
                    faulty.add(loc[1] if len(loc) > 1 else None)
        problems += _option_problems(data.get("rules"), faulty, source, _node)
        if problems:
            problems.sort(key=lambda p: (math.inf if p.line is None else p.line,
                                         -1 if p.rule is None else p.rule))
            raise _combined(problems) from None
        assert model is not None
        policy = cls(model, source)
        try:
            policy.sha256  # noqa: B018 - computed now, so that a run never fails on it
        except (ValueError, RecursionError):
            raise PolicyError("a value in the policy is nested too deeply",
                              source=source) from None
        return policy

    # -- what the rest of the library reads ---------------------------------------------
    @property
    def name(self) -> str:
        return self.model.name

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def domain(self) -> str:
        return self.model.domain

    @property
    def rules(self) -> list[Rule]:
        return self.model.rules

    def canonical(self) -> dict[str, Any]:
        """The policy with every default filled in: what its SHA-256 is taken over."""
        data = self.model.model_dump(mode="json")
        for rule, opts in zip(data["rules"], self.options, strict=True):
            rule["options"] = opts.model_dump(mode="json")
        return data

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(dumps(self.canonical()).encode("utf-8")).hexdigest()

    def describe(self) -> dict[str, str]:
        """Name, version and fingerprint, as the audit log records them."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256,
                "domain": self.domain}

    def __repr__(self) -> str:
        return f"Policy({self.name!r}, version={self.version!r}, rules={len(self.rules)})"


def builtin_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("pseudonym.policies").iterdir()
                  if p.name.endswith(".yaml"))


def json_schema() -> dict[str, Any]:
    """JSON Schema of policy files, with each action's options checked by its name."""
    schema = PolicyModel.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "pseudonym policy"
    rule = schema["$defs"]["Rule"]
    rule["properties"]["action"]["enum"] = sorted(REGISTRY)
    rule["allOf"] = []
    for name, act in sorted(REGISTRY.items()):
        opt = act.options.described_schema()
        for k, v in opt.pop("$defs", {}).items():
            schema["$defs"].setdefault(k, v)
        rule["allOf"].append({"if": {"properties": {"action": {"const": name}},
                                     "required": ["action"]},
                              "then": {"properties": {"options": opt}}})
    return schema


# -- YAML and JSON reading with places ----------------------------------------------------
_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")


def _joined(pair: re.Match[str]) -> str:
    return pair.group().encode("utf-16", "surrogatepass").decode("utf-16")


class _Loader(yaml.SafeLoader):
    """Safe YAML without aliases (no 'billion laughs') and without duplicate keys."""

    source = "<policy>"

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise PolicyError("YAML aliases (*name) are not allowed in a policy",
                              source=self.source, line=event.start_mark.line + 1)
        return super().compose_node(parent, index)

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ArithmeticError, AttributeError, LookupError, TypeError, ValueError):
            # PyYAML's constructors on "2020-13-45" (a date), "!!int x", "!!timestamp x"
            kind = node.tag.rsplit(":", 1)[-1]
            raise PolicyError(f"not valid YAML: the value is not a valid {kind} (quote it "
                              "to keep it as text)", source=self.source,
                              line=node.start_mark.line + 1) from None

    def compose_scalar_node(self, anchor: Any) -> Any:
        """A surrogate pair is the character it stands for: JSON, which is YAML, spells
        an emoji so (``"\\ud83d\\ude00"``); PyYAML reads each half alone. Joined in the
        node, what loads and what places errors (``_line``) read the same name."""
        node = super().compose_scalar_node(anchor)
        node.value = _PAIR.sub(_joined, node.value)
        return node

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if not isinstance(node, yaml.MappingNode):  # "!!map x": PyYAML refuses it, placed
            return super().construct_mapping(node, deep=deep)
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if type(key) is not str:  # as in JSON: "!!binary" keys would dodge the check
                raise PolicyError("a mapping key must be text (quote it)", source=self.source,
                                  line=key_node.start_mark.line + 1)
            if key in seen:
                raise PolicyError(f"duplicate key {key!r}", source=self.source,
                                  line=key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str, source: str) -> tuple[Any, Any]:
    loader = None
    try:
        loader = _Loader(text)  # reads the whole text: refuses control characters here
        loader.source = source
        node = loader.get_single_node()
        if node is None:
            raise PolicyError("the policy is empty", source=source)
        return loader.construct_document(node), node
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise PolicyError(f"not valid YAML: {e.problem or e.context}", source=source,
                          line=mark.line + 1 if mark else None) from None
    except RecursionError:
        raise PolicyError("nested too deeply", source=source) from None
    except yaml.reader.ReaderError as e:
        raise PolicyError(f"not valid YAML: character U+{e.character:04X} is not allowed",
                          source=source, line=text.count("\n", 0, e.position) + 1) from None
    except yaml.YAMLError as e:
        raise PolicyError(f"not valid YAML ({type(e).__name__})", source=source) from None
    finally:
        if loader is not None:
            loader.dispose()


def _load_json(text: str, source: str) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in items:
            if k in out:
                raise PolicyError(f"duplicate key {k!r}", source=source)
            out[k] = v
        return out

    def constant(name: str) -> Any:
        raise PolicyError(f"{name} is not valid JSON", source=source)

    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except PolicyError as e:  # from pairs or constant, which json.loads tells no place
        raise PolicyError(e.reason, source=source, line=refusal_line(text)) from None
    except json.JSONDecodeError as e:
        raise PolicyError(f"not valid JSON: {e.msg}", source=source, line=e.lineno) from None
    except ValueError:  # an integer of more digits than Python converts (4,300 by default)
        long = max(re.finditer(r"\d+", text), key=lambda m: m.end() - m.start(), default=None)
        raise PolicyError("not valid JSON: a number is too long", source=source,
                          line=text.count("\n", 0, long.start()) + 1 if long else None) from None
    except RecursionError:
        raise PolicyError("nested too deeply", source=source) from None


def _line(node: Any, loc: tuple[Any, ...]) -> int | None:
    """Line of the deepest node on the way to ``loc`` (YAML's, or ``jsonplaces``')."""
    if node is None:
        return None
    best = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if getattr(k, "value", None) == str(part):
                    nxt = k if part == loc[-1] else v
                    break
        elif (isinstance(node, yaml.SequenceNode) and isinstance(part, int)
              and part < len(node.value)):
            nxt = node.value[part]
        else:
            nxt = None
        if nxt is None:
            break
        node = nxt
        best = node.start_mark.line + 1
    return best


NOT_UNICODE = "not Unicode text: a lone surrogate (\\ud800 to \\udfff)"
_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate(data: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]] | None:
    """Where the first name or text holding a lone surrogate (``\\ud800`` in JSON, or in
    YAML's double quotes) is, as ``_problem``'s field and place: for a name, its mapping
    and the name itself, whose line it is on. None when there is none."""
    todo: list[tuple[tuple[Any, ...], Any]] = [((), data)]
    while todo:
        loc, value = todo.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return loc, loc
        elif isinstance(value, dict):
            for k in value:
                if isinstance(k, str) and _SURROGATE.search(k):
                    return loc, (*loc, k)
            todo.extend(((*loc, k), v) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            todo.extend(((*loc, i), v) for i, v in reversed(list(enumerate(value))))
    return None


def _problem(loc: tuple[Any, ...], msg: str, source: str, node: Any, kind: str = "",
             place: tuple[Any, ...] | None = None) -> PolicyError:
    if kind == "recursion_depth_exceeded":  # pydantic-core's limit, deep in a value
        loc, msg = loc[:4], "nested too deeply"
    rule = None
    field_loc = list(loc)
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        rule = loc[1] + 1
        field_loc = list(loc[2:])
    field = ".".join(str(p) for p in field_loc if not str(p).startswith("function-")) or None
    msg = msg.removeprefix("Value error, ")
    return PolicyError(msg, source=source, line=_line(node, loc if place is None else place),
                       rule=rule, field=field)


def _option_problems(rules: Any, faulty: set[Any], source: str, node: Any
                     ) -> list[PolicyError]:
    """Each rule's options checked by its action, except where the model found the rule,
    its action or its options wrong (``faulty``: their indexes, ``None`` when the list
    itself is): a mistake elsewhere does not hide option errors until a second load."""
    if not isinstance(rules, list) or None in faulty:
        return []
    problems = []
    for i, rule in enumerate(rules):
        if i in faulty:
            continue
        try:
            REGISTRY[rule["action"]].options.model_validate(rule.get("options", {}))
        except ValidationError as e:
            for err in e.errors():
                problems.append(_problem(("rules", i, "options", *err["loc"]), err["msg"],
                                         source, node, err["type"]))
    return problems


def _combined(problems: list[PolicyError]) -> PolicyError:
    if len(problems) == 1:
        return problems[0]
    first = problems[0]
    err = PolicyError(first.reason, source=first.source, line=first.line, rule=first.rule,
                      field=first.field)
    err.problems = problems
    err.args = (f"{len(problems)} problems:\n" + "\n".join(f"  {p}" for p in problems),)
    return err
