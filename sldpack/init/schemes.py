"""Portable theta0: (seed, name, shape, scheme) -> float32 values (spec annex SLDP-1-init.md).

This is the numpy-only reference (``backend="numpy"``). Every floating-point step is one IEEE-754
binary64 operation (+, -, *, /, sqrt, all correctly rounded) or an exact conversion, evaluated in the
order the spec writes down; the normal transform uses the spec's own polynomials instead of libm's
``log``/``sin``/``cos``. So every scheme, normal included, is bit-exact on every conforming platform.
(numpy never fuses a multiply and an add into an FMA across ufunc calls, which is what keeps this
true here.) By default the random transforms run on the optional compiled kernel instead when it is
built (:mod:`sldpack.init.backend`): the same operations, the same bits, faster. The kind rules,
scales and validation below are shared by both.

Values are produced in chunks of whole Philox blocks so large tensors stay cache-friendly and so
the torch fast path (:mod:`sldpack.nn.init`) can fill disjoint chunks from several threads.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from sldpack.errors import UsageError
from sldpack.init.backend import c_fill, known_answer_check, register_self_check, resolve_backend
from sldpack.init.philox import Scratch, Stream, check_seed, derive_stream, stream_blocks, stream_words

__all__ = [
    "BUFFER_KINDS",
    "CHUNK_VALUES",
    "COS_VIA_SQRT",
    "DEFAULT_SCHEME",
    "HALF_PI_2M30",
    "KAIMING_GAIN",
    "LN2",
    "LOG_COEFFS",
    "SCHEMES",
    "SIN_COEFFS",
    "SQRT_HALF",
    "ValuePlan",
    "check_scheme",
    "fans",
    "fill_into",
    "generate",
    "init_parameters",
    "iter_theta0",
    "kernel_self_check",
    "normal_rows",
    "param_kind",
    "plan_values",
    "scheme_for",
    "tensor_sha256",
    "theta0_digests",
]

SCHEMES: Final = (
    "xavier_normal",
    "xavier_uniform",
    "kaiming_uniform",
    "kaiming_normal",
    "zeros",
    "ones",
    "constant",
)
DEFAULT_SCHEME: Final = "xavier_normal"
_RANDOM_SCHEMES: Final = frozenset(SCHEMES[:4])

# Kaiming with a=0 (leaky_relu with slope 0, i.e. relu): gain = sqrt(2 / (1 + 0**2)) = sqrt(2.0).
KAIMING_GAIN: Final = math.sqrt(2.0)

# --- constants of the normal transform (spec section "Normal"); all float64 -------------------
LN2: Final = float.fromhex("0x1.62e42fefa39efp-1")  # ln 2, correctly rounded
SQRT_HALF: Final = float.fromhex("0x1.6a09e667f3bcdp-1")  # sqrt(0.5), correctly rounded
HALF_PI_2M30: Final = float.fromhex("0x1.921fb54442d18p-30")  # RN(pi/2) * 2**-30, exact scaling
# ln(f) = 2*atanh(s) = 2s * sum_k s^(2k) / (2k+1); coefficients are the correctly rounded 1/(2k+1).
LOG_COEFFS: Final = tuple(1.0 / (2 * k + 1) for k in range(11))
# sin(phi) = phi + phi*y*sum_{k>=1} (-1)^k y^(k-1)/(2k+1)!; every (2k+1)! <= 17! is exact in binary64.
SIN_COEFFS: Final = tuple((-1.0) ** k * (1.0 / math.factorial(2 * k + 1)) for k in range(1, 9))
# cos on [0, pi/4] is sqrt(1 - sin^2): one correctly rounded sqrt, accurate because cos >= 1/sqrt(2).
COS_VIA_SQRT: Final = True

_TWO_M23: Final = 2.0**-23
_U32_MASK: Final = 0xFFFFFFFF

# Values are generated in chunks of this many (a multiple of 4, so chunks are whole blocks):
# about 16 numpy arrays of CHUNK_VALUES/2 float64 stay within a few MiB of cache.
CHUNK_VALUES: Final = 1 << 16

BUFFER_KINDS: Final = ("running_mean", "running_var", "num_batches_tracked")

_F32 = npt.NDArray[np.float32]


# --- shapes, fans, scales ----------------------------------------------------------------------
def _check_shape(shape: object) -> tuple[int, ...]:
    if not isinstance(shape, (tuple, list)):
        raise UsageError(f"shape must be a tuple of integers, got {type(shape).__name__}")
    out = []
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or int(d) < 0:
            raise UsageError(f"shape entries must be non-negative integers, got {shape!r}")
        out.append(int(d))
    if math.prod(out) >= 1 << 62:
        raise UsageError(f"shape {shape!r} has too many elements")
    return tuple(out)


def check_scheme(scheme: object) -> str:
    """``scheme`` if it names a known init scheme, else :class:`UsageError`."""
    if not isinstance(scheme, str) or scheme not in SCHEMES:
        raise UsageError(f"unknown init scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    return scheme


def fans(shape: Sequence[int]) -> tuple[int, int]:
    """PyTorch's fan rule: ``fan_in = shape[1]*prod(shape[2:])``, ``fan_out = shape[0]*prod(shape[2:])``.

    Args:
        shape: tensor shape of rank >= 2 (linear ``[out, in]``, conv ``[out, in/groups, *kernel]``).

    Returns:
        ``(fan_in, fan_out)``.

    Raises:
        UsageError: for rank < 2.
    """
    dims = _check_shape(tuple(shape))
    if len(dims) < 2:
        raise UsageError(f"fan_in/fan_out need a tensor of rank >= 2, got shape {dims}")
    receptive = math.prod(dims[2:])
    return dims[1] * receptive, dims[0] * receptive


@dataclass(frozen=True)
class ValuePlan:
    """How one tensor's values are made.

    ``transform`` is ``"uniform"`` (``scale`` is the float32 bound b32 as a float),
    ``"normal"`` (``scale`` is the float64 standard deviation) or ``"fill"`` (``scale`` is the
    float32 constant as a float); ``stream`` is ``None`` for ``"fill"``.
    """

    transform: str
    scale: float
    stream: Stream | None
    count: int


def _f32(x: float) -> float:
    """Round a float64 to the nearest float32 (ties to even) and return it as a float."""
    return float(np.float32(x))


def plan_values(
    seed: int, name: str, shape: Sequence[int], scheme: str, *, constant: float = 0.0
) -> ValuePlan:
    """Resolve a scheme into a :class:`ValuePlan`, evaluating the spec's float64 formulas.

    * xavier_normal:   ``std = sqrt(2.0 / float(fan_in + fan_out))`` (gain 1.0)
    * xavier_uniform:  ``bound = sqrt(3.0) * sqrt(2.0 / float(fan_in + fan_out))``
    * kaiming_normal:  ``std = sqrt(2.0) / sqrt(float(fan_in))``
    * kaiming_uniform: ``bound = sqrt(3.0) * (sqrt(2.0) / sqrt(float(fan_in)))``

    A uniform bound is then rounded once to float32.

    Args:
        seed: integer in ``[0, 2**64)``.
        name: canonical tensor name (selects the stream).
        shape: tensor shape (rank >= 2 for the random schemes).
        scheme: one of :data:`SCHEMES`.
        constant: the value of the ``constant`` scheme (finite, representable as float32).

    Returns:
        The plan.

    Raises:
        UsageError: for an unknown scheme, a bad seed/name/shape or a bad constant.
    """
    check_scheme(scheme)
    dims = _check_shape(tuple(shape) if isinstance(shape, list) else shape)
    stream = derive_stream(seed, name)  # validates seed and name for every scheme
    count = math.prod(dims)
    if scheme in ("zeros", "ones", "constant"):
        if scheme == "constant":
            if isinstance(constant, bool) or not isinstance(constant, (int, float, np.floating)):
                raise UsageError(f"constant must be a number, got {type(constant).__name__}")
            c = float(constant)
            if not math.isfinite(c) or abs(c) > float(np.finfo(np.float32).max):
                raise UsageError(f"constant {c!r} is not a finite float32 value")
            value = _f32(c)
        else:
            value = 0.0 if scheme == "zeros" else 1.0
        return ValuePlan("fill", value, None, count)
    fan_in, fan_out = fans(dims)
    if count == 0:  # nothing to draw; fans may be 0, so no scale is computed
        return ValuePlan("fill", 0.0, None, 0)
    if scheme == "xavier_normal":
        return ValuePlan("normal", math.sqrt(2.0 / float(fan_in + fan_out)), stream, count)
    if scheme == "xavier_uniform":
        std = math.sqrt(2.0 / float(fan_in + fan_out))
        return ValuePlan("uniform", _f32(math.sqrt(3.0) * std), stream, count)
    std = KAIMING_GAIN / math.sqrt(float(fan_in))
    if scheme == "kaiming_normal":
        return ValuePlan("normal", std, stream, count)
    return ValuePlan("uniform", _f32(math.sqrt(3.0) * std), stream, count)


# --- the two transforms, on row-layout blocks ------------------------------------------------
def _uniform_rows(
    words: npt.NDArray[np.uint64], b32: float, out: npt.NDArray[np.floating[Any]]
) -> npt.NDArray[np.floating[Any]]:
    """``(w >> 8 - 2**23) * (b32 * 2**-23)``, exact in float64, then stored in ``out``.

    With a float32 ``out`` the one rounding happens on the store (ties to even). Consumes ``words``.
    """
    words >>= np.uint64(8)
    k = words.view(np.int64)
    k -= 8388608  # k - 2**23, exact, in [-2**23, 2**23)
    # the product of a 24-bit integer and b32 * 2**-23 (exact) has <= 48 bits: exact in float64
    np.multiply(k, b32 * _TWO_M23, out=out, dtype=np.float64, casting="same_kind")
    return out


def normal_rows(
    r: npt.NDArray[np.uint64],
    t: npt.NDArray[np.uint64],
    sigma: float,
    sc: Scratch,
    out_c: npt.NDArray[np.float32] | None = None,
    out_s: npt.NDArray[np.float32] | None = None,
) -> tuple[npt.NDArray[np.floating[Any]], npt.NDArray[np.floating[Any]]]:
    """Box-Muller on word pairs (radius word r, angle word t): returns (z_cos*sigma, z_sin*sigma).

    Consumes ``r`` and ``t`` (overwritten). The results are float64 arrays in ``sc``, or, when
    ``out_c``/``out_s`` are given, the float32 roundings stored there. Branch-free on purpose:
    numpy's masked ``where``/``where=`` loops cost ten times a plain ufunc on random masks, so the
    octant's swap and signs are applied to the float64 bit patterns, which is exact.
    """
    u64, i64 = np.uint64, np.int64
    n = r.shape[1]
    f1, f2, f3, f4 = (sc.get(k, np.float64, n) for k in ("f1", "f2", "f3", "f4"))
    # --- radius: A = -ln((r + 1) * 2**-32) >= 0 with m = r + 1 = f * 2**e, f in [sqrt(1/2), sqrt(2))
    m = np.add(r.view(i64), 1.0, out=f1)  # exact: m in [1, 2**32]
    bits = m.view(u64)
    # Subtracting SQRT_HALF's bit pattern splits m at sqrt(1/2) instead of 1/2 (frexp plus the
    # fold in one step): e = (bits - SH) >> 52, f = m * 2**-e, exactly.
    e = np.subtract(bits, u64(0x3FE6A09E667F3BCD), out=r)
    e >>= u64(52)  # 1 <= e <= 32, as 1 <= m <= 2**32
    bits -= np.left_shift(e, u64(52), out=sc.get("u1", u64, n))
    f = m  # now f in [sqrt(1/2), sqrt(2))
    s = np.subtract(f, 1.0, out=f2)
    np.add(f, 1.0, out=f)
    s /= f
    z = np.multiply(s, s, out=f1)
    p = np.multiply(z, LOG_COEFFS[10], out=f3)  # P = C10; for k = 9..0: P = P*z + C_k
    p += LOG_COEFFS[9]
    for c in LOG_COEFFS[8::-1]:
        p *= z
        p += c
    s += s
    p *= s  # ln f = (s + s) * P
    np.subtract(u64(32), e, out=e)
    a = np.multiply(e.view(i64), LN2, out=f4)  # float64(32 - e) * LN2 (exact conversion)
    a -= p  # A = float64(32 - e) * LN2 - ln f
    a += a
    rho = np.sqrt(a, out=a)
    rho *= sigma

    # --- angle 2*pi*t/2**32: octant o = t >> 29; phi = HALF_PI_2M30 * min(w, 2**30 - w), w = t mod 2**30
    w = np.bitwise_and(t, u64(0x3FFFFFFF), out=r).view(i64)
    phi = np.subtract(1073741824.0, w, out=f1)
    np.minimum(w, phi, out=phi)
    phi *= HALF_PI_2M30
    y = np.multiply(phi, phi, out=f2)
    q = np.multiply(y, SIN_COEFFS[7], out=f3)  # Q = S8; for k = 7..1: Q = Q*y + S_k
    q += SIN_COEFFS[6]
    for c in SIN_COEFFS[5::-1]:
        q *= y
        q += c
    y *= phi  # phi*y
    q *= y  # (phi*y)*Q
    sn = np.add(phi, q, out=q)  # sin(phi), phi in [0, pi/4]
    cs = np.multiply(sn, sn, out=f1)
    np.subtract(1.0, cs, out=cs)
    np.sqrt(cs, out=cs)  # cos(phi) = sqrt(1 - sin^2)

    # Octants 1, 2, 5, 6 (bit 30 of t + 2**29) take cos from sin(phi) and sin from cos(phi):
    # x = (cs ^ sn) & mask swaps the bit patterns where mask is all ones.
    mask = np.add(t, u64(1 << 29), out=r)
    mask >>= u64(30)
    mask &= u64(1)
    np.subtract(u64(0), mask, out=mask)  # 0 or 2**64 - 1
    csb, snb = cs.view(u64), sn.view(u64)
    x = np.bitwise_xor(csb, snb, out=f2.view(u64))
    x &= mask
    csb ^= x
    snb ^= x  # now cs holds |cos(theta)|, sn holds |sin(theta)|
    # cos(theta) < 0 in octants 2..5 (bit 31 of t + 2**30), sin(theta) < 0 in octants 4..7
    # (bit 31 of t): move that bit to bit 63 and flip the float's sign (exact negation).
    np.add(t, u64(1 << 30), out=mask)
    mask >>= u64(31)
    mask <<= u64(63)
    csb ^= mask
    t >>= u64(31)
    t <<= u64(63)
    snb ^= t
    # (+-a) * rho == +-(a * rho): round-to-nearest-even is symmetric. The product is formed in
    # float64 (dtype=) and rounded once more, to float32, only when stored into a float32 out.
    zc = np.multiply(cs, rho, out=cs if out_c is None else out_c, dtype=np.float64, casting="same_kind")
    zs = np.multiply(sn, rho, out=sn if out_s is None else out_s, dtype=np.float64, casting="same_kind")
    return zc, zs


def _fill_blocks(out: _F32, plan: ValuePlan, first_block: int, sc: Scratch) -> None:
    """Write values ``4*first_block ..`` of ``plan`` into ``out`` (1-D float32, any length)."""
    n = out.shape[0]
    if plan.transform == "fill":
        out.fill(np.float32(plan.scale))
        return
    assert plan.stream is not None
    nb = (n + 3) // 4
    r, t = stream_blocks(plan.stream, first_block, nb, sc)
    # v[p, j]: value 4b + 2p + j, from row p of the radius words (j = 0: x0, x2) or of the angle
    # words (j = 1: x1, x3). Rounded into contiguous float32 rows first, then copied out by column:
    # a float64 -> float32 store through transposed views costs ~4x more.
    v = sc.get("v32", np.float32, nb, rows=4).reshape(2, 2, nb)
    if plan.transform == "uniform":
        _uniform_rows(r, plan.scale, v[:, 0])
        _uniform_rows(t, plan.scale, v[:, 1])
    else:
        normal_rows(r, t, plan.scale, sc, v[:, 0], v[:, 1])
    if n == 4 * nb:
        cols = out.reshape(nb, 4)
        cols[:, 0], cols[:, 1], cols[:, 2], cols[:, 3] = v[0, 0], v[0, 1], v[1, 0], v[1, 1]
    else:
        tmp = np.empty((nb, 4), dtype=np.float32)
        tmp[:, 0], tmp[:, 1], tmp[:, 2], tmp[:, 3] = v[0, 0], v[0, 1], v[1, 0], v[1, 1]
        out[:] = tmp.reshape(-1)[:n]


def fill_into(out: _F32, plan: ValuePlan, start: int = 0, *, backend: str | None = None) -> None:
    """Fill ``out`` with values ``start .. start+len(out)-1`` of a tensor (row-major order).

    Used by the torch fast path to fill disjoint chunks from several threads (the C kernel and
    numpy's ufuncs release the GIL; each call has its own work arrays). Any ``start`` works; a
    multiple of 4 (whole Philox blocks) wastes nothing.

    Args:
        out: 1-D, C-contiguous float32 array (a view into the destination tensor is fine).
        plan: from :func:`plan_values`.
        start: index of the first value.
        backend: ``"numpy"`` (the reference), ``"c"`` (the compiled kernel) or ``None`` (the default,
            see :func:`sldpack.init.backend.default_backend`). The bits never depend on it.

    Raises:
        UsageError: for a range beyond the tensor, a wrong ``out``, or an unknown/unavailable backend.
    """
    if out.dtype != np.float32 or out.ndim != 1 or not out.flags.c_contiguous:
        raise UsageError("out must be a 1-D C-contiguous float32 array")
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)):
        raise UsageError(f"start must be an integer, got {type(start).__name__}")
    start = int(start)
    if start < 0 or start + out.shape[0] > plan.count:
        raise UsageError(f"bad value range start={start} len={out.shape[0]} for {plan.count} values")
    be = resolve_backend(backend)
    total = out.shape[0]
    if plan.transform == "fill":
        out.fill(np.float32(plan.scale))
        return
    if total == 0:
        return
    if be == "c":
        assert plan.stream is not None
        c_fill(out, plan.transform, plan.stream, start, plan.scale)
        return
    sc = Scratch((min(total, CHUNK_VALUES) + 3) // 4)
    off = start % 4
    if off:  # the values before the next block boundary, from their whole block
        head = min(4 - off, total)
        block = np.empty(off + head, dtype=np.float32)
        _fill_blocks(block, plan, start // 4, sc)
        out[:head] = block[off:]
        out, start, total = out[head:], start + head, total - head
    for lo in range(0, total, CHUNK_VALUES):
        hi = min(lo + CHUNK_VALUES, total)
        _fill_blocks(out[lo:hi], plan, (start + lo) // 4, sc)


def generate(
    seed: int, name: str, shape: Sequence[int], scheme: str, *, constant: float = 0.0, backend: str | None = None
) -> _F32:
    """The float32 values of one tensor, exactly as the spec defines them.

    The scheme is applied as given (no kind rule; see :func:`init_parameters` for that).

    Args:
        seed: integer in ``[0, 2**64)``.
        name: the tensor's canonical name; it selects the Philox stream.
        shape: tensor shape; rank >= 2 for the four random schemes.
        scheme: one of :data:`SCHEMES`.
        constant: the value for ``scheme="constant"``.
        backend: ``"numpy"`` (the reference), ``"c"`` or ``None`` (default); same bits either way.

    Returns:
        A new C-contiguous float32 array of ``shape``.

    Raises:
        UsageError: for an unknown scheme or backend, a seed out of range, an empty name or a bad shape.
    """
    plan = plan_values(seed, name, shape, scheme, constant=constant)
    out = np.empty(plan.count, dtype=np.float32)
    fill_into(out, plan, backend=backend)
    return out.reshape(_check_shape(tuple(shape)))


# --- the (name, shape) -> kind rule ------------------------------------------------------------
def param_kind(name: str, shape: Sequence[int]) -> str:
    """Classify a theta0 entry from its name and shape alone (spec section "Kinds").

    Returns:
        ``"weight"`` (rank >= 2 ``*.weight``: the scheme), ``"bias"`` (rank-1 ``*.bias``),
        ``"norm_weight"`` (rank-1 ``*.weight``), or a buffer kind from :data:`BUFFER_KINDS`.

    Raises:
        UsageError: when no rule applies (e.g. a rank-0 weight or an unknown leaf name).
    """
    if not isinstance(name, str) or not name:
        raise UsageError(f"parameter name must be a non-empty string, got {name!r}")
    dims = _check_shape(tuple(shape) if isinstance(shape, list) else shape)
    leaf = name.rsplit(".", 1)[-1]
    if leaf in BUFFER_KINDS:
        return leaf
    if leaf == "weight" and len(dims) >= 2:
        return "weight"
    if leaf == "weight" and len(dims) == 1:
        return "norm_weight"
    if leaf == "bias" and len(dims) == 1:
        return "bias"
    raise UsageError(f"no initialisation rule for {name!r} with shape {dims}")


def scheme_for(kind: str, scheme: str) -> str:
    """The scheme actually applied to an entry of ``kind`` when the model's scheme is ``scheme``."""
    check_scheme(scheme)
    return {
        "weight": scheme,
        "bias": "zeros",
        "norm_weight": "ones",
        "running_mean": "zeros",
        "running_var": "ones",
        "num_batches_tracked": "zeros",
    }[kind]


def _entry(
    seed: int, name: str, shape: tuple[int, ...], scheme: str, constant: float, backend: str
) -> tuple[str, npt.NDArray[np.generic]]:
    kind = param_kind(name, shape)
    if kind == "num_batches_tracked":
        check_seed(seed)
        return kind, np.zeros(shape, dtype=np.int64)
    return kind, generate(seed, name, shape, scheme_for(kind, scheme), constant=constant, backend=backend)


def _check_params(params: Sequence[tuple[str, Sequence[int]]]) -> list[tuple[str, tuple[int, ...]]]:
    seen: set[str] = set()
    out = []
    for item in params:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise UsageError(f"params must be (name, shape) pairs, got {item!r}")
        name, shape = item
        if name in seen:
            raise UsageError(f"parameter {name!r} is listed twice")
        seen.add(name)
        out.append((name, _check_shape(tuple(shape) if isinstance(shape, list) else shape)))
    return out


def iter_theta0(
    seed: int,
    scheme: str,
    params: Sequence[tuple[str, Sequence[int]]],
    *,
    constant: float = 0.0,
    backend: str | None = None,
) -> Iterator[tuple[str, str, npt.NDArray[np.generic]]]:
    """Yield ``(name, kind, array)`` one entry at a time (bounded memory for large models).

    Args/Raises: as :func:`init_parameters`.
    """
    check_seed(seed)
    check_scheme(scheme)
    be = resolve_backend(backend)
    for name, shape in _check_params(params):
        kind, arr = _entry(seed, name, shape, scheme, constant, be)
        yield name, kind, arr


def init_parameters(
    seed: int,
    scheme: str,
    params: Sequence[tuple[str, Sequence[int]]],
    *,
    constant: float = 0.0,
    backend: str | None = None,
) -> dict[str, npt.NDArray[np.generic]]:
    """theta0 of a whole model from its ordered ``(name, shape)`` list, applying the kind rules.

    rank >= 2 ``*.weight``: ``scheme``; rank-1 ``*.bias``: zeros; rank-1 ``*.weight``: ones;
    ``*.running_mean``: zeros; ``*.running_var``: ones (float32); ``*.num_batches_tracked``: 0 (int64).

    Args:
        seed: integer in ``[0, 2**64)``.
        scheme: one of :data:`SCHEMES` (applies to rank >= 2 weights only).
        params: ordered ``(name, shape)`` pairs (e.g. ``named_parameters()`` then BN buffers).
        constant: the value for ``scheme="constant"``.
        backend: ``"numpy"`` (the reference), ``"c"`` or ``None`` (default); same bits either way.

    Returns:
        ``{name: array}`` in the order given (float32; int64 for ``num_batches_tracked``).

    Raises:
        UsageError: for a bad seed/scheme/backend, a duplicate name or an entry no rule covers.
    """
    return {name: arr for name, _, arr in iter_theta0(seed, scheme, params, constant=constant, backend=backend)}


def tensor_sha256(arr: npt.ArrayLike) -> str:
    """SHA-256 (lowercase hex) of a float32 tensor's little-endian bytes in C order.

    Args:
        arr: array-like; must already be float32 (no silent conversion).

    Returns:
        64 hex digits.

    Raises:
        UsageError: if ``arr`` is not float32.
    """
    a = np.asarray(arr)
    if a.dtype != np.float32:
        raise UsageError(f"theta0 digests are defined on float32 tensors, got {a.dtype}")
    a = np.ascontiguousarray(a, dtype="<f4")
    return hashlib.sha256(a.reshape(-1).data).hexdigest()


def theta0_digests(
    seed: int,
    scheme: str,
    params: Sequence[tuple[str, Sequence[int]]],
    *,
    constant: float = 0.0,
    backend: str | None = None,
) -> dict[str, str]:
    """``init.theta0_sha256`` of the manifest: ``{name: tensor_sha256}`` for every parameter entry.

    Buffers (running_mean, running_var, num_batches_tracked) are skipped: they are fixed constants.

    Args/Raises: as :func:`init_parameters`.
    """
    return {
        name: tensor_sha256(arr)
        for name, kind, arr in iter_theta0(seed, scheme, params, constant=constant, backend=backend)
        if kind not in BUFFER_KINDS
    }


def kernel_self_check(mod: ModuleType) -> str | None:
    """Why the built C kernel ``mod`` must not be used (``None`` when it reproduces the numpy reference on a
    small sample); registered with :func:`sldpack.init.backend.register_self_check`."""
    why = known_answer_check(mod)
    if why is not None:
        return why
    # The binary64 values before the final rounding: a fused multiply-add or a reordered operation
    # changes about one in twenty of them, but only about one float32 value in 10^8.
    words = stream_words(0, "sldpack/init/self-check", 0, 512).astype(np.uint64).reshape(2, 256)
    want_c, want_s = normal_rows(np.stack([words[0], words[0]]), np.stack([words[1], words[1]]), 0.75,
                                 Scratch(256))
    got_c, got_s = np.empty(256), np.empty(256)
    mod.normal_f64(words[0].astype(np.uint32), words[1].astype(np.uint32), 0.75, got_c, got_s)
    if got_c.tobytes() != want_c[0].tobytes() or got_s.tobytes() != want_s[0].tobytes():
        return "binary64 Box-Muller values differ from the numpy reference (compiled with FMA contraction?)"
    stream = derive_stream(0, "conv1.weight")
    for transform, scale in (("normal", 0.4714045207910317), ("uniform", 0.25)):
        plan = ValuePlan(transform, scale, stream, 1 << 10)
        ref = np.empty(203, dtype=np.float32)
        fill_into(ref, plan, 5, backend="numpy")  # an odd start and length: the unaligned paths too
        got = np.empty(203, dtype=np.float32)
        c_fill(got, transform, stream, 5, scale, mod)
        if got.tobytes() != ref.tobytes():
            return f"{transform} values differ from the numpy reference"
    return None


register_self_check(kernel_self_check)
