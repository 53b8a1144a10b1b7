"""Philox4x32-10 and stream derivation (annex SLDP-1-init.md sections 2-3).

The KAT rows are checked against the committed ``philox_kat.json`` by both the numpy implementation
and a scalar pure-Python one written here from the annex text, so a bug shared by the two numpy
forms (reference and row kernel) cannot hide.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from sldpack.errors import UsageError
from sldpack.init import derive_stream, philox4x32_10, stream_words
from sldpack.init.philox import DOMAIN_TAG, Scratch, stream_blocks

VEC = Path(__file__).resolve().parents[2] / "spec" / "conformance" / "init"
MASK = 0xFFFFFFFF


def philox_scalar(ctr: list[int], key: list[int]) -> list[int]:
    """Annex section 2, literally, on Python integers."""
    c = list(ctr)
    k0, k1 = key
    for rnd in range(10):
        if rnd:
            k0 = (k0 + 0x9E3779B9) & MASK
            k1 = (k1 + 0xBB67AE85) & MASK
        p0 = 0xD2511F53 * c[0]
        p1 = 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k0, p1 & MASK, (p0 >> 32) ^ c[3] ^ k1, p0 & MASK]
    return c


def stream_scalar(seed: int, name: str) -> tuple[list[int], int, int]:
    d = hashlib.sha256(b"SLDP-1/init\x00" + seed.to_bytes(8, "little") + name.encode("utf-8")).digest()
    w = [int.from_bytes(d[4 * i : 4 * i + 4], "little") for i in range(4)]
    return [w[0], w[1]], w[2], w[3]


def words_scalar(seed: int, name: str, start: int, count: int) -> list[int]:
    key, c2, c3 = stream_scalar(seed, name)
    out = []
    for i in range(start, start + count):
        b, j = divmod(i, 4)
        out.append(philox_scalar([b & MASK, b >> 32, c2, c3], key)[j])
    return out


def test_kat_rows_from_committed_file() -> None:
    kat = json.loads((VEC / "philox_kat.json").read_text("utf-8"))
    assert kat["algorithm"] == "philox4x32-10"
    assert len(kat["rows"]) == 3
    for row in kat["rows"]:
        ctr = [int(x, 16) for x in row["counter"]]
        key = [int(x, 16) for x in row["key"]]
        want = [int(x, 16) for x in row["expected"]]
        assert philox_scalar(ctr, key) == want
        assert philox4x32_10(ctr, key).tolist() == want


def test_kat_rows_are_random123s() -> None:
    # typed in here too, so editing the JSON cannot silently change the expectation
    zero = philox4x32_10([0, 0, 0, 0], [0, 0])
    assert [f"{x:08x}" for x in zero.tolist()] == ["6627e8d5", "e169c58d", "bc57ac4c", "9b00dbd8"]
    pi = philox4x32_10([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], [0xA4093822, 0x299F31D0])
    assert [f"{x:08x}" for x in pi.tolist()] == ["d16cfe09", "94fdcceb", "5001e420", "24126ea1"]


def test_vectorised_reference_matches_scalar_on_random_counters() -> None:
    rng = np.random.default_rng(5)
    ctr = rng.integers(0, 2**32, size=(64, 4), dtype=np.uint64)
    key = rng.integers(0, 2**32, size=(64, 2), dtype=np.uint64)
    got = philox4x32_10(ctr, key)
    assert got.dtype == np.uint32
    assert got.shape == (64, 4)
    for i in range(64):
        assert got[i].tolist() == philox_scalar(ctr[i].tolist(), key[i].tolist())


@pytest.mark.parametrize("first", [0, 7, 2**32 - 3, 2**64 - 6])
def test_row_kernel_matches_reference(first: int) -> None:
    st = derive_stream(123, "layer1.0.conv1.weight")
    r, t = stream_blocks(st, first, 6, Scratch(8))
    ctr = np.array([[(b & MASK), b >> 32, st.ctr2, st.ctr3] for b in range(first, first + 6)], dtype=np.uint64)
    ref = philox4x32_10(ctr, np.array([st.key0, st.key1], dtype=np.uint64))
    assert np.array_equal(ref[:, 0], r[0])
    assert np.array_equal(ref[:, 2], r[1])
    assert np.array_equal(ref[:, 1], t[0])
    assert np.array_equal(ref[:, 3], t[1])


def test_block_range_past_counter_space_is_refused() -> None:
    st = derive_stream(0, "x.weight")
    with pytest.raises(UsageError):
        stream_blocks(st, 2**64 - 2, 3)


def test_stream_derivation_message_and_words() -> None:
    st = derive_stream(2**64 - 1, "bl\u00f6ck.\u03c0.weight")
    key, c2, c3 = stream_scalar(2**64 - 1, "bl\u00f6ck.\u03c0.weight")
    assert [st.key0, st.key1, st.ctr2, st.ctr3] == [*key, c2, c3]
    assert DOMAIN_TAG == b"SLDP-1/init\x00"
    assert stream_words(2**64 - 1, "bl\u00f6ck.\u03c0.weight", 0, 9).tolist() == words_scalar(
        2**64 - 1, "bl\u00f6ck.\u03c0.weight", 0, 9
    )


def test_streams_match_committed_vectors() -> None:
    vec = json.loads((VEC / "vectors.json").read_text("utf-8"))
    assert bytes.fromhex(vec["domain_tag_hex"]) == DOMAIN_TAG
    assert len(vec["streams"]) >= 3
    for s in vec["streams"]:
        msg = DOMAIN_TAG + s["seed"].to_bytes(8, "little") + s["name"].encode("utf-8")
        assert msg.hex() == s["sha256_message_hex"]
        st = derive_stream(s["seed"], s["name"])
        assert [f"{st.key0:08x}", f"{st.key1:08x}"] == s["key"]
        assert (f"{st.ctr2:08x}", f"{st.ctr3:08x}") == (s["ctr2"], s["ctr3"])
        words = [f"{w:08x}" for w in stream_words(s["seed"], s["name"], 0, 12).tolist()]
        assert words == s["words_0_to_11"]
        assert words == [f"{w:08x}" for w in words_scalar(s["seed"], s["name"], 0, 12)]
        high = [f"{w:08x}" for w in stream_words(s["seed"], s["name"], 4 << 32, 4).tolist()]
        assert high == s["block_4294967296"]
        assert high == [f"{w:08x}" for w in words_scalar(s["seed"], s["name"], 4 << 32, 4)]


@pytest.mark.parametrize(("start", "count"), [(0, 0), (0, 1), (1, 6), (3, 9), (5, 4), (10, 23)])
def test_word_ranges_are_slices_of_one_stream(start: int, count: int) -> None:
    full = stream_words(9, "fc.bias", 0, 40)
    got = stream_words(9, "fc.bias", start, count)
    assert got.dtype == np.uint32
    assert np.array_equal(got, full[start : start + count])


def test_streams_differ_by_seed_and_name() -> None:
    a = stream_words(1, "a.weight", 0, 8)
    assert not np.array_equal(a, stream_words(2, "a.weight", 0, 8))
    assert not np.array_equal(a, stream_words(1, "b.weight", 0, 8))
    assert np.array_equal(a, stream_words(np.uint64(1), "a.weight", 0, 8))  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [-1, 2**64, True, 1.0, "1", None])
def test_bad_seeds_are_usage_errors(seed: object) -> None:
    with pytest.raises(UsageError):
        derive_stream(seed, "x.weight")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", None, 3, b"x.weight", "bad\ud800.weight"])
def test_bad_names_are_usage_errors(name: object) -> None:
    with pytest.raises(UsageError):
        derive_stream(0, name)  # type: ignore[arg-type]


def test_bad_philox_arguments() -> None:
    with pytest.raises(UsageError):
        philox4x32_10([0, 0, 0], [0, 0])
    with pytest.raises(UsageError):
        philox4x32_10([0, 0, 0, 2**32], [0, 0])
    with pytest.raises(UsageError):
        philox4x32_10([0.5, 0, 0, 0], [0, 0])
    with pytest.raises(UsageError):
        stream_words(0, "x.weight", -1, 3)
