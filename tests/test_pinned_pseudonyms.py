"""Pinned pseudonyms: a fixed key text, domain and inputs give exactly these outputs.

Every longitudinal study depends on a learner keeping their pseudonym from one run (and
one library version) to the next. If one of these values changes, every pseudonym
made before changes too: that is a breaking change that needs a new scheme version
(``pseudonym/v2`` salt, ``pse2`` tokens), never a silent upgrade.
"""

from __future__ import annotations

import pytest

from pseudonym import KeyRing, MasterKey, Policy, anonymise, reidentify

KEY_TEXT = "psk1.8fdfd9b9b8e9.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
DOMAIN = "fun-mooc/pinned-test"

RULES = [
    ("hex", {}),
    ("hex64", {"length": 64, "prefix": "u-"}),
    ("b32", {"encoding": "base32"}),
    ("uuid", {"encoding": "uuid"}),
    ("int", {"encoding": "integer"}),
    ("int63", {"encoding": "integer", "bits": 63}),
    ("norm", {"normalise": ["strip", "lower"]}),
    ("num", {}),
    ("obj", {}),
]

RECORD = {
    "hex": "learner-0001", "hex64": "learner-0001", "b32": "learner-0001",
    "uuid": "learner-0001", "int": "learner-0001", "int63": "learner-0001",
    "norm": "  Alice@Example.ORG ", "num": 42, "obj": {"b": [1, 2], "a": "é"},
    "enc": "learner-0001", "encobj": {"b": [1, 2], "a": "é"},
}

PINNED = {
    "hex": "0c059ed9b67b15b48024c9ded69c73b5",
    "hex64": "u-0c059ed9b67b15b48024c9ded69c73b5e366c003ac3009ded33c9388d10f2c15",
    "b32": "bqcz5wnwpmk3jabezhpnnhdtwx",
    "uuid": "0c059ed9-b67b-85b4-8024-c9ded69c73b5",
    "int": 422984942014307,
    "int63": 433136580622650075,
    "norm": "cd5eff63a3485def7d8bfc62b5373128",
    "num": "bd64ae66d7fad6cc0536be4ffcf66513",
    "obj": "ba56cad45a0b21ab007ef1466031ac65",
    "enc": "pse1.8fdfd9b9b8e9.log522wX2VqytxxxftdyqniGhXd9LY4hYzEHOIDR",
    "encobj": "pse1.8fdfd9b9b8e9.SZBKksaVhAzMX6kZuTpTir2Bsk3u2Bcet4ZwaXS_9fYXJkK0",
}


@pytest.fixture(scope="module")
def keys() -> KeyRing:
    return KeyRing.parse(KEY_TEXT)


@pytest.fixture(scope="module")
def policy() -> Policy:
    rules = [{"path": f"$.{f}", "action": "hash", "options": o} for f, o in RULES]
    rules += [{"path": "$.enc", "action": "encrypt"}, {"path": "$.encobj", "action": "encrypt"}]
    return Policy.from_dict({"name": "pinned", "version": "1", "domain": DOMAIN,
                             "rules": rules})


def test_key_text_is_the_key_it_names() -> None:
    assert MasterKey(bytes(range(32))).text == KEY_TEXT


@pytest.mark.parametrize("field", sorted(PINNED))
def test_pinned_pseudonym(field: str, keys: KeyRing, policy: Policy) -> None:
    assert anonymise(RECORD, policy, keys=keys)[field] == PINNED[field]


def test_pinned_equivalences(keys: KeyRing, policy: Policy) -> None:
    """Documented identities the pinned values rely on: the integer and the string 42
    share a pseudonym; normalise turns the raw e-mail into its clean form first; key
    order inside an object does not matter; hex, uuid share the digest's first bytes."""
    out = anonymise({"num": "42", "norm": "alice@example.org", "obj": {"a": "é", "b": [1, 2]}},
                    policy, keys=keys)
    assert out == {"num": PINNED["num"], "norm": PINNED["norm"], "obj": PINNED["obj"]}
    assert PINNED["uuid"].replace("-", "")[:12] == PINNED["hex"][:12]


@pytest.mark.parametrize("field", ["enc", "encobj"])
def test_pinned_tokens_still_open(field: str, keys: KeyRing, policy: Policy) -> None:
    assert reidentify(PINNED[field], policy, keys=keys, reason="pinned test") == RECORD[field]


TRACE_POLICY = {"name": "pinned-trace", "version": "1", "domain": DOMAIN, "rules": [
    {"path": "$.actor", "action": "agent", "options": {"home_page": "https://fun-mooc.fr"}},
    {"path": "$.username", "action": "learner_id"},
    {"path": "$.user_id", "action": "learner_id", "options": {"encoding": "integer"}},
    {"path": "$.time", "action": "date_shift", "options": {"days": 30, "learner": "$.username"}},
    {"path": "$.text", "action": "scrub", "options": {"replace": "pseudonym"}},
]}


def test_pinned_trace_aware_pseudonyms(keys: KeyRing) -> None:
    """The keyed trace-aware actions: agent, learner_id (text and integer), the per-learner
    date shift and scrub's keyed replacement."""
    record = {"actor": {"objectType": "Agent", "mbox": "mailto:Alice@Example.org",
                        "name": "Alice"},
              "username": "alice", "user_id": 42, "time": "2026-03-01T10:20:30.123456+00:00",
              "text": "write to bob@example.net please"}
    assert anonymise(record, Policy.from_dict(TRACE_POLICY), keys=keys) == {
        "actor": {"objectType": "Agent",
                  "account": {"homePage": "https://fun-mooc.fr",
                              "name": "6hqvmfxhfdkejtt5huxzdicc37"}},
        "username": "a4hzxu6vdysgy2bfsqif67tocg",
        "user_id": 6663683851353947,
        "time": "2026-03-05T10:20:30.123456+00:00",
        "text": "write to [EMAIL:c4d248b2d31fd17f] please",
    }
