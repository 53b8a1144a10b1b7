"""The compiled kernel sldpack.init._kernels: the annex's vectors and the numpy reference's bits, exactly.

Every test runs once per loop variant the CPU supports ("generic", and "avx2" where available), so a
vectorised build cannot differ from the baseline one unnoticed. Skipped when the extension is not built.
"""

from __future__ import annotations

import itertools
import json
import math
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

K = pytest.importorskip("sldpack.init._kernels")

from sldpack.errors import UsageError  # noqa: E402
from sldpack.init import SCHEMES, generate, init_parameters, stream_words, tensor_sha256, theta0_digests  # noqa: E402
from sldpack.init.backend import c_kernel_available, resolve_backend  # noqa: E402
from sldpack.init.philox import Scratch, derive_stream  # noqa: E402
from sldpack.init.schemes import ValuePlan, fill_into, normal_rows, plan_values  # noqa: E402

VEC_DIR = Path(__file__).resolve().parents[2] / "spec" / "conformance" / "init"
VEC = json.loads((VEC_DIR / "vectors.json").read_text("utf-8"))
KAT = json.loads((VEC_DIR / "philox_kat.json").read_text("utf-8"))
RANDOM_SCHEMES = ("xavier_normal", "xavier_uniform", "kaiming_uniform", "kaiming_normal")


@pytest.fixture(params=K.variants(), autouse=True)
def variant(request: pytest.FixtureRequest) -> Iterator[str]:
    old = K.variant()
    K.use_variant(request.param)
    try:
        yield request.param
    finally:
        K.use_variant(old)


def u32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).reshape(-1).view(np.uint32)


def hexbits64(x: float) -> str:
    return f"{struct.unpack('<Q', struct.pack('<d', x))[0]:016x}"


def hexbits32(x: float) -> str:
    return f"{struct.unpack('<I', struct.pack('<f', x))[0]:08x}"


def f32_from_hex(h: str) -> float:
    return float(struct.unpack("<f", bytes.fromhex(h)[::-1])[0])


def c_values(plan: ValuePlan, start: int, count: int) -> np.ndarray:
    out = np.empty(count, dtype=np.float32)
    fill_into(out, plan, start, backend="c")
    return out


def numpy_values(plan: ValuePlan, start: int, count: int) -> np.ndarray:
    out = np.empty(count, dtype=np.float32)
    fill_into(out, plan, start, backend="numpy")
    return out


# --- the conformance files ------------------------------------------------------------------------
def test_kernel_is_selected_by_default() -> None:
    assert c_kernel_available()
    assert resolve_backend("c") == "c"
    assert K.variants()[0] == "generic"


def test_philox_kat_rows() -> None:
    assert len(KAT["rows"]) == 3
    for row in KAT["rows"]:
        args = [int(x, 16) for x in row["counter"] + row["key"]]
        assert list(K.philox4x32_10(*args)) == [int(x, 16) for x in row["expected"]]


def test_stream_vectors() -> None:
    for s in VEC["streams"]:
        st = derive_stream(s["seed"], s["name"])
        assert [f"{w:08x}" for w in (st.key0, st.key1, st.ctr2, st.ctr3)] == [*s["key"], s["ctr2"], s["ctr3"]]
        words = np.empty(12, dtype=np.uint32)
        K.fill_words(words, st.key0, st.key1, st.ctr2, st.ctr3, 0)
        assert [f"{int(w):08x}" for w in words] == s["words_0_to_11"]
        block = np.empty(4, dtype=np.uint32)
        K.fill_words(block, st.key0, st.key1, st.ctr2, st.ctr3, 4 << 32)
        assert [f"{int(w):08x}" for w in block] == s["block_4294967296"]


def test_transform_vectors() -> None:
    for c in VEC["uniform_transform"]:
        v = K.uniform_value(int(c["word"], 16), f32_from_hex(c["bound_f32"]))
        assert hexbits32(v) == c["value"]
    for c in VEC["normal_transform"]:
        zc, zs = K.normal_pair(int(c["radius_word"], 16), int(c["angle_word"], 16), c["sigma"])
        assert (hexbits64(zc), hexbits64(zs)) == (c["z_cos_f64"], c["z_sin_f64"])
        assert (hexbits32(zc), hexbits32(zs)) == (c["z_cos_f32"], c["z_sin_f32"])


def test_binary64_values_equal_the_numpy_reference() -> None:
    # Compared before the rounding to float32, which would hide a fused multiply-add or a reordered
    # operation in all but about one value in 10^8 (such a build changes ~5% of these binary64 values).
    rng = np.random.default_rng(17)
    n = 3 * 512 + 77  # several of the kernel's batches, and a partial one
    r = rng.integers(0, 2**32, size=n, dtype=np.uint64)
    t = rng.integers(0, 2**32, size=n, dtype=np.uint64)
    edges_r = [0, 1, 2, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1, 0x6A09E667, 0xB504F333, 0xB504F334]
    edges_t = [o << 29 for o in range(8)] + [(o << 29) - 1 for o in range(1, 8)] + [2**32 - 1, 2**29 + 1]
    r[: len(edges_r)] = edges_r
    t[: len(edges_t)] = edges_t
    for sigma in (1.0, 0.0123):
        want_c, want_s = normal_rows(np.stack([r, r]), np.stack([t, t]), sigma, Scratch(n))
        got_c, got_s = np.empty(n), np.empty(n)
        K.normal_f64(r.astype(np.uint32), t.astype(np.uint32), sigma, got_c, got_s)
        assert np.array_equal(got_c.view(np.uint64), want_c[0].view(np.uint64))
        assert np.array_equal(got_s.view(np.uint64), want_s[0].view(np.uint64))
        for i in range(0, n, 97):  # the scalar entry point too
            zc, zs = K.normal_pair(int(r[i]), int(t[i]), sigma)
            assert (hexbits64(zc), hexbits64(zs)) == (hexbits64(float(want_c[0, i])), hexbits64(float(want_s[0, i])))
    pairs = VEC["normal_transform"]
    rv = np.array([int(c["radius_word"], 16) for c in pairs], dtype=np.uint32)
    tv = np.array([int(c["angle_word"], 16) for c in pairs], dtype=np.uint32)
    zc_v, zs_v = np.empty(len(pairs)), np.empty(len(pairs))
    K.normal_f64(rv, tv, 1.0, zc_v, zs_v)
    assert [hexbits64(float(x)) for x in zc_v] == [c["z_cos_f64"] for c in pairs]
    assert [hexbits64(float(x)) for x in zs_v] == [c["z_sin_f64"] for c in pairs]


def test_tensor_vectors() -> None:
    for e in VEC["tensors"]:
        kw: dict[str, Any] = {"constant": e["constant"]} if "constant" in e else {}
        arr = generate(e["seed"], e["name"], tuple(e["shape"]), e["scheme"], backend="c", **kw)
        assert arr.shape == tuple(e["shape"])
        if e["values_f32"] is not None:
            assert [f"{int(b):08x}" for b in u32(arr)] == e["values_f32"], e["name"]
        assert tensor_sha256(arr) == e["sha256"], (e["name"], e["scheme"])


def test_tensor_vectors_through_the_raw_kernel() -> None:
    # without fill_into in between: the module's own entry points on the vectors' tensors
    for e in VEC["tensors"]:
        if e["scheme"] not in RANDOM_SCHEMES or math.prod(e["shape"]) == 0:
            continue
        plan = plan_values(e["seed"], e["name"], tuple(e["shape"]), e["scheme"])
        st = plan.stream
        assert st is not None
        out = np.empty(plan.count, dtype=np.float32)
        fill = K.fill_normal if plan.transform == "normal" else K.fill_uniform
        fill(out, st.key0, st.key1, st.ctr2, st.ctr3, 0, plan.scale)
        assert tensor_sha256(out) == e["sha256"]


def test_model_vector() -> None:
    (model,) = VEC["models"]
    params = [(n, tuple(s)) for n, s in model["params"]]
    assert theta0_digests(model["seed"], model["scheme"], params, backend="c") == model["theta0_sha256"]
    theta = init_parameters(model["seed"], model["scheme"], params, backend="c")
    for name, values in model["buffers"].items():
        assert theta[name].reshape(-1).tolist() == values


# --- against the numpy reference --------------------------------------------------------------------
def test_random_tensors_equal_the_numpy_reference() -> None:
    rng = np.random.default_rng(2024)
    names = ["features.0.weight", "layer4.1.conv2.weight", "fc.weight", "blöck.π.weight", "x"]
    for i in range(40):
        scheme = SCHEMES[i % len(SCHEMES)]
        rank = int(rng.integers(2, 5))
        shape = tuple(int(d) for d in rng.integers(0 if i % 9 == 0 else 1, 12, size=rank))
        seed = int(rng.integers(0, 2**64, dtype=np.uint64))
        name = names[i % len(names)]
        kw: dict[str, Any] = {"constant": -0.375} if scheme == "constant" else {}
        a = generate(seed, name, shape, scheme, backend="c", **kw)
        b = generate(seed, name, shape, scheme, backend="numpy", **kw)
        assert a.shape == b.shape == shape
        assert np.array_equal(u32(a), u32(b)), (seed, name, shape, scheme)


@pytest.mark.parametrize("scheme", RANDOM_SCHEMES)
def test_any_range_equals_the_numpy_reference(scheme: str) -> None:
    # 3 * 7919 values: odd count; the ranges cross the C batch (2048 values) and are unaligned
    shape = (3, 7919)
    plan = plan_values(7, "features.3.weight", shape, scheme)
    full = generate(7, "features.3.weight", shape, scheme, backend="numpy").reshape(-1)
    assert np.array_equal(u32(c_values(plan, 0, plan.count)), u32(full))
    rng = np.random.default_rng(hash(scheme) % 2**32)
    for start, count in [(1, 1), (2, 2), (3, 5), (5, 2047), (2047, 2050), (plan.count - 1, 1),
                         (plan.count - 3, 3), (10, 0), (plan.count, 0)]:
        assert np.array_equal(u32(c_values(plan, start, count)), u32(full[start : start + count])), (start, count)
    for _ in range(20):
        start = int(rng.integers(0, plan.count))
        count = int(rng.integers(0, plan.count - start + 1))
        got = c_values(plan, start, count)
        assert np.array_equal(u32(got), u32(full[start : start + count])), (start, count)
        assert np.array_equal(u32(numpy_values(plan, start, count)), u32(got)), (start, count)


@pytest.mark.parametrize("transform", ["normal", "uniform"])
def test_values_across_block_two_to_the_32(transform: str) -> None:
    # counter word 1 (b >> 32) changes between block 2**32 - 1 and block 2**32
    stream = derive_stream(5, "conv1.weight")
    plan = ValuePlan(transform, 0.125 if transform == "uniform" else 0.3, stream, 1 << 40)
    for start, count in [((4 << 32) - 6, 13), ((4 << 32) - 4096 - 3, 8201), ((4 << 32) - 1, 2)]:
        assert np.array_equal(u32(c_values(plan, start, count)), u32(numpy_values(plan, start, count)))
    words = np.empty(13, dtype=np.uint32)
    K.fill_words(words, stream.key0, stream.key1, stream.ctr2, stream.ctr3, (4 << 32) - 6)
    assert words.tolist() == stream_words(5, "conv1.weight", (4 << 32) - 6, 13).tolist()


def test_words_equal_the_numpy_reference_at_any_offset() -> None:
    st = derive_stream(123, "layer1.0.conv1.weight")
    for start, count in [(0, 1), (1, 3), (3, 4097), (4 * 511 + 2, 9)]:
        got = np.empty(count, dtype=np.uint32)
        K.fill_words(got, st.key0, st.key1, st.ctr2, st.ctr3, start)
        assert got.tolist() == stream_words(123, "layer1.0.conv1.weight", start, count).tolist()


def test_threads_filling_disjoint_ranges() -> None:
    # the GIL is released inside the loop; concurrent fills must not share state
    plan = plan_values(3, "classifier.0.weight", (64, 1000), "xavier_normal")
    ref = numpy_values(plan, 0, plan.count)
    out = np.empty(plan.count, dtype=np.float32)
    edges = [0, 4001, 17003, 40000, plan.count]

    def work(lo: int, hi: int) -> None:
        for _ in range(3):
            fill_into(out[lo:hi], plan, lo, backend="c")

    threads = [threading.Thread(target=work, args=(lo, hi)) for lo, hi in itertools.pairwise(edges)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert np.array_equal(u32(out), u32(ref))


# --- the module's argument checks ----------------------------------------------------------------------
def test_kernel_rejects_bad_buffers_and_words() -> None:
    args = (1, 2, 3, 4, 0)
    with pytest.raises(TypeError):
        K.fill_normal(np.empty(4, dtype=np.float64), *args, 1.0)
    with pytest.raises(TypeError):
        K.fill_words(np.empty(4, dtype=np.float32), *args)
    with pytest.raises(TypeError):
        K.fill_uniform(np.empty(4, dtype=np.uint32), *args, 0.5)
    with pytest.raises((TypeError, ValueError, BufferError)):
        K.fill_normal(np.empty(8, dtype=np.float32)[::2], *args, 1.0)  # not contiguous
    ro = np.empty(4, dtype=np.float32)
    ro.flags.writeable = False
    with pytest.raises((TypeError, ValueError, BufferError)):
        K.fill_normal(ro, *args, 1.0)
    with pytest.raises(TypeError):
        K.fill_normal(np.empty(4, dtype=np.float32), 1.5, 2, 3, 4, 0, 1.0)
    with pytest.raises(OverflowError):
        K.fill_normal(np.empty(4, dtype=np.float32), 1 << 32, 2, 3, 4, 0, 1.0)
    with pytest.raises(OverflowError):
        K.fill_normal(np.empty(4, dtype=np.float32), 1, 2, 3, 4, -1, 1.0)
    with pytest.raises(OverflowError):
        K.fill_normal(np.empty(4, dtype=np.float32), 1, 2, 3, 4, 2**64 - 2, 1.0)
    with pytest.raises(ValueError, match="sigma"):
        K.fill_normal(np.empty(4, dtype=np.float32), *args, float("nan"))
    with pytest.raises(ValueError, match="bound"):
        K.fill_uniform(np.empty(4, dtype=np.float32), *args, 0.1)  # 0.1 is not a binary32 value
    with pytest.raises(ValueError, match="not available"):
        K.use_variant("avx512")
    with pytest.raises(TypeError):
        K.normal_f64(np.zeros(3, np.uint32), np.zeros(2, np.uint32), 1.0, np.empty(3), np.empty(3))
    with pytest.raises(TypeError):
        K.normal_f64(np.zeros(3, np.uint32), np.zeros(3, np.uint32), 1.0, np.empty(3, np.float32), np.empty(3))
    K.fill_normal(np.empty(0, dtype=np.float32), *args, 1.0)  # empty: nothing to do, no error


def test_fill_into_validates_before_the_kernel() -> None:
    plan = plan_values(0, "a.weight", (2, 2), "xavier_normal")
    with pytest.raises(UsageError):
        fill_into(np.empty(4, np.float32), plan, 2, backend="c")  # beyond the tensor
    with pytest.raises(UsageError):
        fill_into(np.empty(4, np.float64), plan, 0, backend="c")
    with pytest.raises(UsageError):
        generate(0, "a.weight", (2, 2), "xavier_normal", backend="cuda")
