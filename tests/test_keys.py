"""Master keys and key rings: format, refusals that never show the key, rotation."""

from __future__ import annotations

import os

import pytest

from pseudonym import KeyRing, KeyRingError, MasterKey, anonymise, reidentify
from pseudonym.keys import KeyFileWarning

from .conftest import make_policy


def test_generated_key_text_round_trips_and_names_its_id():
    k = MasterKey.generate()
    prefix, kid, body = k.text.split(".")
    assert prefix == "psk1" and kid == k.key_id and len(body) >= 43
    assert MasterKey.parse(k.text).key_id == k.key_id


@pytest.mark.parametrize("text", [
    "", "hello", "psk1.abc", "psk1.000000000000.c2hvcnQ",           # short body
    "psk1.000000000000.!!!!", "pse1.a.b",
])
def test_malformed_keys_are_refused(text):
    with pytest.raises(KeyRingError):
        KeyRing.parse(text)


def test_damaged_key_is_caught_and_not_echoed():
    text = MasterKey.generate().text
    body = text.split(".")[2]
    damaged = text[:-3] + ("AAA" if not text.endswith("AAA") else "BBB")
    with pytest.raises(KeyRingError) as e:
        KeyRing.parse(damaged)
    assert "damaged" in str(e.value) and body[:20] not in str(e.value)


def test_short_key_is_refused():
    from pseudonym.crypto import b64u, key_id_of
    secret = os.urandom(16)
    with pytest.raises(KeyRingError, match="too short"):
        MasterKey.parse(f"psk1.{key_id_of(secret)}.{b64u(secret)}")


def test_repr_never_shows_the_secret():
    k = MasterKey.generate()
    ring = KeyRing([k])
    body = k.text.split(".")[2]
    for shown in (repr(k), str(k), repr(ring), repr(ring.hasher("d")), repr(ring.cipher("d"))):
        assert body not in shown and k.key_id in shown


def test_from_env_and_missing_env(monkeypatch):
    k = MasterKey.generate()
    monkeypatch.setenv("PSEUDONYM_KEY", k.text)
    assert KeyRing.from_env().active.key_id == k.key_id
    monkeypatch.delenv("PSEUDONYM_KEY")
    with pytest.raises(KeyRingError, match="PSEUDONYM_KEY"):
        KeyRing.from_env()


def test_key_file_with_comments_and_rotation(tmp_path):
    new, old = MasterKey.generate(), MasterKey.generate()
    f = tmp_path / "keys"
    f.write_text(f"# active first\n{new.text}\n{old.text}  # retired 2026-01\n")
    f.chmod(0o600)
    ring = KeyRing.from_file(f)
    assert ring.active.key_id == new.key_id and ring.key_ids == [new.key_id, old.key_id]


@pytest.mark.parametrize("mode", [0o644, 0o640])
def test_key_file_readable_by_others_warns(tmp_path, mode):
    """World- or group-readable: either way the API warns (the CLI too, in
    test_hostile_policies_keys)."""
    f = tmp_path / "key"
    f.write_text(MasterKey.generate().text)
    f.chmod(mode)
    with pytest.warns(KeyFileWarning, match="chmod 600"):
        KeyRing.from_file(f)


def test_rotation_keeps_old_tokens_readable_and_changes_hashes():
    old, new = MasterKey.generate(), MasterKey.generate()
    p = make_policy([{"path": "$.a", "action": "encrypt"}, {"path": "$.b", "action": "hash"}])
    before = anonymise({"a": "alice", "b": "alice"}, p, keys=KeyRing([old]))
    rotated = KeyRing([new, old])
    after = anonymise({"a": "alice", "b": "alice"}, p, keys=rotated)
    assert reidentify(before["a"], p, keys=rotated, reason="rotation test") == "alice"
    assert after["b"] != before["b"] and after["a"] != before["a"]
    with pytest.raises(KeyRingError, match="not in the key ring"):
        reidentify(before["a"], p, keys=KeyRing([new]), reason="rotation test")
