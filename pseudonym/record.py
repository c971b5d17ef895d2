"""Record-aware treatment: the identifiers one record holds, and their removal elsewhere.

A plan with record-aware rules (``scrub``, ``url``, ``date_shift``) compiles a
``Gatherer`` once from its identifying rules. Per record it follows plain steps (dict
and list look-ups, a JSON string decoded when a path runs through it) to collect the
record's identifiers, before the walk. Record-aware actions then receive a
``RecordContext``, which derives the forms of these identifiers that must disappear:
raw, any letter case, URL-encoded, and the unkeyed MD5 / SHA-1 / SHA-256 hex digests
that a dictionary attack would reverse, and which identifier each form stands for.
Nothing here compiles a pattern per record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import lru_cache
from typing import Any
from urllib.parse import quote, quote_plus

from .paths import ANY, DESCEND, INDEX, KEY, Step
from .plan import decode_json_text

MIN_FREE_TEXT = 2
"""Identifiers shorter than this are not searched for in free text (a user id ``6``
would erase every lone digit 6); URL path segments still match them exactly."""

Source = tuple[tuple[Step, ...] | None, Any, Callable[[Any], bool] | None,
               Callable[[Any], list[str]]]


class Gatherer:
    """The identifying rules' locations, compiled once: (steps or expr, cond, extract)."""

    def __init__(self, sources: list[Source]) -> None:
        self.sources = sources

    def __call__(self, record: dict[str, Any]) -> list[str]:
        found: list[str] = []
        memo: dict[int, Any] = {}
        for steps, expr, cond, extract in self.sources:
            values: list[Any] = []
            if steps is not None:
                _reach(record, steps, 0, values, memo)
            else:
                values = [m.value for m in expr.find(record)]
            for v in values:
                if cond is None or cond(v):
                    found.extend(extract(v))
        return found


def _reach(value: Any, steps: tuple[Step, ...], i: int, out: list, memo: dict) -> None:
    if i == len(steps):
        out.append(value)
        return
    s = steps[i]
    if type(value) is str:
        key = id(value)
        if key not in memo:
            memo[key] = (value, decode_json_text(value))
        value = memo[key][1]
        if value is None:
            return
    t = type(value)
    kind = s.kind
    if kind == KEY:
        if t is dict and s.value in value:
            _reach(value[s.value], steps, i + 1, out, memo)
    elif kind == INDEX:
        if t is list and s.value < len(value):  # type: ignore[operator]
            _reach(value[s.value], steps, i + 1, out, memo)
    elif kind == ANY:
        for v in (value.values() if t is dict else value if t is list else ()):
            _reach(v, steps, i + 1, out, memo)
    elif kind == DESCEND:
        _reach(value, steps, i + 1, out, memo)
        for v in (value.values() if t is dict else value if t is list else ()):
            if type(v) in (dict, list):
                _reach(v, steps, i, out, memo)


DIGESTS = (("MD5", hashlib.md5), ("SHA-1", hashlib.sha1), ("SHA-256", hashlib.sha256))
"""The unkeyed digests a dictionary attack reverses, each with its usual name."""


def plain_identifier(ident: str) -> str:
    """The text every form of ``ident`` stands for: stripped, an address without
    ``mailto:``. ``scrub`` pseudonymises this text (lower-cased) whatever form it found,
    and ``lookup`` computes the same, so that one learner has one pseudonym in free text."""
    base = ident.strip()
    return base[7:] if base.lower().startswith("mailto:") else base


def _spellings(ident: str) -> dict[str, str]:
    """The texts ``ident`` may be written as, each with how it differs from ``ident``:
    any letter case (as given, lower, upper) and, for an address, with and without
    ``mailto:``."""
    base = ident.strip()
    raws = {base: ""}
    if base.lower().startswith("mailto:"):
        raws[base[7:]] = "without mailto:"
    elif "@" in base:
        raws["mailto:" + base] = "with mailto:"
    found: dict[str, str] = {}
    for raw, how in raws.items():
        for variant, case in ((raw, ""), (raw.lower(), "lower case"),
                              (raw.upper(), "upper case")):
            found.setdefault(variant, ", ".join(h for h in (how, case) if h))
    return found


def digest_forms(ident: str) -> dict[str, str]:
    """The unkeyed hex digests ``scrub`` takes for ``ident``, each with what it is the
    digest of (``SHA-1 hex, with mailto:`` is an xAPI ``mbox_sha1sum``)."""
    found: dict[str, str] = {}
    for text, how in _spellings(ident).items():
        data = text.encode("utf-8", "surrogatepass")  # a lone surrogate is kept
        for name, fn in DIGESTS:
            found.setdefault(fn(data).hexdigest(), f"{name} hex, {how}" if how else
                             f"{name} hex")
    return found


@lru_cache(maxsize=4096)
def spelled_forms(ident: str) -> frozenset[str]:
    """The lower-cased forms of ``ident`` that spell it as it is written (any case, with
    or without ``mailto:``), not encoded or digested."""
    forms: set[str] = set()
    for variant in _spellings(ident):
        forms.add(variant.lower())
        forms.add(_lower_same_length(variant))  # as text is searched: İnci stays İnci
    return frozenset(f for f in forms if f)


@lru_cache(maxsize=4096)
def identifier_forms(ident: str) -> frozenset[str]:
    """Every lower-cased form of one identifier that must not survive.

    Cached: a learner's identifiers come back in record after record, and deriving the
    forms (nine digests each) is the costly part of record-aware treatment.
    """
    forms = set(spelled_forms(ident)) | digest_forms(ident).keys()
    for variant in _spellings(ident):
        data = variant.encode("utf-8", "surrogatepass")
        forms.add(quote(data, safe="").lower())
        forms.add(quote_plus(data, safe="").lower())
    return frozenset(f for f in forms if f)


class RecordContext:
    """What record-aware actions know about the record being treated."""

    __slots__ = ("_forms", "_needles", "_stands_for", "ids", "memo", "record")

    def __init__(self, record: dict[str, Any], ids: list[str]) -> None:
        self.record = record
        self.ids = ids
        self.memo: dict[Any, Any] = {}
        self._forms: frozenset[str] | None = None
        self._needles: tuple[str, ...] | None = None
        self._stands_for: dict[str, str] | None = None

    @property
    def forms(self) -> frozenset[str]:
        """Lower-cased forms of the record's identifiers (for whole-segment matches)."""
        if self._forms is None:
            forms: set[str] = set()
            for i in set(self.ids):
                forms |= identifier_forms(i)
            self._forms = frozenset(forms)
        return self._forms

    @property
    def needles(self) -> tuple[str, ...]:
        """The forms searched for inside free text, longest first."""
        if self._needles is None:
            self._needles = tuple(sorted((f for f in self.forms if len(f) >= MIN_FREE_TEXT),
                                         key=lambda f: (-len(f), f)))
        return self._needles

    def identifier_of(self, form: str) -> str | None:
        """The identifier (see ``plain_identifier``) that ``form``, one of its forms found
        in text, stands for; ``None`` for text that is no form of the record's identifiers.

        A form two identifiers share stands for the one it spells (``a+b`` is also
        ``a b`` URL-encoded); among those, for the first in sorted order."""
        if self._stands_for is None:
            found: dict[str, str] = {}
            ids = sorted(set(self.ids))
            for i in ids:
                for f in spelled_forms(i):
                    found.setdefault(f, plain_identifier(i))
            for i in ids:
                for f in identifier_forms(i):
                    found.setdefault(f, plain_identifier(i))
            self._stands_for = found
        return self._stands_for.get(_lower_same_length(form)) or self._stands_for.get(
            form.lower())

    def id_spans(self, text: str) -> list[tuple[int, int]]:
        """Where the record's identifiers occur in ``text`` (see ``needle_spans``)."""
        return needle_spans(text, self.needles) if self.ids else []


def _lower_same_length(text: str) -> str:
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


GLUED_MIN = 3
"""Names shorter than this are found as whole words only: two characters between digits
are more often part of a hex id or a UUID (``3ed4``, ``41d4``) than someone's handle."""


def _glued(edge: str, beside: str, digits_split: bool = True) -> bool:
    """Whether ``beside`` continues the token that a needle's ``edge`` character ends."""
    return edge.isalnum() and beside.isalnum() and not (
        digits_split and edge.isalpha() and beside.isdigit())


def glued_to_digits(text: str, a: int, b: int) -> bool:
    """Whether the match ``text[a:b]`` was found only because digits glued to a letter end
    count as a boundary (``jdupont`` in ``jdupont42``)."""
    return ((a > 0 and text[a].isalpha() and text[a - 1].isdigit())
            or (b < len(text) and text[b - 1].isalpha() and text[b].isdigit()))


_HEX = frozenset("0123456789abcdefABCDEF")


def escaped(text: str, end: int) -> str | None:
    """The character the URL escapes ending at ``text[end]`` spell (``%2F``: ``/``,
    ``%C3%A9``: ``é``), ``""`` if they spell none (``%E9``, Latin-1), None if there are
    none: the escape's last hex digit is no part of a word, what it spells may be."""
    data = b""
    while (end >= 3 and len(data) < 4 and text[end - 3] == "%" and text[end - 2] in _HEX
           and text[end - 1] in _HEX):
        data = bytes.fromhex(text[end - 2:end]) + data
        end -= 3
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return "" if data else None


def _starts_word(low: str, start: int, first: str, split: bool) -> bool:
    """Whether a needle starting with ``first`` starts a word at ``low[start]``. After a
    URL escape, what the escape spells decides, not its last hex digit: ``jdupont`` in
    ``%2Fu%2Fjdupont`` does, ``cole`` in ``%C3%A9cole`` (école) does not. Escapes that
    spell no text (``%E9``, Latin-1) are taken for a boundary: the name goes."""
    if start == 0:
        return True
    spelled = escaped(low, start)
    beside = low[start - 1] if spelled is None else spelled[-1:]
    return not beside or not _glued(first, beside, split)


def needle_spans(text: str, needles: tuple[str, ...]) -> list[tuple[int, int]]:
    """Every whole-token occurrence of ``needles`` (lower case), case-insensitively, as
    ``(start, end)``; occurrences may overlap.

    A match must not be glued to a letter or digit on a side where the needle itself
    starts or ends with one, so ``jo`` is not found in ``joint``, nor ``42`` in ``2042``;
    but digits glued to a letter end are a boundary, so ``jdupont42`` is found (handles
    are names with digits added), for names of ``GLUED_MIN`` characters or more, and a URL
    escape before the match is judged by what it spells (``%2Fjdupont`` is found). A name
    found so inside an IBAN or a digest overlaps that detector's match, and the two are
    replaced as one.
    """
    low = _lower_same_length(text)
    spans: list[tuple[int, int]] = []
    for n in needles:
        split = len(n) >= GLUED_MIN
        start = low.find(n)
        while start != -1:
            end = start + len(n)
            ok_after = end == len(low) or not _glued(n[-1], low[end], split)
            if ok_after and _starts_word(low, start, n[0], split):
                spans.append((start, end))
            start = low.find(n, start + 1)
    return spans
