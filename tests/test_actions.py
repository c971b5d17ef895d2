"""Each action on its own: what it does to a value, and what it refuses."""

from __future__ import annotations

import re
import uuid

import pytest

from pseudonym import KeyRing, PolicyError, RecordError, anonymise, reidentify
from pseudonym.actions import REGISTRY, REMOVE, ActionError, BuildContext

from .conftest import make_policy


def build(name, keys=None, domain="d", **options):
    act = REGISTRY[name]
    return act.build(act.options.model_validate(options), BuildContext(domain, keys))


def test_keep_and_drop_are_structural():
    assert REGISTRY["keep"].structural == "keep" and REGISTRY["drop"].structural == "drop"
    p = make_policy([{"path": "$.a", "action": "keep"}, {"path": "$.b", "action": "drop"}],
                    unmatched="keep")
    assert anonymise({"a": {"x": 1}, "b": {"y": 2}, "c": 3}, p) == {"a": {"x": 1}, "c": 3}


@pytest.mark.parametrize(("good", "bad"), [
    ({"a": "x"}, [{"a": {"email": "SECRET"}}, {"a": 1}, {"a": None}, {"a": ["SECRET"]}]),
    ({"l": [1, None]}, [{"l": [True]}, {"l": [1.5]}, {"l": ["1"]}, {"l": [{"x": "SECRET"}]}]),
])
def test_keep_with_a_type_keeps_only_that_type(good, bad):
    """An object where an id or a timestamp should be would otherwise be kept whole, with
    whatever it holds (found by review): with ``type``, it rejects the record."""
    p = make_policy([
        {"path": "$.a", "action": "keep", "options": {"type": "text"}},
        {"path": "$.l[*]", "action": "keep", "options": {"type": ["integer", "null"]}}])
    assert anonymise(good, p) == good
    for record in bad:
        with pytest.raises(RecordError) as e:
            anonymise(record, p)
        assert e.value.kind == "action-failed" and e.value.rule == (1 if "a" in record else 2)
        assert "SECRET" not in str(e.value) and "expected" in str(e.value)


def test_keep_type_counts_as_kept_and_refuses_containers():
    p = make_policy([{"path": "$.a", "action": "keep", "options": {"type": "text"}}])
    from pseudonym.engine import RunStats, compile_plan, run_block
    stats = RunStats()
    assert run_block(compile_plan(p), b'{"a": "x"}\n', stats) == b'{"a":"x"}\n'
    for bad in ("object", []):
        with pytest.raises(PolicyError, match=r"options\.type"):
            make_policy([{"path": "$.a", "action": "keep", "options": {"type": bad}}])


def test_redact_replaces_with_the_rules_constant():
    assert build("redact")("secret") == "[REDACTED]"
    assert build("redact", value=None)({"a": 1}) is None
    assert build("redact", value="[NAME]")("Alice") == "[NAME]"


@pytest.mark.parametrize(("options", "pattern"), [
    ({}, r"[0-9a-f]{32}"),
    ({"length": 16}, r"[0-9a-f]{16}"),
    ({"encoding": "base32"}, r"[a-z2-7]{26}"),
    ({"encoding": "base32", "length": 40}, r"[a-z2-7]{40}"),
    ({"encoding": "hex", "prefix": "u-"}, r"u-[0-9a-f]{32}"),
])
def test_hash_text_encodings(keys, options, pattern):
    out = build("hash", keys, **options)("alice@example.org")
    assert re.fullmatch(pattern, out)


def test_hash_uuid_encoding_is_a_valid_uuid(keys):
    out = build("hash", keys, encoding="uuid")("alice")
    u = uuid.UUID(out)
    assert str(u) == out and u.version == 8 and u.variant == uuid.RFC_4122


def test_hash_integer_encoding_is_a_positive_integer_of_the_asked_size(keys):
    for bits in (32, 53, 63):
        fn = build("hash", keys, encoding="integer", bits=bits)
        values = [fn(i) for i in range(200)]
        assert all(isinstance(v, int) and 1 <= v < 2**bits for v in values)
        assert len(set(values)) == 200


def test_hash_is_keyed_deterministic_and_domain_bound(keys):
    a = build("hash", keys)("alice")
    assert a == build("hash", keys)("alice")
    assert a != build("hash", keys, domain="other")("alice")
    assert a != build("hash", KeyRing.generate())("alice")
    import hashlib
    for algo in ("md5", "sha1", "sha256"):
        assert hashlib.new(algo, b"alice").hexdigest()[:32] != a


def test_hash_normalisation_merges_case_and_spaces(keys):
    fn = build("hash", keys, normalise=["strip", "lower"])
    assert fn("A@x.fr") == fn(" a@x.fr ") == fn("a@x.fr")
    assert build("hash", keys)("A@x.fr") != build("hash", keys)("a@x.fr")


def test_hash_canonical_form_links_number_and_its_text(keys):
    fn = build("hash", keys, encoding="integer")
    assert fn(42) == fn("42")
    assert fn({"b": 1, "a": 2}) == fn({"a": 2, "b": 1})
    assert fn(None) is None


def test_hash_options_are_checked():
    from pydantic import ValidationError
    with pytest.raises(ValidationError):
        REGISTRY["hash"].options.model_validate({"encoding": "uuid", "length": 20})
    with pytest.raises(ValidationError):
        REGISTRY["hash"].options.model_validate({"length": 8})
    with pytest.raises(ValidationError):
        REGISTRY["hash"].options.model_validate({"salt": "x"})


def test_hash_without_key_is_refused_at_compile_time():
    from pseudonym import KeyRingError
    p = make_policy([{"path": "$.a", "action": "hash"}])
    with pytest.raises(KeyRingError, match="needs a key"):
        anonymise({"a": 1}, p)


@pytest.mark.parametrize("value", ["alice", 42, 4.5, True, ["x", {"y": None}], {"k": "v"}])
def test_encrypt_round_trips_any_json_value(keys, value):
    p = make_policy([{"path": "$.a", "action": "encrypt"}])
    token = anonymise({"a": value}, p, keys=keys)["a"]
    assert token.startswith(f"pse1.{keys.active.key_id}.")
    assert token == anonymise({"a": value}, p, keys=keys)["a"]
    assert reidentify(token, p, keys=keys, reason="test") == value


@pytest.mark.parametrize("action", ["hash", "encrypt"])
def test_normalise_reaches_strings_inside_objects_and_lists_alike(keys, action):
    """An actor object or a list of addresses links whatever the case and spacing, with
    encrypt as with hash."""
    fn = build(action, keys, normalise=["strip", "lower"])
    assert fn({"mbox": " A@x.fr", "tags": ["B "]}) == fn({"mbox": "a@x.fr", "tags": ["b"]})
    assert fn(["A@x.fr"]) == fn(["a@x.fr "])


def test_encrypt_token_opens_only_in_its_domain(keys):
    p = make_policy([{"path": "$.a", "action": "encrypt"}])
    other = make_policy([{"path": "$.a", "action": "encrypt"}], domain="elsewhere")
    token = anonymise({"a": "alice"}, p, keys=keys)["a"]
    from pseudonym import KeyRingError
    with pytest.raises(KeyRingError):
        reidentify(token, other, keys=keys, reason="test")


def test_generalise_timestamps_keep_their_format():
    cases = {
        "second": ("2021-11-29T23:09:00.867219+00:00", "2021-11-29T23:09:00+00:00"),
        "minute": ("2021-11-29T23:09:41Z", "2021-11-29T23:09:00Z"),
        "hour": ("2021-11-29T23:09:41.5+01:00", "2021-11-29T23:00:00+01:00"),
        "day": ("2021-11-29T23:09:41", "2021-11-29T00:00:00"),
        "month": ("2021-11-29", "2021-11-01"),
    }
    for unit, (before, after) in cases.items():
        assert build("generalise", kind="timestamp", unit=unit)(before) == after
    assert build("generalise", kind="timestamp", unit="hour")(1638227340.5) == 1638226800


def test_generalise_ip_to_prefix():
    fn = build("generalise", kind="ip", ipv4_prefix=16, ipv6_prefix=32)
    assert fn("172.18.45.201") == "172.18.0.0"
    assert fn("2001:db8:85a3::8a2e:370:7334") == "2001:db8::"


def test_generalise_numbers_into_buckets():
    by_width = build("generalise", kind="number", width=10)
    assert [by_width(v) for v in (0, 9, 10, 37.5, -1)] == [0, 0, 10, 30, -10]
    by_bounds = build("generalise", kind="number", bounds=[18, 25, 65])
    assert [by_bounds(v) for v in (12, 18, 30, 70)] == ["<18", "18-25", "25-65", ">=65"]


def test_generalise_by_decimal_width_puts_bounds_in_their_own_bucket():
    """In binary, 0.3 / 0.1 is 2.9999999999999996: a scaled score of 0.3 went to the
    bucket of 0.2, and 0.6 with width 0.2 to that of 0.4."""
    tenths = build("generalise", kind="number", width=0.1)
    assert [tenths(v) for v in (0.3, 0.6, 0.7, 0.75, 1, -0.3)] == [0.3, 0.6, 0.7, 0.7, 1, -0.3]
    assert build("generalise", kind="number", width=0.2)(0.6) == 0.6
    shifted = build("generalise", kind="number", width=0.1, origin=0.05)
    assert [shifted(v) for v in (0.35, 0.34)] == [0.35, 0.25]


@pytest.mark.parametrize(("width", "origin"), [(0.1, 0), (0.2, 0.05), (7, 5), (0.1, 1e15)])
def test_generalise_by_width_gives_the_decimal_bucket_of_every_value(width, origin):
    """Bucketing takes the binary shortcut away from a bound only: near one, and far from
    the origin, the bucket is still the one decimal arithmetic gives."""
    from fractions import Fraction
    fn = build("generalise", kind="number", width=width, origin=origin)
    w, o = Fraction(repr(width)), Fraction(repr(float(origin)))
    for k in range(-30, 30):
        for v in (float(k * w + o), float(k * w + o + w / 2), k * 7 + 3):
            want = float((Fraction(repr(v)) - o) // w * w + o)
            assert fn(v) == want, v


def test_generalise_wrong_type_rejects_the_record_without_echoing_it():
    p = make_policy([{"path": "$.t", "action": "generalise",
                      "options": {"kind": "timestamp", "unit": "day"}}])
    with pytest.raises(RecordError) as e:
        anonymise({"t": "alice@example.org"}, p)
    assert e.value.kind == "action-failed" and e.value.rule == 1
    assert "alice" not in str(e.value)
    with pytest.raises(ActionError):
        build("generalise", kind="ip")({"not": "an ip"})


def test_remove_sentinel_is_unique():
    assert repr(REMOVE) == "REMOVE"


@pytest.mark.parametrize("name", ["hash", "learner_id"])
def test_keyed_memo_is_bounded_and_never_changes_a_pseudonym(monkeypatch, name):
    """Keyed actions remember recent pseudonyms (learners' statements come in runs). The
    memo must give what the key gives, stay within its size, and forget when full."""
    from pseudonym.actions import keyed

    keys = KeyRing.generate()
    long = "x" * (keyed.MEMO_VALUE_BYTES + 1)
    fresh = {v: build(name, keys)(v) for v in [*map(str, range(12)), long]}
    monkeypatch.setattr(keyed, "MEMO_ENTRIES", 4)
    computed: list[bytes] = []
    real = BuildContext.hasher

    def spying_hasher(self, action):
        h = real(self, action)

        class Spy:
            key_id = h.key_id

            @staticmethod
            def digest(data: bytes) -> bytes:
                computed.append(data)
                return h.digest(data)
        return Spy()

    monkeypatch.setattr(BuildContext, "hasher", spying_hasher)
    run = build(name, keys)
    for _ in range(3):
        assert run("1") == fresh["1"]
    assert len(computed) == 1, "a value seen moments ago is not recomputed"
    for v in map(str, range(12)):
        assert run(v) == fresh[v]
    assert run("1") == fresh["1"]
    assert len(computed) == 1 + 12, "the memo forgot once it held MEMO_ENTRIES values"
    assert run(long) == run(long) == fresh[long]
    assert len(computed) == 13 + 2, "a long value (free text) is never remembered"
