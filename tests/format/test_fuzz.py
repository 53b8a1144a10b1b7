"""Hypothesis: round trips over random files; mutations of valid files raise only SldpError."""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sldpack
from sldpack.testing.strategies import manifests, sldp_files, tensor_sets

MUTATION_EXAMPLES = int(os.environ.get("SLDP_MUTATION_EXAMPLES", "2000"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifests(), tensor_sets(), st.sampled_from(["none", "zstd"]))
def test_round_trip(manifest: sldpack.Manifest, tensors: dict[str, sldpack.Tensor], compression: str) -> None:
    data = sldpack.encode(manifest, tensors, compression=compression, level=1)
    with sldpack.read(data) as f:
        assert f.manifest.arch == manifest.arch
        assert f.manifest.init == manifest.init
        assert f.manifest.distill == manifest.distill
        assert f.manifest.labels == manifest.labels
        assert f.manifest.preprocessing == manifest.preprocessing
        assert dict(f.manifest.user) == _lists(dict(manifest.user))
        for name, t in tensors.items():
            got = f.tensor(name)
            if t.dtype == "BF16":
                np.testing.assert_allclose(got, t.array, rtol=2**-8)
            else:
                np.testing.assert_array_equal(got, t.array)
    # the stored manifest re-encodes to the identical file
    assert sldpack.encode(f.manifest, tensors, compression=compression, level=1) == data


def _lists(v: object) -> object:
    if isinstance(v, dict):
        return {k: _lists(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_lists(x) for x in v]
    return v


def _content(data: bytes) -> tuple[object, dict[str, bytes]] | None:
    try:
        with sldpack.read(data) as f:
            return f.manifest, {n: f.tensor(n).tobytes() for n in f.manifest.tensors}
    except sldpack.SldpError:
        return None


@st.composite
def _mutations(draw: st.DrawFn) -> tuple[bytes, bytes]:
    data = draw(sldp_files())
    kind = draw(st.sampled_from(["truncate", "flip", "splice", "insert", "delete"]))
    buf = bytearray(data)
    if kind == "truncate":
        buf = buf[:draw(st.integers(0, len(buf) - 1))]
    elif kind == "flip":
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(buf) - 1))
            buf[i] ^= 1 << draw(st.integers(0, 7))
    elif kind == "splice":
        i = draw(st.integers(0, len(buf) - 1))
        chunk = draw(st.binary(min_size=1, max_size=16))
        buf[i:i + len(chunk)] = chunk
    elif kind == "insert":
        i = draw(st.integers(0, len(buf)))
        buf[i:i] = draw(st.binary(min_size=1, max_size=8))
    else:
        i = draw(st.integers(0, len(buf) - 1))
        del buf[i:i + draw(st.integers(1, 8))]
    return data, bytes(buf)


@settings(max_examples=MUTATION_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_mutations())
def test_mutation_raises_only_sldp_error_or_reads_identically(pair: tuple[bytes, bytes]) -> None:
    original, mutated = pair
    got = _content(mutated)  # any exception other than SldpError fails the test here
    if got is not None:
        assert got == _content(original)
