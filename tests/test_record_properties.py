"""Property: a record's identifier never survives a scrub or url rule, whatever its form."""

from __future__ import annotations

import hashlib
from urllib.parse import quote, quote_plus

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pseudonym import KeyRing, anonymise

from .conftest import make_policy

KEYS = KeyRing.generate()
POLICY = make_policy([
    {"path": "$.user", "action": "learner_id"},
    {"path": "$.text", "action": "scrub", "options": {"detectors": []}},
    {"path": "$.link", "action": "url"},
])
FORMS = {
    "raw": lambda s: s, "upper": str.upper, "lower": str.lower,
    "quote": lambda s: quote(s, safe=""), "quote_plus": quote_plus,
    "md5": lambda s: hashlib.md5(s.encode()).hexdigest(),
    "sha1": lambda s: hashlib.sha1(s.encode()).hexdigest(),
    "sha256": lambda s: hashlib.sha256(s.encode()).hexdigest(),
}
ident = st.from_regex(r"[a-z][a-z0-9._-]{2,20}[a-z0-9]", fullmatch=True)
words = st.lists(st.from_regex(r"[A-Za-z]{1,8}", fullmatch=True), max_size=5)


@settings(max_examples=150, deadline=None)
@given(user=ident, form=st.sampled_from(sorted(FORMS)), before=words, after=words)
def test_identifier_never_survives(user, form, before, after):
    planted = FORMS[form](user)
    assume(all(user not in w.lower() for w in [*before, *after]))
    assume(planted.lower() not in "https://pages.example.org/x/_user_/y")
    text = " ".join([*before, planted, *after])
    link = f"https://{planted}.pages.example.org/x/{planted}/y?u={planted}"
    out = anonymise({"user": user, "text": text, "link": link}, POLICY, keys=KEYS)
    assert planted.lower() not in out["text"].lower()
    assert planted.lower() not in out["link"].lower()
    assert out["text"].split() == [*before, "[USER]", *after]


@settings(max_examples=150, deadline=None)
@given(user=ident, form=st.sampled_from(sorted(FORMS)),
       digits=st.from_regex(r"[0-9]{1,4}", fullmatch=True))
def test_identifier_with_digits_glued_on_never_survives(user, form, digits):
    """A handle made of the identifier and a number (jdupont42) loses the identifier."""
    planted = FORMS[form](user)
    assume(planted[-1].isalpha() and planted[0].isalpha())
    others = {f(user).lower() for f in FORMS.values()} - {planted.lower()}
    for seam in (planted + digits, digits + planted):  # a000 at the end of md5("a000")000
        assume(not any(o in seam.lower() for o in others))
    out = anonymise({"user": user, "text": f"by {planted}{digits} and {digits}{planted}."},
                    POLICY, keys=KEYS)
    assert out["text"] == f"by [USER]{digits} and {digits}[USER]."
