"""Schemes, transforms, kinds and digests of the portable theta0 (annex SLDP-1-init.md sections 4-9).

``spec_*`` below re-implement the annex on Python floats (IEEE binary64, correctly rounded + - * /
and math.sqrt), math.frexp and struct's float32 rounding, one value at a time: an executable reading
of the spec, independent of the vectorised numpy kernels it checks.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import sldpack.init.schemes as schemes_mod
from sldpack.errors import UsageError
from sldpack.init import (
    SCHEMES,
    fans,
    generate,
    init_parameters,
    param_kind,
    stream_words,
    tensor_sha256,
    theta0_digests,
)
from sldpack.init.philox import Scratch
from sldpack.init.schemes import (
    HALF_PI_2M30,
    LN2,
    LOG_COEFFS,
    SIN_COEFFS,
    SQRT_HALF,
    _uniform_rows,
    fill_into,
    normal_rows,
    plan_values,
)

REPO = Path(__file__).resolve().parents[2]
VEC = json.loads((REPO / "spec" / "conformance" / "init" / "vectors.json").read_text("utf-8"))


# --- the annex, one value at a time ------------------------------------------------------------
def f32bits(x: float) -> int:
    return int(struct.unpack("<I", struct.pack("<f", x))[0])


def f64bits(x: float) -> int:
    return int(struct.unpack("<Q", struct.pack("<d", x))[0])


def spec_uniform(w: int, b32: float) -> int:
    k = w >> 8
    return f32bits(float(k - 2**23) * 2.0**-23 * b32)  # exact product, then one rounding


def spec_normal(r: int, t: int, sigma: float) -> tuple[float, float]:
    m = float(r + 1)
    f, e = math.frexp(m)
    if f < math.sqrt(0.5):
        f, e = 2.0 * f, e - 1
    s = (f - 1.0) / (f + 1.0)
    z = s * s
    p = 1.0 / 21.0
    for k in range(9, -1, -1):
        p = p * z + 1.0 / (2 * k + 1)
    a = float(32 - e) * math.log(2.0) - (s + s) * p
    rho = math.sqrt(a + a) * sigma
    o = t >> 29
    w = t % 2**30
    phi = float(min(w, 2**30 - w)) * ((math.pi / 2) * 2.0**-30)
    y = phi * phi
    q = 1.0 / math.factorial(17)
    for k in range(7, 0, -1):
        q = q * y + (-1.0) ** k * (1.0 / math.factorial(2 * k + 1))
    sn = phi + (phi * y) * q
    cs = math.sqrt(1.0 - sn * sn)
    table = {0: (cs, sn), 1: (sn, cs), 2: (-sn, cs), 3: (-cs, sn),
             4: (-cs, -sn), 5: (-sn, -cs), 6: (sn, -cs), 7: (cs, -sn)}
    a_, b_ = table[o]
    zc = math.copysign(abs(a_) * rho, a_)
    zs = math.copysign(abs(b_) * rho, b_)
    return zc, zs


def spec_scale(scheme: str, shape: tuple[int, ...]) -> float:
    rec = math.prod(shape[2:])
    fi, fo = shape[1] * rec, shape[0] * rec
    if scheme == "xavier_normal":
        return math.sqrt(2.0 / float(fi + fo))
    if scheme == "xavier_uniform":
        return f32(math.sqrt(3.0) * math.sqrt(2.0 / float(fi + fo)))
    if scheme == "kaiming_normal":
        return math.sqrt(2.0) / math.sqrt(float(fi))
    return f32(math.sqrt(3.0) * (math.sqrt(2.0) / math.sqrt(float(fi))))


def f32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def spec_generate(seed: int, name: str, shape: tuple[int, ...], scheme: str) -> list[int]:
    """float32 bit patterns of a random-scheme tensor, by the annex."""
    n = math.prod(shape)
    words = stream_words(seed, name, 0, n + (n % 2)).tolist()
    scale = spec_scale(scheme, shape)
    if scheme.endswith("uniform"):
        return [spec_uniform(w, scale) for w in words[:n]]
    out = []
    for q in range(0, len(words), 2):
        zc, zs = spec_normal(words[q], words[q + 1], scale)
        out += [f32bits(zc), f32bits(zs)]
    return out[:n]


def bits(a: np.ndarray) -> list[int]:
    return [int(x) for x in np.ascontiguousarray(a, dtype="<f4").reshape(-1).view("<u4")]


# --- constants -----------------------------------------------------------------------------------
def test_constants_are_the_annexs() -> None:
    assert f64bits(LN2) == 0x3FE62E42FEFA39EF
    assert f64bits(SQRT_HALF) == 0x3FE6A09E667F3BCD
    assert f64bits(HALF_PI_2M30) == 0x3E1921FB54442D18
    assert [f64bits(c) for c in LOG_COEFFS] == [
        0x3FF0000000000000, 0x3FD5555555555555, 0x3FC999999999999A, 0x3FC2492492492492,
        0x3FBC71C71C71C71C, 0x3FB745D1745D1746, 0x3FB3B13B13B13B14, 0x3FB1111111111111,
        0x3FAE1E1E1E1E1E1E, 0x3FAAF286BCA1AF28, 0x3FA8618618618618]
    assert [f64bits(c) for c in SIN_COEFFS] == [
        0xBFC5555555555555, 0x3F81111111111111, 0xBF2A01A01A01A01A, 0x3EC71DE3A556C734,
        0xBE5AE64567F544E4, 0x3DE6124613A86D09, 0xBD6AE7F3E733B81F, 0x3CE952C77030AD4A]
    assert SCHEMES == ("xavier_normal", "xavier_uniform", "kaiming_uniform", "kaiming_normal",
                       "zeros", "ones", "constant")


# --- transforms against the annex ------------------------------------------------------------------
def _edge_and_random_words(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    r = rng.integers(0, 2**32, size=n, dtype=np.uint64)
    t = rng.integers(0, 2**32, size=n, dtype=np.uint64)
    edges_r = [0, 1, 2, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1, 0x6A09E667, 0xB504F333, 0xB504F334]
    edges_t = [o << 29 for o in range(8)] + [(o << 29) - 1 for o in range(1, 8)] + [2**32 - 1, 2**29 + 1]
    r[: len(edges_r)] = edges_r
    t[: len(edges_t)] = edges_t
    return r, t


def test_normal_kernel_equals_scalar_annex() -> None:
    r, t = _edge_and_random_words(3000)
    zc, zs = normal_rows(np.stack([r, r]), np.stack([t, t]), 0.37, Scratch(3000))
    for i in range(3000):
        ec, es = spec_normal(int(r[i]), int(t[i]), 0.37)
        assert f64bits(float(zc[0, i])) == f64bits(ec), (hex(int(r[i])), hex(int(t[i])))
        assert f64bits(float(zs[0, i])) == f64bits(es), (hex(int(r[i])), hex(int(t[i])))


def test_uniform_kernel_equals_scalar_annex() -> None:
    r, _ = _edge_and_random_words(2000)
    b32 = f32(math.sqrt(3.0) * math.sqrt(2.0 / 300.0))
    v = _uniform_rows(np.stack([r, r]), b32, np.empty((2, 2000)))
    assert bits(v[0].astype(np.float32)) == [spec_uniform(int(w), b32) for w in r]
    assert float(v.min()) >= -b32
    assert float(v.max()) < b32


def test_normal_kernel_is_accurate_box_muller() -> None:
    # against libm in float64: a few ulps of the radius; float32 results almost always identical
    rng = np.random.default_rng(3)
    r = rng.integers(0, 2**32, size=(2, 100_000), dtype=np.uint64)
    t = rng.integers(0, 2**32, size=(2, 100_000), dtype=np.uint64)
    rad = np.sqrt(-2.0 * np.log((r.astype(np.float64) + 1.0) * 2.0**-32))
    th = 2.0 * np.pi * t.astype(np.float64) * 2.0**-32
    zc, zs = normal_rows(r.copy(), t.copy(), 1.0, Scratch(100_000))
    for got, want in ((zc, rad * np.cos(th)), (zs, rad * np.sin(th))):
        assert float(np.max(np.abs(got - want) / np.maximum(rad, 1e-300))) < 4e-15
        assert int(np.sum(got.astype(np.float32) != want.astype(np.float32))) < 20  # of 200 000


def test_transform_vectors() -> None:
    for c in VEC["uniform_transform"]:
        b32 = struct.unpack("<f", bytes.fromhex(c["bound_f32"])[::-1])[0]
        assert f"{spec_uniform(int(c['word'], 16), b32):08x}" == c["value"]
        v = _uniform_rows(np.array([[int(c["word"], 16)]] * 2, dtype=np.uint64), b32, np.empty((2, 1)))
        assert f"{bits(v[0].astype(np.float32))[0]:08x}" == c["value"]
    pairs = VEC["normal_transform"]
    assert len(pairs) >= 8
    r = np.array([[int(c["radius_word"], 16) for c in pairs]] * 2, dtype=np.uint64)
    t = np.array([[int(c["angle_word"], 16) for c in pairs]] * 2, dtype=np.uint64)
    zc, zs = normal_rows(r, t, 1.0, Scratch(len(pairs)))
    for i, c in enumerate(pairs):
        ec, es = spec_normal(int(c["radius_word"], 16), int(c["angle_word"], 16), c["sigma"])
        assert (f"{f64bits(ec):016x}", f"{f64bits(es):016x}") == (c["z_cos_f64"], c["z_sin_f64"])
        assert (f"{f64bits(float(zc[0, i])):016x}", f"{f64bits(float(zs[0, i])):016x}") == (
            c["z_cos_f64"], c["z_sin_f64"])
        assert (f"{f32bits(ec):08x}", f"{f32bits(es):08x}") == (c["z_cos_f32"], c["z_sin_f32"])


# --- tensors ---------------------------------------------------------------------------------------
def _kw(entry: dict[str, Any]) -> dict[str, Any]:
    return {"constant": entry["constant"]} if "constant" in entry else {}


def test_tensor_vectors() -> None:
    assert {e["scheme"] for e in VEC["tensors"]} == set(SCHEMES)
    for e in VEC["tensors"]:
        arr = generate(e["seed"], e["name"], tuple(e["shape"]), e["scheme"], **_kw(e))
        assert arr.dtype == np.float32
        assert arr.shape == tuple(e["shape"])
        if e["values_f32"] is not None:
            assert [f"{b:08x}" for b in bits(arr)] == e["values_f32"], e["name"]
        assert tensor_sha256(arr) == e["sha256"]
        assert f"{f64bits(plan_values(e['seed'], e['name'], tuple(e['shape']), e['scheme'], **_kw(e)).scale):016x}" \
            == e["scale_f64"]


@pytest.mark.parametrize("scheme", ["xavier_normal", "xavier_uniform", "kaiming_uniform", "kaiming_normal"])
@pytest.mark.parametrize("shape", [(3, 2), (5, 3, 3), (4, 2, 3, 3), (7, 1)])
def test_generate_equals_scalar_annex(scheme: str, shape: tuple[int, ...]) -> None:
    arr = generate(2024, "features.3.weight", shape, scheme)
    assert bits(arr) == spec_generate(2024, "features.3.weight", shape, scheme)


def test_fill_schemes() -> None:
    assert bits(generate(0, "a.weight", (2, 2), "zeros")) == [0] * 4
    assert bits(generate(0, "a.weight", (3,), "ones")) == [0x3F800000] * 3
    assert bits(generate(0, "a.weight", (), "constant", constant=-2.5)) == [0xC0200000]
    assert bits(generate(0, "a.weight", (2,), "constant", constant=1e-50)) == [0, 0]


def test_large_tensor_is_chunk_and_range_independent(monkeypatch: pytest.MonkeyPatch) -> None:
    shape = (100, 700)  # crosses the 65536-value chunk boundary
    ref = generate(99, "features.10.weight", shape, "xavier_normal")
    plan = plan_values(99, "features.10.weight", shape, "xavier_normal")
    parts = np.empty(70_000, dtype=np.float32)
    for lo, hi in [(0, 4), (4, 30_004), (30_004, 65_540), (65_540, 70_000)]:
        fill_into(parts[lo:hi], plan, lo)
    assert np.array_equal(parts.view(np.uint32), ref.reshape(-1).view(np.uint32))
    monkeypatch.setattr(schemes_mod, "CHUNK_VALUES", 4 * 1001)
    again = generate(99, "features.10.weight", shape, "xavier_normal")
    assert np.array_equal(again.view(np.uint32), ref.view(np.uint32))


def test_statistics_of_random_schemes() -> None:
    shape = (200, 500)
    fi, fo = fans(shape)
    assert (fi, fo) == (500, 200)
    xn = generate(1, "w.weight", shape, "xavier_normal").astype(np.float64)
    sd = math.sqrt(2.0 / (fi + fo))
    assert abs(xn.mean()) < 0.01 * sd
    assert abs(xn.std() / sd - 1.0) < 0.01
    assert abs(((xn / sd) ** 4).mean() - 3.0) < 0.1  # normal kurtosis
    assert float(np.abs(xn).max()) <= sd * math.sqrt(64 * math.log(2)) * (1 + 1e-6)
    kn = generate(1, "w.weight", shape, "kaiming_normal").astype(np.float64)
    assert abs(kn.std() / math.sqrt(2.0 / fi) - 1.0) < 0.01
    for scheme, bound in (("xavier_uniform", math.sqrt(6.0 / (fi + fo))), ("kaiming_uniform", math.sqrt(6.0 / fi))):
        u = generate(1, "w.weight", shape, scheme).astype(np.float64)
        assert -bound * (1 + 1e-6) <= u.min() < -0.99 * bound
        assert 0.99 * bound < u.max() < bound
        assert abs(u.var() / (bound**2 / 3.0) - 1.0) < 0.01


def test_fans_follow_pytorch() -> None:
    assert fans((64, 3, 7, 7)) == (3 * 49, 64 * 49)
    assert fans((10, 20)) == (20, 10)
    assert fans((8, 4, 2, 3, 5)) == (4 * 30, 8 * 30)
    with pytest.raises(UsageError):
        fans((5,))


def test_scheme_ignores_creation_order_and_other_tensors() -> None:
    params = [("a.weight", (4, 3)), ("a.bias", (4,)), ("b.weight", (2, 4, 3, 3)), ("bn.weight", (2,))]
    one = init_parameters(5, "xavier_normal", params)
    two = init_parameters(5, "xavier_normal", list(reversed(params)))
    assert list(one) == [n for n, _ in params]
    assert list(two) == [n for n, _ in reversed(params)]
    for n, _ in params:
        assert np.array_equal(one[n].view(np.uint32), two[n].view(np.uint32))
    alone = init_parameters(5, "xavier_normal", [("b.weight", (2, 4, 3, 3))])
    assert np.array_equal(alone["b.weight"].view(np.uint32), one["b.weight"].view(np.uint32))


# --- kinds, models, digests ------------------------------------------------------------------------
def test_kind_rules() -> None:
    assert param_kind("features.0.weight", (8, 1, 3, 3)) == "weight"
    assert param_kind("fc.weight", (3, 10)) == "weight"
    assert param_kind("features.1.weight", (8,)) == "norm_weight"
    assert param_kind("features.1.bias", (8,)) == "bias"
    assert param_kind("features.1.running_mean", (8,)) == "running_mean"
    assert param_kind("features.1.running_var", (8,)) == "running_var"
    assert param_kind("features.1.num_batches_tracked", ()) == "num_batches_tracked"
    assert param_kind("weight", (2, 2)) == "weight"
    for name, shape in [("x.weight", ()), ("x.bias", (2, 2)), ("x.alpha", (3,)), ("x.bias", ())]:
        with pytest.raises(UsageError):
            param_kind(name, shape)


def test_model_vector() -> None:
    (model,) = VEC["models"]
    params = [(n, tuple(s)) for n, s in model["params"]]
    theta = init_parameters(model["seed"], model["scheme"], params)
    assert {n: param_kind(n, s) for n, s in params} == model["kinds"]
    assert theta0_digests(model["seed"], model["scheme"], params) == model["theta0_sha256"]
    for name, values in model["buffers"].items():
        assert theta[name].reshape(-1).tolist() == values
    assert theta["features.1.num_batches_tracked"].dtype == np.int64
    assert theta["features.1.running_var"].dtype == np.float32
    assert bits(theta["features.0.bias"]) == [0] * 4
    assert bits(theta["features.1.weight"]) == [0x3F800000] * 4


def test_bias_and_norm_weight_ignore_the_scheme() -> None:
    params = [("c.weight", (2, 3)), ("c.bias", (2,)), ("n.weight", (3,))]
    for scheme in SCHEMES:
        kw = {"constant": 0.5} if scheme == "constant" else {}
        theta = init_parameters(3, scheme, params, **kw)
        assert bits(theta["c.bias"]) == [0, 0]
        assert bits(theta["n.weight"]) == [0x3F800000] * 3
        assert np.array_equal(theta["c.weight"], generate(3, "c.weight", (2, 3), scheme, **kw))


def test_digests() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert tensor_sha256(a) == hashlib.sha256(a.astype("<f4").tobytes()).hexdigest()
    assert tensor_sha256(a.T) == hashlib.sha256(np.ascontiguousarray(a.T).tobytes()).hexdigest()
    with pytest.raises(UsageError):
        tensor_sha256(a.astype(np.float64))
    params = [("c.weight", (2, 3)), ("c.bias", (2,)), ("bn.running_mean", (2,))]
    d = theta0_digests(1, "kaiming_uniform", params)
    assert list(d) == ["c.weight", "c.bias"]
    assert d["c.weight"] == tensor_sha256(generate(1, "c.weight", (2, 3), "kaiming_uniform"))


# --- errors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((0, "x.weight", (2, 2), "orthogonal"), {}),
        ((0, "x.weight", (2, 2), "Xavier_Normal"), {}),
        ((-1, "x.weight", (2, 2), "xavier_normal"), {}),
        ((2**64, "x.weight", (2, 2), "zeros"), {}),
        ((0, "", (2, 2), "zeros"), {}),
        ((0, "x.weight", (4,), "xavier_normal"), {}),
        ((0, "x.weight", (2, -1), "xavier_normal"), {}),
        ((0, "x.weight", (2, 2.0), "xavier_normal"), {}),
        ((0, "x.weight", "22", "xavier_normal"), {}),
        ((0, "x.weight", (2,), "constant"), {"constant": float("nan")}),
        ((0, "x.weight", (2,), "constant"), {"constant": 1e39}),
        ((0, "x.weight", (2,), "constant"), {"constant": "1"}),
    ],
)
def test_generate_usage_errors(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        generate(*args, **kwargs)


def test_init_parameters_usage_errors() -> None:
    with pytest.raises(UsageError):
        init_parameters(0, "xavier_normal", [("a.weight", (2, 2)), ("a.weight", (2, 2))])
    with pytest.raises(UsageError):
        init_parameters(0, "nope", [("a.weight", (2, 2))])
    with pytest.raises(UsageError):
        init_parameters(0, "xavier_normal", [("a.gamma", (2,))])
    with pytest.raises(UsageError):
        init_parameters(2**64, "xavier_normal", [])
    with pytest.raises(UsageError):
        fill_into(np.empty(4, np.float32), plan_values(0, "a.weight", (2, 2), "xavier_normal"), 2)


def test_empty_tensor() -> None:
    a = generate(0, "x.weight", (0, 3), "xavier_normal")
    assert a.shape == (0, 3)
    assert tensor_sha256(a) == hashlib.sha256(b"").hexdigest()


def test_core_import_does_not_pull_torch() -> None:
    code = "import sys, sldpack.init; sldpack.init.generate(0, 'a.weight', (2, 2), 'xavier_normal'); " \
           "assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
