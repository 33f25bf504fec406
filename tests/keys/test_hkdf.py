import pytest

from masquerade.keys.hkdf import (
    encode_info,
    hkdf_expand,
    hkdf_extract,
    stream_password,
    track_password,
)

# RFC 5869 appendix A, test cases 1-3 (SHA-256)
RFC5869 = [
    (
        bytes([0x0B] * 22),
        bytes(range(0x00, 0x0D)),
        bytes(range(0xF0, 0xFA)),
        42,
        "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
    ),
    (
        bytes(range(0x00, 0x50)),
        bytes(range(0x60, 0xB0)),
        bytes(range(0xB0, 0x100)),
        82,
        "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244",
        "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
        "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
        "cc30c58179ec3e87c14c01d5c1f3434f1d87",
    ),
    (
        bytes([0x0B] * 22),
        b"",
        b"",
        42,
        "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
    ),
]


@pytest.mark.parametrize(("ikm", "salt", "info", "length", "prk", "okm"), RFC5869)
def test_rfc5869_vectors(ikm, salt, info, length, prk, okm):
    got_prk = hkdf_extract(salt, ikm)
    assert got_prk.hex() == prk
    assert hkdf_expand(got_prk, info, length).hex() == okm


def test_expand_rejects_impossible_lengths():
    with pytest.raises(ValueError):
        hkdf_expand(bytes(32), b"", 255 * 32 + 1)


def test_info_encoding_is_unambiguous():
    assert encode_info("x", "ab", "c") != encode_info("x", "a", "bc")
    assert encode_info("x", 1, None) != encode_info("x", 1)
    assert encode_info("x", "1") != encode_info("x", 1)


def test_key_hierarchy_separates_streams_tracks_and_epochs():
    master = bytes(range(32))
    s1, s2 = stream_password(master, "cam-1"), stream_password(master, "cam-2")
    assert len(s1) == 32 and s1 != s2
    assert stream_password(master, "cam-1") == s1
    tracks = {track_password(s1, t, e) for t in range(3) for e in (None, 0, 1)}
    assert len(tracks) == 9
    assert track_password(s1, 0) != track_password(s2, 0)
