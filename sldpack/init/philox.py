"""Philox4x32-10 (Random123) in numpy, and the SLDP stream derivation (spec annex SLDP-1-init.md).

Two implementations of the same bijection live here on purpose:

* :func:`philox4x32_10` maps arbitrary counter/key arrays; it is the readable one, used for the
  Random123 known-answer tests and as the cross-check of the fast path.
* :func:`stream_blocks` produces consecutive blocks of one stream in a layout the float kernels in
  :mod:`sldpack.init.schemes` consume directly. It keeps the four 32-bit words as two ``(2, n)``
  uint64 rows so every numpy call works on ``2n`` contiguous elements (half the call overhead of
  four separate lanes); uint64 holds the exact 32x32->64 products Philox needs.

Everything is integer arithmetic, so results are bit-exact on every platform.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final, TypeVar

import numpy as np
import numpy.typing as npt

from sldpack.errors import UsageError

__all__ = [
    "DOMAIN_TAG",
    "PHILOX_M0",
    "PHILOX_M1",
    "PHILOX_ROUNDS",
    "PHILOX_W0",
    "PHILOX_W1",
    "Scratch",
    "Stream",
    "check_seed",
    "derive_stream",
    "philox4x32_10",
    "stream_blocks",
    "stream_words",
]

PHILOX_M0: Final = 0xD2511F53
PHILOX_M1: Final = 0xCD9E8D57
PHILOX_W0: Final = 0x9E3779B9  # golden ratio
PHILOX_W1: Final = 0xBB67AE85  # sqrt(3) - 1
PHILOX_ROUNDS: Final = 10

# Prefix of the SHA-256 message that derives a tensor's stream. A version tag keeps a future,
# different derivation from ever sharing streams with this one.
DOMAIN_TAG: Final = b"SLDP-1/init\x00"

_MASK32: Final = np.uint64(0xFFFFFFFF)
_SH32: Final = np.uint64(32)
_U32 = npt.NDArray[np.uint32]
_U64 = npt.NDArray[np.uint64]
_G = TypeVar("_G", bound=np.generic)


def philox4x32_10(counter: npt.ArrayLike, key: npt.ArrayLike) -> _U32:
    """Apply Philox4x32-10 to counters (readable reference form).

    Args:
        counter: integers in ``[0, 2**32)``, shape ``(..., 4)``; word 0 first as in Random123.
        key: integers in ``[0, 2**32)``, shape ``(..., 2)``, broadcastable against ``counter``.

    Returns:
        uint32 array of shape ``(..., 4)``: the output words x0..x3.

    Raises:
        UsageError: if the shapes are wrong or a word is out of range.
    """
    ctr = np.asarray(counter)
    k = np.asarray(key)
    if ctr.shape[-1:] != (4,) or k.shape[-1:] != (2,):
        raise UsageError(f"counter must be (...,4) and key (...,2), got {ctr.shape} and {k.shape}")
    for what, arr in (("counter", ctr), ("key", k)):
        if arr.dtype.kind not in "iu":
            raise UsageError(f"{what} words must be integers, got dtype {arr.dtype}")
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 0xFFFFFFFF):
            raise UsageError(f"{what} words must lie in [0, 2**32)")
    c = [ctr[..., i].astype(np.uint64) for i in range(4)]
    k0 = k[..., 0].astype(np.uint64)
    k1 = k[..., 1].astype(np.uint64)
    m0, m1 = np.uint64(PHILOX_M0), np.uint64(PHILOX_M1)
    for rnd in range(PHILOX_ROUNDS):
        if rnd:  # the key is bumped between rounds (9 bumps for 10 rounds)
            k0 = (k0 + np.uint64(PHILOX_W0)) & _MASK32
            k1 = (k1 + np.uint64(PHILOX_W1)) & _MASK32
        p0 = c[0] * m0  # exact: both factors < 2**32, product < 2**64
        p1 = c[2] * m1
        c = [(p1 >> _SH32) ^ c[1] ^ k0, p1 & _MASK32, (p0 >> _SH32) ^ c[3] ^ k1, p0 & _MASK32]
    return np.stack(np.broadcast_arrays(*c), axis=-1).astype(np.uint32)


@dataclass(frozen=True)
class Stream:
    """The Philox key and the constant counter words of one tensor's stream."""

    key0: int
    key1: int
    ctr2: int
    ctr3: int


def check_seed(seed: object) -> int:
    """``seed`` as an int if it is a valid init seed (an integer in range), else :class:`UsageError`."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise UsageError(f"seed must be an integer, got {type(seed).__name__}")
    s = int(seed)
    if not 0 <= s < 1 << 64:
        raise UsageError(f"seed must lie in [0, 2**64), got {s}")
    return s


def _name_bytes(name: object) -> bytes:
    if not isinstance(name, str) or not name:
        raise UsageError(f"tensor name must be a non-empty string, got {name!r}")
    try:
        return name.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates have no UTF-8 form
        raise UsageError(f"tensor name {name!r} is not valid Unicode text") from exc


def derive_stream(seed: int, name: str) -> Stream:
    """Derive a tensor's stream: ``d = SHA-256(DOMAIN_TAG || u64le(seed) || utf8(name))``.

    ``key = (le32(d[0:4]), le32(d[4:8]))``, ``ctr2 = le32(d[8:12])``, ``ctr3 = le32(d[12:16])``.
    The name alone (never the creation order) selects the stream, so tensors are independent.

    Args:
        seed: integer in ``[0, 2**64)``.
        name: the parameter's canonical name (e.g. ``features.0.weight``), hashed as UTF-8.

    Returns:
        The :class:`Stream`.

    Raises:
        UsageError: for a seed out of range or an empty/non-text name.
    """
    msg = DOMAIN_TAG + check_seed(seed).to_bytes(8, "little") + _name_bytes(name)
    d = hashlib.sha256(msg).digest()
    w = [int.from_bytes(d[4 * i : 4 * i + 4], "little") for i in range(4)]
    return Stream(w[0], w[1], w[2], w[3])


class Scratch:
    """Reusable work arrays for the row kernels.

    numpy temporaries the size of a chunk come from fresh pages each time (and page faults are
    expensive, in virtual machines especially); reusing a few buffers with ``out=`` is ~3x faster.
    Not thread-safe: use one per thread.
    """

    def __init__(self, max_blocks: int) -> None:
        self.max_blocks = max_blocks
        self._bufs: dict[str, np.ndarray[tuple[int], np.dtype[np.generic]]] = {}
        self._arange: _U64 | None = None

    def get(self, key: str, dtype: type[_G], n: int, rows: int = 2) -> npt.NDArray[_G]:
        """A C-contiguous ``(rows, n)`` view of the buffer ``key`` (contents undefined)."""
        if n > self.max_blocks:
            raise UsageError(f"scratch holds {self.max_blocks} blocks, asked for {n}")
        buf = self._bufs.get(key)
        if buf is None or buf.dtype != np.dtype(dtype) or buf.shape[0] < rows * self.max_blocks:
            buf = np.empty(rows * self.max_blocks, dtype=dtype)
            self._bufs[key] = buf
        return buf[: rows * n].reshape(rows, n)  # type: ignore[return-value]

    def arange(self, n: int) -> _U64:
        """``0, 1, .., n-1`` as uint64 (cached)."""
        if self._arange is None:
            self._arange = np.arange(self.max_blocks, dtype=np.uint64)
        return self._arange[:n]


def stream_blocks(
    stream: Stream, first_block: int, n: int, scratch: Scratch | None = None
) -> tuple[_U64, _U64]:
    """Philox output blocks ``first_block .. first_block+n-1`` of a stream, in row layout.

    Block ``b`` is Philox4x32-10 of counter ``(b mod 2**32, b >> 32, ctr2, ctr3)`` under key
    ``(key0, key1)``; its output words are ``x0, x1, x2, x3``.

    Args:
        stream: from :func:`derive_stream`.
        first_block: index of the first block, ``0 <= first_block`` and ``first_block + n <= 2**64``.
        n: number of blocks.
        scratch: optional work arrays; the result then lives in ``scratch`` buffers ``"r"``/``"t"``.

    Returns:
        ``(R, T)``, two uint64 arrays of shape ``(2, n)`` holding 32-bit values:
        ``R[0] = x0, R[1] = x2, T[0] = x1, T[1] = x3``.
        (For the normal transform R are the radius words and T the angle words of the two pairs.)

    Raises:
        UsageError: for a block range outside the 2**64 counter space.
    """
    if n < 0 or first_block < 0 or first_block + n > 1 << 64:
        raise UsageError("block range out of the 2**64 counter space")
    sc = scratch if scratch is not None and n <= scratch.max_blocks else Scratch(max(n, 1))
    s = sc.get("r", np.uint64, n)  # rows: x0, x2
    lo = sc.get("t", np.uint64, n)  # rows: x1, x3
    p = sc.get("p", np.uint64, n)
    idx = np.add(sc.arange(n), np.uint64(first_block), out=p[0])  # no wrap: first_block + n <= 2**64
    np.bitwise_and(idx, _MASK32, out=s[0])
    s[1] = stream.ctr2
    np.right_shift(idx, _SH32, out=lo[0])
    lo[1] = stream.ctr3
    # One-dimensional ufunc calls on contiguous rows take numpy's fast path; 2-D broadcasting
    # or reversed-row views go through the general iterator, whose setup costs microseconds.
    k0, k1 = stream.key0, stream.key1
    m0, m1 = np.uint64(PHILOX_M0), np.uint64(PHILOX_M1)
    s_flat, lo_flat, p_flat = s.reshape(-1), lo.reshape(-1), p.reshape(-1)
    for rnd in range(PHILOX_ROUNDS):
        if rnd:
            k0 = (k0 + PHILOX_W0) & 0xFFFFFFFF
            k1 = (k1 + PHILOX_W1) & 0xFFFFFFFF
        np.multiply(s[1], m1, out=p[0])  # x2*M1: its hi goes to x0', its lo is x1'
        np.multiply(s[0], m0, out=p[1])  # x0*M0: its hi goes to x2', its lo is x3'
        np.right_shift(p_flat, _SH32, out=s_flat)
        s_flat ^= lo_flat
        s[0] ^= np.uint64(k0)
        s[1] ^= np.uint64(k1)
        np.bitwise_and(p_flat, _MASK32, out=lo_flat)
    return s, lo


def stream_words(seed: int, name: str, start: int, count: int) -> _U32:
    """Words ``start .. start+count-1`` of a tensor's word stream (word ``4b+j`` is ``x_j`` of block b).

    Args:
        seed: integer in ``[0, 2**64)``.
        name: canonical tensor name.
        start: first word index (>= 0).
        count: number of words (>= 0).

    Returns:
        uint32 array of length ``count``.

    Raises:
        UsageError: for a bad seed, name or range.
    """
    if start < 0 or count < 0:
        raise UsageError("start and count must be non-negative")
    stream = derive_stream(seed, name)
    b0 = start // 4
    nb = (start + count + 3) // 4 - b0
    r, t = stream_blocks(stream, b0, nb)
    words = np.empty((nb, 2, 2), dtype=np.uint32)  # [block, pair, (radius, angle)]
    words[:, :, 0] = r.T
    words[:, :, 1] = t.T
    flat = words.reshape(-1)
    off = start - 4 * b0
    return flat[off : off + count].copy()
