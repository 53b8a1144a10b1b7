"""The canonical msgpack codec: agreement with the msgpack package, and strictness."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings

from sldpack.errors import FormatError, UsageError
from sldpack.format import canonical_msgpack as cm
from sldpack.testing.strategies import user_values

msgpack = pytest.importorskip("msgpack")


@settings(max_examples=300, deadline=None)
@given(user_values())
def test_matches_msgpack_package_and_round_trips(value: Any) -> None:
    data = cm.encode(value)
    # msgpack-python uses shortest forms too; with sorted keys the bytes must agree
    assert data == msgpack.packb(_sorted(value), use_bin_type=True)
    back, _ = cm.decode(data)
    assert back == _lists(value)


def _sorted(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _sorted(v[k]) for k in sorted(v, key=lambda s: s.encode())}
    if isinstance(v, (list, tuple)):
        return [_sorted(x) for x in v]
    return v


def _lists(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _lists(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_lists(x) for x in v]
    return v


@pytest.mark.parametrize(
    ("data", "code", "offset"),
    [
        (b"\x82\xa1a\x01\xa1a\x02", "E_MSGPACK_DUPLICATE_KEY", 4),
        (b"\x82\xa1b\x01\xa1a\x02", "E_MSGPACK_NONCANONICAL", 4),
        (b"\xcc\x05", "E_MSGPACK_NONCANONICAL", 0),
        (b"\xcd\x00\xff", "E_MSGPACK_NONCANONICAL", 0),
        (b"\xd0\xe0", "E_MSGPACK_NONCANONICAL", 0),  # -32 fits a negative fixint
        (b"\xd1\xff\x80", "E_MSGPACK_NONCANONICAL", 0),  # -128 fits int8
        (b"\xd9\x01a", "E_MSGPACK_NONCANONICAL", 0),
        (b"\xdc\x00\x01\xc0", "E_MSGPACK_NONCANONICAL", 0),
        (b"\xca\x00\x00\x00\x00", "E_MSGPACK_TYPE", 0),
        (b"\xd4\x01\x00", "E_MSGPACK_TYPE", 0),
        (b"\x81\x01\xc0", "E_MSGPACK_TYPE", 1),
        (b"\xc1", "E_MSGPACK", 0),
        (b"\xa3ab", "E_MSGPACK", 0),
        (b"\xc0\xc0", "E_MSGPACK", 1),
        (b"\xdd\xff\xff\xff\xff", "E_MSGPACK", 0),
        (b"\xa1\xff", "E_MSGPACK", 0),  # the value's first byte, not the bad byte
        (b"\x91" * 40 + b"\xc0", "E_MSGPACK_DEPTH", 33),
        (b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00", "E_NONFINITE", 0),
        (b"", "E_MSGPACK", 0),
    ],
)
def test_decoder_rejects_with_code_and_offset(data: bytes, code: str, offset: int) -> None:
    with pytest.raises(FormatError) as exc:
        cm.decode(data, base=100)
    assert exc.value.code == code
    assert exc.value.offset == 100 + offset


def test_offsets_point_at_values() -> None:
    data = cm.encode({"arch": {"id": "x"}, "seed": 300})
    _, offsets = cm.decode(data)
    assert data[offsets["seed"]] == 0xCD  # uint16 prefix of 300
    assert data[offsets["arch.id"]:offsets["arch.id"] + 2] == b"\xa1x"


@pytest.mark.parametrize("value", [math.nan, math.inf, {1: 2}, object(), 2**64, -(2**63) - 1])
def test_encoder_rejects(value: Any) -> None:
    with pytest.raises(UsageError):
        cm.encode(value)


def test_integer_boundaries_use_shortest_forms() -> None:
    for n, first in [(127, 0x7F), (128, 0xCC), (255, 0xCC), (256, 0xCD), (65536, 0xCE), (2**32, 0xCF),
                     (-1, 0xFF), (-32, 0xE0), (-33, 0xD0), (-129, 0xD1), (-(2**15) - 1, 0xD2),
                     (-(2**31) - 1, 0xD3)]:
        data = cm.encode(n)
        assert data[0] == first, n
        assert cm.decode(data)[0] == n
