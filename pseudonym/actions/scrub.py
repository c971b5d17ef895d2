"""scrub: free text kept, with what identifies people in it replaced.

First the ``email`` and ``url`` detectors (an address or link holding a username must go
whole, domain included, not become ``[USER]@example.org``). Then, in the text they leave:
the record's own identifiers (the values of its identifying fields, in every form: see
``pseudonym.record``), the other built-in detectors and the policy's custom patterns, in
that order. Each pattern looks at the text twice, as it is and with the earlier matches
hidden: a user id ``12`` must not break the phone number it appears in, nor may a
false match spanning an identifier hide a real one after it. Matches found either way
that overlap are replaced as one, under the token of the longest. A built-in detector's
match does not start right after some characters (a digit before an IPv4 address, ``@``
before hex: an Open edX ``block@<hex>``), whether written plainly or as a URL escape
(``%40``): an escape counts as the character it spells, so ``%22`` or ``%20`` before a
value is a boundary, as ``"`` or a space is.
Every pattern is compiled when the policy compiles. A match becomes a typed token
(``[EMAIL]``) or, with ``replace: pseudonym``, a keyed pseudonym of what it stands for
(stripped, lower-cased), so the same address gives the same text in every record: a form
of one of the record's identifiers (any case, URL-encoded, a digest) stands for that
identifier, a URL-encoded address for the address, and two identifiers replaced as one
for both (one token each). One learner thus has one pseudonym, the one ``lookup`` gives,
whatever form the text held. A digest that is none of the record's identifiers'
(someone else's address hashed) cannot be traced back: it stands for itself.

Inside objects and arrays, keys are scrubbed like values, and a number whose decimal
text is one of the record's identifiers (a user id) becomes the ``[USER]`` token.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..record import escaped, glued_to_digits
from .base import BuildContext, Options, action

IDENTIFYING_PARAMS = frozenset({
    "email", "mail", "e-mail", "user", "username", "user_id", "userid", "uid", "login",
    "name", "firstname", "lastname", "first_name", "last_name", "token", "access_token",
    "key", "api_key", "apikey", "password", "pass", "pwd", "session", "sessionid", "sid",
    "phone", "tel", "ip", "student", "student_id", "learner", "anonymous_id",
})
"""Query parameter names that make a URL identifying (compared lower-cased)."""


_SPACE = re.compile(r"\s")

Check = Callable[[str], int]
"""How many characters at the start of a match are what a detector looks for (0: none)."""


IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}
"""IBAN length by country (SWIFT's IBAN registry). Only a second guess: a candidate is
first checked whole, so a country missing here, or a length that changed, loses nothing."""


def _iban_mod97(compact: str) -> bool:
    moved = compact[4:] + compact[:4]
    try:
        digits = "".join(str(int(c, 36)) for c in moved)
    except ValueError:  # a character int() does not read in base 36: no IBAN
        return False
    return int(digits) % 97 == 1


def _iban_length(text: str) -> int:
    """How much of a candidate is an IBAN: all of it, or its country's length of
    characters when the pattern's last group took in what follows (a currency in
    ``BE68 5390 0754 7034 EUR``, a year), which fails the whole candidate's check."""
    compact = _SPACE.sub("", text)
    if _iban_mod97(compact):
        return len(text)
    size = IBAN_LENGTHS.get(compact[:2].upper(), 0)
    if not 0 < size < len(compact) or not _iban_mod97(compact[:size]):
        return 0
    seen = 0
    for end, c in enumerate(text, 1):
        seen += not c.isspace()
        if seen == size:
            return end
    return 0


def _whole(valid: Callable[[str], bool]) -> Check:
    return lambda text: len(text) if valid(text) else 0


def _nir_key(text: str) -> bool:
    s = _SPACE.sub("", text).upper()
    body, key = s[:13], s[13:]
    body = body.replace("2A", "19").replace("2B", "18")
    return body.isdigit() and key.isdigit() and 97 - int(body) % 97 == int(key)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _identifying_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
    except ValueError:
        return True
    if parts.username or parts.password or "@" in parts.netloc:
        return True
    return any(k.lower() in IDENTIFYING_PARAMS for k, _ in parse_qsl(parts.query,
                                                                     keep_blank_values=True))


def _flags(name: str) -> int:
    return re.IGNORECASE | (re.ASCII if name == "iban" else 0)  # dotless i is no I


_BEFORE = {"url": "A-Za-z0-9+.-", "iban": r"\w", "nir": r"\d", "phone": r"\w+",
           "ipv4": r"\d.", "ipv6": r"\w:", "hex_digest": "0-9A-Fa-f@"}
"""name -> the characters that may not come right before a detector's match (inside of a
regex class), written plainly or as a URL escape. ``email`` takes escapes into its match
(``%2Fbob%40x.org``): it has none."""

_ESCAPE = "%[0-9A-Fa-f]{2}"


def _not_after(name: str) -> str:
    """The lookbehind a detector starts with: no character of ``_BEFORE[name]`` right
    before the match, a URL escape there judged by the character it spells, not by its
    last hex digit: ``%22`` or ``%20`` before a value is a boundary, as ``"`` or a space
    is; ``%40`` is ``@``, and the hex of ``block%40<hex>`` is no digest, as in
    ``block@<hex>``. It reads: no such character unless it ends an escape, and no escape
    of one (those of ASCII, listed here). An escape of a byte beyond ASCII is left to
    ``_glued_after_escape``."""
    blocked = _BEFORE_RX[name]
    by_high: dict[str, str] = {}
    for byte in range(0x80):
        if blocked.match(chr(byte)):
            high, low = f"{byte:02X}"
            by_high[high] = by_high.get(high, "") + low  # %2e too: _flags ignores case
    spelled = "|".join(f"{high}[{lows}]" for high, lows in by_high.items())
    return f"(?<![{_BEFORE[name]}](?<!{_ESCAPE}))(?<!%(?:{spelled}))"


_BEFORE_RX = {name: re.compile(f"[{chars}]", _flags(name)) for name, chars in _BEFORE.items()}
_WIDE_ESCAPE = re.compile("%[89A-Fa-f][0-9A-Fa-f]")


def _glued_after_escape(before: re.Pattern[str], text: str, start: int) -> bool:
    """Whether URL escapes of bytes beyond ASCII right before ``text[start]`` spell a
    character ``before`` holds (``%C3%A9``: é, a letter, before a phone number, as
    ``é0612345678`` is none), which the detectors' lookbehinds cannot read."""
    if start < 3 or not _WIDE_ESCAPE.match(text, start - 3):
        return False
    spelled = escaped(text, start)
    return bool(spelled) and before.match(spelled[-1]) is not None


DETECTORS: dict[str, tuple[str, str, Check | None]] = {
    "email": ("EMAIL",
              r"(?<![\w.%+-])[\w.%+-]+(?:@|%(?:25)*40)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
              r"\.[A-Za-z]{2,}(?![\w-])", None),
    "url": ("URL", _not_after("url") + r"[A-Za-z][A-Za-z0-9+.-]*://[^\s<>\"']+",
            _whole(_identifying_url)),
    "iban": ("IBAN", _not_after("iban")
             + r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b", _iban_length),
    "nir": ("NIR", _not_after("nir")
            + r"[12] ?\d{2} ?(?:0[1-9]|1[0-2]|[2-9]\d) ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}"
              r"(?!\d)", _whole(_nir_key)),
    "phone": ("PHONE", _not_after("phone")
              + r"(?:(?:(?:\+|%2B|00)33[ .-]?(?:\(0\)[ .-]?)?[1-9]|0[1-9])(?:[ .-]?\d{2}){4}"
                r"(?!\d)|(?:\+|%2B|00)[1-9]\d{0,2}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?!\d))", None),
    "ipv4": ("IP", _not_after("ipv4") + r"(?:\d{1,3}\.){3}\d{1,3}(?![\d.])", _whole(_is_ip)),
    "ipv6": ("IP", _not_after("ipv6")
             + r"(?:(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])"
               r"|::(?:[0-9A-Fa-f]{1,4}:){0,6}[0-9A-Fa-f]{1,4}(?![\w:]))", _whole(_is_ip)),
    "hex_digest": ("HASH", _not_after("hex_digest")
                   + r"(?:[0-9A-Fa-f]{64}|[0-9A-Fa-f]{40}|[0-9A-Fa-f]{32})(?![0-9A-Fa-f])",
                   None),
}
"""name -> (token, pattern, check). A ``phone`` number's leading ``+`` may be URL-encoded
(``tel=%2B33612345678``). ``hex_digest`` catches MD5/SHA-1/SHA-256 hex that
a dictionary attack could reverse; an Open edX block id (``block@<hex>``,
``block%40<hex>``) is not taken for one. A ``url`` starts only where a scheme can (not
inside ``a-a-a-...``, which made the search quadratic: 11 s on 64 KB of it, 2 ms now)."""

Detector = Literal["email", "url", "iban", "nir", "phone", "ipv4", "ipv6", "hex_digest"]
ALL_DETECTORS: tuple[Detector, ...] = ("email", "url", "iban", "nir", "phone", "ipv4", "ipv6",
                                       "hex_digest")


class Pattern(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    """The token's name: a match becomes ``[NAME]``."""
    regex: str
    """A Python regular expression; the whole match is replaced."""

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            rx = re.compile(v)
        except re.error as e:
            raise ValueError(f"not a valid regular expression ({e.msg})") from None
        if rx.match(""):
            raise ValueError("the regular expression matches empty text")
        return v


class ScrubOptions(Options):
    detectors: tuple[Detector, ...] = ALL_DETECTORS
    """Built-in detectors to run (default: all)."""
    patterns: tuple[Pattern, ...] = ()
    """Custom patterns, e.g. {name: STUDENT_NUMBER, regex: 'FUN-\\d{6}'}."""
    record: bool = True
    """Also remove the record's own identifiers (its identifying fields' values)."""
    replace: Literal["token", "pseudonym"] = "token"
    """token: ``[EMAIL]``, ``[USER]``...; pseudonym: ``[EMAIL:<keyed pseudonym>]``, the
    pseudonym of what the match stands for: any form of one of the record's identifiers
    (any case, URL-encoded, MD5/SHA-1/SHA-256 hex) gets the identifier's, a URL-encoded
    address the address's (one token per address a match holds); a digest that is none
    of the record's identifiers' gets its own (scrub cannot know whose it is)."""

    @property
    def keyed(self) -> bool:
        return self.replace == "pseudonym"

    @property
    def unchanged(self) -> str | None:
        if self.detectors or self.patterns or self.record:
            return None
        return "scrub with no detector, no pattern and record: false finds nothing"


FIRST = frozenset({"email", "url"})
"""Detectors that run before the record's identifiers are removed: their matches contain
identifiers (``jdupont@example.org``, ``https://x.org/?user=jdupont``) and must be taken
whole."""


def match_pseudonym(ctx: BuildContext) -> Callable[[str], str]:
    """The keyed pseudonym ``replace: pseudonym`` puts in a match's token (``[EMAIL:<it>]``):
    one definition for ``scrub`` and ``lookup``, which must find it in free text."""
    digest = ctx.hasher("scrub").digest
    return lambda text: digest(text.strip().lower().encode("utf-8", "surrogatepass")).hex()[:16]


_EMAIL = re.compile(DETECTORS["email"][1], _flags("email"))


_NO_TEXT = re.compile("[\udc80-\udcff]")
"""A byte the escapes spell that is no UTF-8, as ``unquote(errors="surrogateescape")``
keeps it."""


DECODES = 8
"""How many times an address may be URL-encoded and get its pseudonym (``%25`` seven
times, then ``40``)."""


def _addresses(match: str) -> list[str]:
    """The addresses an ``email`` match stands for. URL-encoded (``%40``, ``mailto%3A``),
    it is the same address, and gets the same pseudonym; the escapes the match took in
    with it (``%2F`` of a path before it, ``%2C`` between two addresses) are not part of
    any: each address its decoded text holds stands for itself (decoded again while it
    holds no ``@``: a URL inside a URL's query is encoded twice, %2540; up to ``DECODES``
    times, as each pass reads it whole). A ``+`` it starts with
    is a space (``%2C+ada%40x.org``, form-encoded): an encoder that escapes ``@`` escapes
    an address's ``+``. An address glued to a byte that is no text (``%E9bob``, maybe
    Latin-1 ``ébob``), or encoded more often, may be another's: the match is then taken as
    written."""
    return _decoded_addresses(match, 1) or [match]


def _decoded_addresses(match: str, times: int) -> list[str] | None:
    """``_addresses`` of text decoded ``times - 1`` times already; None: take the match as
    written."""
    if "%" not in match:
        return [match]
    decoded = unquote(match, errors="surrogateescape")
    found = []
    for m in _EMAIL.finditer(decoded):
        if _NO_TEXT.match(decoded, max(m.start() - 1, 0)) or _NO_TEXT.match(decoded, m.end()):
            return None
        address = m.group(0).lstrip("+")
        if "@" in address:
            found.append(address if address[:1] != "@" else m.group(0))
            continue
        inner = _decoded_addresses(address, times + 1) if times < DECODES else None
        if inner is None:
            return None
        found += inner
    return found or None


def compile_scrubber(options: ScrubOptions, ctx: BuildContext):
    """The ``(text, RecordContext | None) -> text`` and ``(number, RecordContext | None)
    -> number or token`` functions a scrub rule runs."""
    compiled: list[tuple[str, re.Pattern[str], Check | None, re.Pattern[str] | None, bool]] = []
    for name in dict.fromkeys(options.detectors):
        token, rx, check = DETECTORS[name]
        compiled.append((token, re.compile(rx, _flags(name)), check, _BEFORE_RX.get(name),
                         name in FIRST))
    for p in options.patterns:
        compiled.append((p.name, re.compile(p.regex), None, None, False))

    keyed = options.keyed
    if keyed:
        pseudonym = match_pseudonym(ctx)

        def render(kind: str, text: str) -> str:
            return f"[{kind}:{pseudonym(text)}]"
    else:
        def render(kind: str, text: str) -> str:
            return f"[{kind}]"

    first: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = []
    then: list[tuple[str, re.Pattern[str], Check | None, re.Pattern[str] | None]] = []
    for token, rx, check, before, early in compiled:
        if not early:
            then.append((token, rx, check, before))
        elif keyed and token == "EMAIL":
            first.append((rx, lambda m, t=token: "".join(
                render(t, a) for a in _addresses(m.group(0)))))
        elif check is None:
            first.append((rx, lambda m, t=token: render(t, m.group(0))))
        else:
            first.append((rx, lambda m, t=token, c=check: _render_checked(
                m.group(0), c, lambda found: render(t, found))))
    use_record = options.record

    def traced(rec: Any) -> Callable[[str, str], str]:
        """``render``, a form of the record's identifiers pseudonymised as the identifier
        it stands for (a URL-encoded name, a digest: one learner, one pseudonym). Text
        that two of them make overlapping (``Jean Dupont Marie``) is no form of either:
        it gets one token per identifier written there, in order."""
        if not keyed or not use_record or rec is None:
            return render

        def stands_for(kind: str, found: str) -> str:
            ident = rec.identifier_of(found)
            if ident is not None:
                return render(kind, ident)
            if kind != "USER":
                return render(kind, found)
            idents = (rec.identifier_of(found[a:b]) for a, b in sorted(rec.id_spans(found)))
            return "".join(render(kind, i) for i in dict.fromkeys(idents) if i is not None
                           ) or render(kind, found)

        return stands_for

    def text(value: str, rec: Any) -> str:
        for rx, fn in first:
            value = rx.sub(fn, value)
        found: list[tuple[int, int, int, str]] = []
        if use_record and rec is not None:
            found += [(a, b, 0, "USER") for a, b in rec.id_spans(value)]
        # a name found glued to digits (jdupont42) is replaced but hides nothing from
        # the detectors: "fe" in fe80::1, "de" in DE89... must not break their matches
        masked = _masked(value, [s for s in found if not glued_to_digits(value, s[0], s[1])])
        for rank, (token, rx, check, before) in enumerate(then, 1):
            hits = _checked(rx, check, value, before)
            seen = hits if masked is value else _checked(rx, check, masked, before)
            found += [(a, b, rank, token) for a, b in {*hits, *seen}]
            masked = _masked(masked, [*hits, *seen])
        return _replace_matches(value, found, traced(rec)) if found else value

    def number(value: int | float, rec: Any) -> Any:
        if not use_record or rec is None or not rec.ids:
            return value
        if type(value) is float:
            if not value.is_integer():
                return value
            value_text = str(int(value))
        else:
            value_text = str(value)
        return traced(rec)("USER", value_text) if value_text in rec.forms else value

    return text, number


def _render_checked(match: str, check: Check, render: Callable[[str], str]) -> str:
    n = check(match)
    return render(match[:n]) + match[n:] if n else match


def _checked(rx: re.Pattern[str], check: Check | None, text: str,
             before: re.Pattern[str] | None = None) -> list[tuple[int, int]]:
    """Where ``rx`` matches and ``check`` takes the match (or the start it keeps), and
    no escape of bytes beyond ASCII before it spells a character ``before`` refuses.

    The search goes on after what was taken. A match cut short, or a short one refused,
    may have swallowed the start of a real one (``ID42 BE68 5390 0754 7034``: the IBAN
    pattern took ``ID42`` in, and the whole failed its check), so the search goes on
    inside it; long refused matches (URLs) are skipped whole, which keeps it linear."""
    spans: list[tuple[int, int]] = []
    m = rx.search(text)
    while m:
        a, size = m.start(), m.end() - m.start()
        if before is not None and _glued_after_escape(before, text, a):
            m = rx.search(text, a + 1)
            continue
        n = check(m.group(0)) if check else size
        if n:
            spans.append((a, a + n))
        if 0 < n < size:
            nxt = a + n
        elif n == 0 and size <= RETRY_INSIDE:
            nxt = a + 1
        else:
            nxt = max(m.end(), a + 1)
        m = rx.search(text, nxt) if nxt <= len(text) else None
    return spans


RETRY_INSIDE = 64
"""Refused matches up to this long are searched again from their second character."""


def _masked(text: str, spans: list[Any]) -> str:
    """``text`` with ``spans`` hidden (NULs, positions kept), as if already replaced."""
    if not spans:
        return text
    chars = list(text)
    for a, b, *_ in spans:
        chars[a:b] = "\x00" * (b - a)
    return "".join(chars)


def _replace_matches(text: str, found: list[tuple[int, int, int, str]],
                     render: Callable[[str, str], str]) -> str:
    """``text`` with every ``(start, end, rank, token)`` match replaced, all found in the
    same text: matches that overlap are replaced as one, so that no part of any of them
    survives (a user id ``12`` inside a phone number, two identifiers that share a part),
    under the token of the longest (of the lowest rank among equals: identifiers first).
    """
    found.sort()
    parts: list[str] = []
    last = i = 0
    while i < len(found):
        a, b, rank, token = found[i]
        best = (b - a, -rank, token)
        i += 1
        while i < len(found) and found[i][0] < b:
            start, end, rank, token = found[i]
            best = max(best, (end - start, -rank, token))
            b = max(b, end)
            i += 1
        parts += (text[last:a], render(best[2], text[a:b]))
        last = b
    parts.append(text[last:])
    return "".join(parts)


def deep(text: Callable[[str, Any], str], number: Callable[[Any, Any], Any]):
    """Apply a text function to every string inside a JSON value, object keys included,
    and a number function to every number (bools are not numbers here).

    Two keys that scrub to the same text (two addresses both becoming ``[EMAIL]``) keep
    both values: the second gets ``#2`` appended, the third ``#3``..., in the order of
    the input, so nothing is lost and the result does not depend on anything else.
    """

    def key(k: str, out: dict, rec: Any) -> str:
        new = text(k, rec)
        if new not in out:
            return new
        n = 2
        while f"{new}#{n}" in out:
            n += 1
        return f"{new}#{n}"

    def run(value: Any, rec: Any) -> Any:
        t = type(value)
        if t is str:
            return text(value, rec)
        if t is dict:
            out: dict[str, Any] = {}
            for k, v in value.items():
                out[key(k, out, rec)] = run(v, rec)
            return out
        if t is list:
            return [run(v, rec) for v in value]
        if t is int or t is float:
            return number(value, rec)
        return value

    return run


@action("scrub", ScrubOptions, record_aware=True,
        summary="Keep free text but replace what identifies people in it: the record's "
                "own identifiers (usernames, ids, names, e-mails of its identifying fields, "
                "also upper/lower-cased, URL-encoded or as unkeyed MD5/SHA-1/SHA-256 hex, "
                "and, for names of three characters or more, with digits glued on: "
                "jdupont42 gives [USER]42), "
                "e-mail addresses, phone numbers (French and international), IPv4/IPv6, "
                "URLs with credentials or identifying query parameters, French NIR, IBAN, "
                "hex digests, and the policy's own patterns. Each match becomes a typed "
                "token ([EMAIL]) or a keyed pseudonym, one per identifier whatever its form "
                "(see the replace option). Inside objects and arrays, every "
                "string and every key is scrubbed (keys that become equal get #2, #3... "
                "appended), and a number equal to one of the record's identifiers (a user "
                "id) becomes [USER].")
def scrub(options: ScrubOptions, ctx: BuildContext):
    return deep(*compile_scrubber(options, ctx))
