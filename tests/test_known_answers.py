"""Published test vectors, run through the library's own crypto wrappers.

RFC 4231 (HMAC-SHA-256), RFC 5869 (HKDF-SHA-256) and RFC 5297 (AES-SIV). The last tests
tie ``Hasher`` and ``Cipher`` to exactly these primitives, so a vector that passes here
is a vector the pseudonyms are made with.
"""

from __future__ import annotations

import pytest

from pseudonym.crypto import SIV, Cipher, Hasher, hash_key, hkdf, hmac_sha256, siv_key, unb64u

h = bytes.fromhex

# RFC 4231, section 4: (key, data, HMAC-SHA-256); test case 5 is truncated to 128 bits.
RFC4231 = {
    "case1": (b"\x0b" * 20, b"Hi There",
              "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    "case2": (b"Jefe", b"what do ya want for nothing?",
              "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    "case3": (b"\xaa" * 20, b"\xdd" * 50,
              "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    "case4": (bytes(range(1, 26)), b"\xcd" * 50,
              "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    "case5": (b"\x0c" * 20, b"Test With Truncation", "a3b6167473100ee06e0c796c2955552b"),
    "case6": (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
              "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    "case7": (b"\xaa" * 131,
              b"This is a test using a larger than block-size key and a larger than "
              b"block-size data. The key needs to be hashed before being used by the HMAC "
              b"algorithm.",
              "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
}


@pytest.mark.parametrize("case", sorted(RFC4231))
def test_hmac_sha256_rfc4231(case: str) -> None:
    key, data, want = RFC4231[case]
    assert hmac_sha256(key, data).hex()[: len(want)] == want


# RFC 5869, appendix A.1-A.3: (IKM, salt, info, L, OKM).
RFC5869 = {
    "A.1": (b"\x0b" * 22, bytes(range(0x0d)), bytes(range(0xf0, 0xfa)), 42,
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
            "34007208d5b887185865"),
    "A.2": (bytes(range(0x50)), bytes(range(0x60, 0xb0)), bytes(range(0xb0, 0x100)), 82,
            "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
            "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
            "cc30c58179ec3e87c14c01d5c1f3434f1d87"),
    "A.3": (b"\x0b" * 22, b"", b"", 42,
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
            "9d201395faa4b61a96c8"),
}


@pytest.mark.parametrize("case", sorted(RFC5869))
def test_hkdf_sha256_rfc5869(case: str) -> None:
    ikm, salt, info, length, want = RFC5869[case]
    assert hkdf(ikm, info, length, salt=salt).hex() == want


# RFC 5297, appendix A.1 (deterministic) and A.2 (nonce-based: the nonce is the last
# associated-data component).
RFC5297_A1 = dict(
    key=h("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"),
    ad=[h("101112131415161718191a1b1c1d1e1f2021222324252627")],
    plaintext=h("112233445566778899aabbccddee"),
    output="85632d07c6e8f37f950acd320a2ecc9340c02b9690c4dc04daef7f6afe5c",
)
RFC5297_A2 = dict(
    key=h("7f7e7d7c7b7a79787776757473727170404142434445464748494a4b4c4d4e4f"),
    ad=[h("00112233445566778899aabbccddeeffdeaddadadeaddadaffeeddccbbaa9988"
          "7766554433221100"),
        h("102030405060708090a0"),
        h("09f911029d74e35bd84156c5635688c0")],
    plaintext=h("7468697320697320736f6d6520706c61696e7465787420746f20656e6372797074"
                "207573696e67205349562d414553"),
    output="7bdb6e3b432667eb06f4d14bff2fbd0fcb900f2fddbe404326601965c889bf17"
           "dba77ceb094fa663b7a3f748ba8af829ea64ad544a272e9c485b62a3fd5c0d",
)


@pytest.mark.parametrize("vector", [RFC5297_A1, RFC5297_A2], ids=["A.1", "A.2"])
def test_aes_siv_rfc5297(vector: dict) -> None:
    siv = SIV(vector["key"])
    out = siv.encrypt(vector["plaintext"], vector["ad"])
    assert out.hex() == vector["output"]
    assert siv.decrypt(out, vector["ad"]) == vector["plaintext"]


def test_aes_siv_rejects_a_tampered_vector() -> None:
    v = RFC5297_A1
    bad = bytearray(h(v["output"]))
    bad[-1] ^= 1
    with pytest.raises(Exception):  # noqa: B017 - cryptography's InvalidTag
        SIV(v["key"]).decrypt(bytes(bad), v["ad"])


MASTER = bytes(range(32))


def test_hasher_is_hmac_sha256_under_the_hkdf_domain_key() -> None:
    """Hasher = HMAC-SHA-256 (vectors above) keyed by HKDF (vectors above) with a fixed
    salt and info 'hash' NUL domain: the scheme the docs describe, and nothing else."""
    want_key = hkdf(MASTER, b"hash\x00course-a", 32, salt=b"pseudonym/v1")
    assert hash_key(MASTER, "course-a") == want_key
    assert Hasher(MASTER, "kid", "course-a").digest(b"alice") == hmac_sha256(want_key, b"alice")


def test_cipher_is_aes_siv_under_the_hkdf_domain_key_with_the_domain_as_ad() -> None:
    want_key = hkdf(MASTER, b"siv\x00course-a", 64, salt=b"pseudonym/v1")
    assert siv_key(MASTER, "course-a") == want_key
    token = Cipher(MASTER, "kid", "course-a").seal(b'"alice"')
    prefix, kid, body = token.split(".")
    assert (prefix, kid) == ("pse1", "kid")
    assert unb64u(body) == SIV(want_key).encrypt(b'"alice"', [b"course-a"])
