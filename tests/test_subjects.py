"""lookup (data subject requests): the pseudonyms it gives are the ones anonymise writes."""

from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from pseudonym import anonymise
from pseudonym.audit import AuditLog
from pseudonym.keys import KeyRing, MasterKey
from pseudonym.policy import Policy
from pseudonym.subjects import lookup

XAPI = Policy.load("xapi")
EDX = Policy.load("edx")
STATEMENT = {
    "id": "4f8b2c1e-9a0d-4c3e-8f5a-2b7d6e1c9a00",
    "verb": {"id": "http://adlnet.gov/expapi/verbs/completed"},
    "object": {"id": "https://fun-mooc.fr/courses/x/video/1", "objectType": "Activity"},
    "timestamp": "2026-03-01T10:00:00+00:00",
}


@pytest.fixture(scope="module")
def ring() -> KeyRing:
    return KeyRing([MasterKey.generate(), MasterKey.generate()])


def one_key(ring: KeyRing, key_id: str) -> KeyRing:
    return KeyRing([k for k in ring._keys if k.key_id == key_id])


def actor_pseudonym(actor: dict[str, Any], keys: KeyRing) -> str:
    return anonymise({**STATEMENT, "actor": actor}, XAPI, keys=keys)["actor"]["account"]["name"]


def rows_at(rows: list[dict], path: str, read_as: str | None = None) -> dict[str, Any]:
    """key id -> pseudonym for one rule path (and way of reading the identifier)."""
    got = {r["key_id"]: r["pseudonym"] for r in rows
           if r["path"] == path and (read_as is None or r["as"] == read_as)}
    assert got, f"no row for {path} as {read_as}"
    return got


@pytest.mark.parametrize("name", ["learner-0042", "6f1c2a3e-0b4d-4e5f-8a9b-0c1d2e3f4a5b",
                                  "jdupont", "12345"])
def test_an_account_name_gets_the_actor_pseudonym_anonymise_writes(ring, name):
    result = lookup(name, XAPI, keys=ring, reason="DSR-1")
    got = rows_at(result.rows, "$.actor", "account.name")
    assert set(got) == set(ring.key_ids)
    for kid, pseudonym in got.items():
        account = {"homePage": "https://fun-mooc.fr", "name": name}
        assert pseudonym == actor_pseudonym({"account": account}, one_key(ring, kid))
    # every agent rule of the policy (authority, instructor, ...) shares that pseudonym
    agent_rows = [r for r in result.rows if r["action"] == "agent"]
    assert {r["pseudonym"] for r in agent_rows if r["key_id"] == ring.active.key_id} == {
        got[ring.active.key_id]}


@pytest.mark.parametrize("given", ["mailto:ada@example.org", "ada@example.org",
                                   "MAILTO:Ada@Example.org "])
def test_an_e_mail_address_gets_the_mbox_actor_pseudonym(ring, given):
    result = lookup(given, XAPI, keys=ring, reason="DSR-2")
    got = rows_at(result.rows, "$.actor", "mbox")
    for kid, pseudonym in got.items():
        keys = one_key(ring, kid)
        assert pseudonym == actor_pseudonym({"mbox": "mailto:ada@example.org"}, keys)
        sha = hashlib.sha1(b"mailto:ada@example.org").hexdigest()
        assert pseudonym == actor_pseudonym({"mbox_sha1sum": sha}, keys)
    if given.lower().startswith("mailto:"):
        assert not [r for r in result.rows if r["as"] == "account.name"]
    else:  # a bare address may also be an account name (platforms that log in by e-mail)
        got = rows_at(result.rows, "$.actor", "account.name")
        kid = ring.active.key_id
        assert got[kid] == actor_pseudonym({"account": {"homePage": "https://h",
                                                        "name": given}}, one_key(ring, kid))


def test_a_mailbox_sha1_and_an_openid_get_their_actor_pseudonyms(ring):
    sha = hashlib.sha1(b"mailto:ada@example.org").hexdigest().upper()
    openid = "https://id.example.org/ada"
    kid = ring.active.key_id
    keys = one_key(ring, kid)
    by_sha = rows_at(lookup(sha, XAPI, keys=ring, reason="r").rows, "$.actor", "mbox_sha1sum")
    assert by_sha[kid] == actor_pseudonym({"mbox": "mailto:ada@example.org"}, keys)
    by_id = rows_at(lookup(openid, XAPI, keys=ring, reason="r").rows, "$.actor", "openid")
    assert by_id[kid] == actor_pseudonym({"openid": openid}, keys)


def test_an_agent_given_as_json_is_taken_as_it_is(ring):
    agent = {"account": {"homePage": "https://lms.example.org", "name": "ada"}}
    got = rows_at(lookup(agent, XAPI, keys=ring, reason="r").rows, "$.actor", "agent")
    kid = ring.active.key_id
    assert got[kid] == actor_pseudonym(agent, one_key(ring, kid))


def test_edx_usernames_and_user_ids_agree_with_anonymise(ring):
    event = {"username": "jdupont", "event_type": "play_video",
             "context": {"user_id": 4242, "username": "jdupont"}, "event": {}}
    for kid in ring.key_ids:
        out = anonymise(event, EDX, keys=one_key(ring, kid))
        names = lookup("jdupont", EDX, keys=ring, reason="r").rows
        assert rows_at(names, "$.username")[kid] == out["username"]
        assert rows_at(names, "$.context.username")[kid] == out["context"]["username"]
        ids = lookup(4242, EDX, keys=ring, reason="r").rows
        assert rows_at(ids, "$.context.user_id")[kid] == out["context"]["user_id"]
    # the linkage the policies promise: the edX username's pseudonym is the xAPI account's
    xapi = rows_at(lookup("jdupont", XAPI, keys=ring, reason="r").rows, "$.actor")
    assert xapi == rows_at(lookup("jdupont", EDX, keys=ring, reason="r").rows, "$.username")


DATE_SHIFT = """\
name: shifted
version: "1"
domain: d
rules:
  - {path: $.actor, action: agent, options: {home_page: "https://p"}, why: who}
  - {path: $.timestamp, action: date_shift, options: {days: 10, learner: $.actor}, why: when}
"""


def test_record_aware_rules_are_skipped_and_said_so(ring, tmp_path):
    path = tmp_path / "shifted.yaml"
    path.write_text(DATE_SHIFT)
    policy = Policy.load(path)
    audit = tmp_path / "audit.jsonl"
    with AuditLog.open(audit) as log:
        result = lookup("learner-0042", policy, keys=ring, reason="DSR-9", audit=log)
    assert {r["rule"] for r in result.rows} == {1}
    [skip] = result.skipped
    assert skip["rule"] == 2 and skip["action"] == "date_shift"
    assert "record" in skip["why"]
    text = audit.read_text()
    assert "learner-0042" not in text
    assert '"skipped_rules":[2]' in text.replace(" ", "")


def test_a_rule_that_cannot_take_the_identifier_is_reported_not_hidden(ring):
    result = lookup({"not": "a username"}, EDX, keys=ring, reason="r")
    skipped = {s["rule"]: s for s in result.skipped}
    learner_rules = [i for i, r in enumerate(EDX.rules, 1) if r.action == "learner_id"]
    assert set(learner_rules) <= set(skipped)
    assert all("not a username" not in s["why"] for s in result.skipped)
    assert not [r for r in result.rows if r["rule"] in skipped]


def test_a_policy_with_only_record_aware_keyed_rules_is_refused(ring, tmp_path):
    from pseudonym.errors import PseudonymError
    path = tmp_path / "only.yaml"
    path.write_text(DATE_SHIFT.replace(
        '  - {path: $.actor, action: agent, options: {home_page: "https://p"}, why: who}\n',
        "  - {path: $.actor, action: keep, why: who}\n"))
    with pytest.raises(PseudonymError, match="no pseudonym"):
        lookup("learner-0042", Policy.load(path), keys=ring, reason="r")


SCRUBBED = """\
name: scrubbed
version: "1"
domain: d
rules:
  - {path: $.actor, action: agent, options: {home_page: "https://p"}, why: who}
  - {path: $.result.response, action: scrub, options: {replace: pseudonym}, why: answer}
"""


@pytest.mark.parametrize("given", ["Ada.Lovelace@Example.org", "mailto:ada.lovelace@example.org",
                                   "jdupont"])
def test_scrub_pseudonyms_in_free_text_are_found(ring, tmp_path, given):
    """A learner named in someone else's free text carries their keyed pseudonym there:
    an access or erasure request must find that record too."""
    path = tmp_path / "scrubbed.yaml"
    path.write_text(SCRUBBED)
    policy = Policy.load(path)
    address = "ada.lovelace@example.org"
    mention = {"actor": {"account": {"homePage": "https://h", "name": "bob"}},
               "result": {"response": "ask Ada.Lovelace@Example.org"}}
    own = {"actor": {"account": {"homePage": "https://h", "name": "jdupont"}},
           "result": {"response": "I am jdupont"}}
    result = lookup(given, policy, keys=ring, reason="DSR-3")
    got = rows_at(result.rows, "$.result.response", "free text")
    assert set(got) == set(ring.key_ids)
    assert not result.skipped
    for kid, pseudonym in got.items():
        keys = one_key(ring, kid)
        record = own if given == "jdupont" else mention
        text = anonymise(record, policy, keys=keys)["result"]["response"]
        assert f":{pseudonym}]" in text
        other = anonymise(mention if given == "jdupont" else own, policy, keys=keys)
        assert pseudonym not in other["result"]["response"]
    assert address not in str(result.rows)


def forms_in_text(identifier: str) -> tuple[dict[str, str], dict[str, str]]:
    """The forms of an identifier scrub recognises: as written (any case, URL-encoded),
    and its unkeyed digests."""
    written = {"plain": identifier, "upper": identifier.upper(),
               "swapped": identifier.swapcase(), "urlencoded": quote(identifier, safe=""),
               "urlencoded_plus": quote_plus(identifier)}
    digests = {f"{name} {case}": hashlib.new(name, text.encode()).hexdigest()
               for case, text in (("as given", identifier), ("lower", identifier.lower()),
                                  ("upper", identifier.upper()))
               for name in ("md5", "sha1", "sha256")}
    if "@" in identifier:
        mailto = f"mailto:{identifier}"
        written |= {"mailto": mailto, "mailto urlencoded": quote(mailto, safe="")}
        digests["mbox_sha1sum"] = hashlib.sha1(mailto.encode()).hexdigest()
    return written, digests


PEOPLE = {"Ada.Lovelace@example.org": {"mbox": "mailto:Ada.Lovelace@example.org"},
          "Jean Dupont": {"account": {"homePage": "https://h", "name": "Jean Dupont"}}}
BOB = {"account": {"homePage": "https://h", "name": "bob"}}
PSEUDONYM = re.compile(r"\[[A-Z]+:([0-9a-f]{16})\]")


def scrubbed(actor: dict[str, Any], text: str, policy: Policy, keys: KeyRing) -> list[str]:
    """The pseudonyms scrub writes for ``text`` in a record of ``actor``."""
    record = {"actor": actor, "result": {"response": f"by {text} now"}}
    return PSEUDONYM.findall(anonymise(record, policy, keys=keys)["result"]["response"])


@pytest.mark.parametrize("identifier", sorted(PEOPLE))
def test_lookup_finds_every_form_scrub_writes_of_a_person(ring, tmp_path, identifier):
    """Found by review: scrub wrote a URL-encoded or digest form under the pseudonym of its
    own text, and lookup gave the plain form's only: an access or erasure request missed
    those records. In the person's own records every form gets their pseudonym; in
    others', what scrub finds there (an address in any form, a digest it cannot trace)
    gets a pseudonym lookup gives too."""
    path = tmp_path / "scrubbed.yaml"
    path.write_text(SCRUBBED)
    policy = Policy.load(path)
    result = lookup(identifier, policy, keys=ring, reason="DSR-4")
    written, digests = forms_in_text(identifier)
    in_others = {**digests, **(written if "@" in identifier else {})}
    for kid in ring.key_ids:
        keys = one_key(ring, kid)
        found = {r["pseudonym"] for r in result.rows
                 if r["key_id"] == kid and r["action"] == "scrub"}
        plain = rows_at(result.rows, "$.result.response", "free text")[kid]
        for name, form in {**written, **digests}.items():
            assert scrubbed(PEOPLE[identifier], form, policy, keys) == [plain], name
        for name, form in in_others.items():
            got = scrubbed(BOB, form, policy, keys)
            assert got and set(got) <= found, name
        bob = scrubbed(BOB, "bob@example.net " + hashlib.md5(b"bob@example.net").hexdigest(),
                       policy, keys)
        assert len(bob) == 2 and not set(bob) & found
    assert identifier.lower() not in str(result.rows).lower()


def test_lookup_gives_digest_pseudonyms_where_scrub_writes_them(ring, tmp_path):
    """Each row says what it is the pseudonym of; a scrub rule without the hex_digest
    detector leaves digests it cannot trace alone, and gets none of them."""
    path = tmp_path / "scrubbed.yaml"
    path.write_text(SCRUBBED + "  - {path: $.result.extensions, action: scrub, why: notes,\n"
                               "     options: {replace: pseudonym, detectors: [email]}}\n")
    result = lookup("mailto:Ada@example.org", Policy.load(path), keys=ring, reason="r")
    kid = ring.active.key_id
    sha1 = hashlib.sha1(b"mailto:ada@example.org").hexdigest()
    row = next(r for r in result.rows if r["key_id"] == kid and r["path"] == "$.result.response"
               and r["as"] == "free text, SHA-1 hex, lower case")
    record = {"actor": BOB, "result": {"response": sha1}}
    out = anonymise(record, Policy.load(path), keys=one_key(ring, kid))
    assert out["result"]["response"] == f"[HASH:{row['pseudonym']}]"
    assert {r["as"] for r in result.rows if r["path"] == "$.result.extensions"} == {
        "free text"}
