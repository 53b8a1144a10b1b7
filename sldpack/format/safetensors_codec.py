"""The tensor payload: canonical safetensors bytes, written and parsed without torch.

Canonical form (spec section "Payload"): tensors in the order of their names' UTF-8 bytes, data packed
with no gaps; the JSON header lists them in the same order, each as
``{"dtype":..,"shape":[..],"data_offsets":[begin,end]}``, with no whitespace, no ``__metadata__``, and is
padded with spaces so the data section starts at a multiple of 8. Any other safetensors layout is
well-formed safetensors but not a valid SLDP payload.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from sldpack.errors import FormatError
from sldpack.format.constants import (
    ALLOWED_DTYPES,
    DTYPE_FOR_NUMPY_NAME,
    DTYPE_ITEMSIZE,
    DTYPE_NUMPY,
    MAX_RANK,
    MAX_ST_HEADER_BYTES,
    MAX_TENSORS,
)

__all__ = [
    "NUMPY_DTYPE",
    "StEntry",
    "encode_checkpoint",
    "encode_header",
    "from_storage",
    "parse_header",
    "read_checkpoint",
    "storage_dtype",
    "to_storage",
]

# storage dtype -> little-endian numpy dtype of the raw bytes (BF16 is carried as raw uint16), from the one table
NUMPY_DTYPE: dict[str, np.dtype[Any]] = {k: np.dtype(v) for k, v in DTYPE_NUMPY.items()}


@dataclass(frozen=True)
class StEntry:
    """One tensor of a parsed safetensors header; offsets are relative to the data section."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def _nbytes(dtype: str, shape: tuple[int, ...]) -> int:
    n = DTYPE_ITEMSIZE[dtype]
    for d in shape:
        n *= d
    return n


def encode_header(entries: Mapping[str, tuple[str, tuple[int, ...]]]) -> tuple[bytes, dict[str, tuple[int, int]]]:
    """Canonical safetensors header (8-byte length + padded JSON) for ``name -> (dtype, shape)``.

    Returns:
        ``(header_bytes, offsets)`` with ``offsets[name] = (begin, end)`` in the data section.
    """
    names = sorted(entries, key=lambda n: n.encode("utf-8"))
    offsets: dict[str, tuple[int, int]] = {}
    parts = []
    pos = 0
    for name in names:
        dtype, shape = entries[name]
        end = pos + _nbytes(dtype, shape)
        offsets[name] = (pos, end)
        # key order inside an entry matches the reference implementation's serialisation
        parts.append(json.dumps(name, ensure_ascii=False) + ":" + json.dumps(
            {"dtype": dtype, "shape": list(shape), "data_offsets": [pos, end]}, separators=(",", ":")))
        pos = end
    text = ("{" + ",".join(parts) + "}").encode("utf-8")
    pad = (-(8 + len(text))) % 8
    text += b" " * pad
    return len(text).to_bytes(8, "little") + text, offsets


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its (key, value) pairs in document order, so duplicates stay visible."""


def parse_header(prefix: bytes | memoryview, *, decoded_size: int, base: int,
                 flat: bool = False) -> tuple[list[StEntry], int]:
    """Parse and validate a safetensors header (strict: an SLDP payload, spec section 6.1).

    Offsets (spec section 11): errors in the 8-byte length field point at ``base`` (the payload's first
    byte); every error found in the JSON (syntax, names, entries, dtypes, shapes, offsets, tiling) points
    at the JSON's first byte ``base + 8``. With ``flat`` (a compressed payload) every error points at ``base``.

    Args:
        prefix: at least the first ``8 + N`` bytes of the decoded payload (more is fine).
        decoded_size: total decoded payload length, which bounds every offset.
        base: offset reported in errors for byte 0 of the decoded payload.
        flat: report every error at ``base``.

    Returns:
        ``(entries in data order, data_start)``.

    Raises:
        FormatError: ``E_TRUNCATED``, ``E_LIMIT``, ``E_ST_HEADER``, ``E_ST_OFFSETS``, ``E_DTYPE``, ``E_NAME``.
    """
    at_json = base if flat else base + 8
    if decoded_size < 8 or len(prefix) < 8:
        raise FormatError("E_TRUNCATED", "payload too short for a safetensors header", offset=base,
                          expected=">= 8 bytes", got=decoded_size)
    n = int.from_bytes(prefix[:8], "little")
    if n > MAX_ST_HEADER_BYTES:
        raise FormatError("E_LIMIT", "safetensors header larger than the limit", offset=base,
                          expected=f"<= {MAX_ST_HEADER_BYTES}", got=n)
    if 8 + n > decoded_size:
        raise FormatError("E_ST_HEADER", "safetensors header length runs past the payload", offset=base,
                          expected=f"<= {decoded_size - 8}", got=n)
    if len(prefix) < 8 + n:
        raise FormatError("E_TRUNCATED", "payload ends inside the safetensors header", offset=base + len(prefix),
                          expected=8 + n, got=len(prefix))
    raw = bytes(prefix[8:8 + n])
    try:
        obj = json.loads(raw.decode("utf-8"), object_pairs_hook=_Pairs)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise FormatError("E_ST_HEADER", f"safetensors header is not valid UTF-8 JSON ({exc})", offset=at_json,
                          expected="a JSON object", got=raw[:40]) from None
    if not isinstance(obj, _Pairs):
        raise FormatError("E_ST_HEADER", "safetensors header is not a JSON object", offset=at_json,
                          expected="object", got=type(obj).__name__)
    if len(obj) > MAX_TENSORS + 1:
        raise FormatError("E_LIMIT", "too many tensors in the safetensors header", offset=at_json,
                          expected=f"<= {MAX_TENSORS}", got=len(obj))
    seen: set[str] = set()
    for name, _ in obj:  # a repeated tensor name is E_NAME, whatever else is wrong (spec 6.1 check order)
        if name in seen:
            raise FormatError("E_NAME", "safetensors header repeats a tensor name", offset=at_json,
                              expected="distinct names", got=name)
        seen.add(name)
    data_start = 8 + n
    data_len = decoded_size - data_start
    entries = []
    for name, ent in obj:
        if name == "__metadata__":
            raise FormatError("E_ST_HEADER", "__metadata__ is not allowed in an SLDP payload (metadata lives in "
                              "the manifest)", offset=at_json, expected="no __metadata__", got="__metadata__")
        keys = [k for k, _ in ent] if isinstance(ent, _Pairs) else None
        if keys is None or sorted(keys) != ["data_offsets", "dtype", "shape"]:
            raise FormatError("E_ST_HEADER", f"tensor entry {name!r} must have exactly dtype, shape, data_offsets "
                              "(once each)", offset=at_json, expected="{dtype, shape, data_offsets}", got=keys)
        fields = dict(ent)
        dtype, shape, offs = fields["dtype"], fields["shape"], fields["data_offsets"]
        if not isinstance(dtype, str) or dtype not in ALLOWED_DTYPES:
            raise FormatError("E_DTYPE", f"tensor {name!r} has a dtype SLDP does not allow", offset=at_json,
                              expected=" | ".join(sorted(ALLOWED_DTYPES)), got=dtype)
        if (not isinstance(shape, list) or len(shape) > MAX_RANK
                or not all(type(d) is int and 0 <= d < 1 << 53 for d in shape)):
            raise FormatError("E_ST_HEADER", f"tensor {name!r} has an invalid shape", offset=at_json,
                              expected=f"list of <= {MAX_RANK} non-negative ints", got=shape)
        if (not isinstance(offs, list) or len(offs) != 2
                or not all(type(o) is int and o >= 0 for o in offs) or offs[0] > offs[1]):
            raise FormatError("E_ST_OFFSETS", f"tensor {name!r} has invalid data_offsets", offset=at_json,
                              expected="[begin, end] with 0 <= begin <= end", got=offs)
        tshape = tuple(shape)
        if offs[1] - offs[0] != _nbytes(dtype, tshape):
            raise FormatError("E_ST_OFFSETS", f"tensor {name!r}: data_offsets span differs from dtype x shape",
                              offset=at_json, expected=_nbytes(dtype, tshape), got=offs[1] - offs[0])
        entries.append(StEntry(name, dtype, tshape, offs[0], offs[1]))
    # offsets must tile [0, data_len) exactly: no overlap, no hole, nothing out of range
    entries.sort(key=lambda e: (e.begin, e.end))
    pos = 0
    for e in entries:
        if e.begin != pos:
            kind = "overlaps the previous tensor" if e.begin < pos else "leaves a hole before it"
            raise FormatError("E_ST_OFFSETS", f"tensor {e.name!r} {kind} (data byte {min(e.begin, pos)})",
                              offset=at_json, expected=f"begin {pos}", got=e.begin)
        pos = e.end
    if pos != data_len:
        raise FormatError("E_ST_OFFSETS", "tensor data does not end where the payload ends", offset=at_json,
                          expected=f"data length {pos}", got=data_len)
    return entries, data_start


def to_storage(array: np.ndarray, dtype: str) -> np.ndarray:
    """Convert ``array`` to the little-endian storage representation of ``dtype``.

    BF16 is rounded from float32 to nearest-even and returned as raw ``<u2`` words.
    """
    if dtype == "BF16":
        f = np.ascontiguousarray(array, dtype="<f4")
        bits = f.view("<u4").astype(np.uint64)
        # round to nearest, ties to even; NaN stays NaN (quiet bit kept by the truncation below)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        nan = np.isnan(f)
        out = rounded.astype("<u2")
        if nan.any():
            out[nan] = ((bits[nan] >> 16) | 0x40).astype("<u2")
        return out
    return np.ascontiguousarray(array, dtype=NUMPY_DTYPE[dtype])


def from_storage(raw: bytes | memoryview, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Decode stored little-endian bytes into a native numpy array (BF16 -> exact float32)."""
    arr = np.frombuffer(raw, dtype=NUMPY_DTYPE[dtype]).reshape(shape)
    if dtype == "BF16":
        return (arr.astype(np.uint32) << 16).view(np.float32)
    return arr.astype(NUMPY_DTYPE[dtype].newbyteorder("="), copy=True)


# --- lenient reader/writer for user checkpoints -------------------------------------------------------
# Not an SLDP payload: any order, ``__metadata__`` allowed (string -> string), spare padding tolerated.
# It still distrusts the file: header size cap, offsets inside the data section, span = dtype x shape.

def storage_dtype(numpy_dtype: np.dtype[Any] | str) -> str | None:
    """The storage dtype (``"F32"`` ...) of a numpy (or torch, by name) dtype, or ``None`` when it has none."""
    name = str(numpy_dtype).removeprefix("torch.")
    return DTYPE_FOR_NUMPY_NAME.get(name)


def encode_checkpoint(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> bytes:
    """A ``.safetensors`` file (bytes) for ``name -> array`` plus optional ``__metadata__``.

    Tensors are written in the given order, packed with no gaps; the header is padded to 8 bytes. The
    result loads with ``safetensors.numpy.load`` / ``safetensors.torch.load_file``.

    Raises:
        FormatError: ``E_DTYPE`` for an array whose dtype safetensors cannot carry here.
    """
    header: dict[str, Any] = {}
    blobs: list[bytes] = []
    pos = 0
    for name, arr in arrays.items():
        a = np.asarray(arr)
        dt = storage_dtype(a.dtype)
        if dt is None or dt == "BF16":
            raise FormatError("E_DTYPE", f"tensor {name!r}: numpy dtype {a.dtype} has no safetensors dtype here",
                              expected=" | ".join(sorted(set(DTYPE_FOR_NUMPY_NAME.values()) - {"BF16"})), got=a.dtype)
        raw = np.ascontiguousarray(a, dtype=NUMPY_DTYPE[dt]).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [pos, pos + len(raw)]}
        blobs.append(raw)
        pos += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((-(8 + len(text))) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(blobs)


def read_checkpoint(source: bytes | memoryview | str | os.PathLike[str]
                    ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read any well-formed ``.safetensors`` file (lenient: user checkpoints, ``__metadata__`` allowed).

    Args:
        source: the file's bytes, or its path.

    Returns:
        ``(name -> native numpy array, metadata)``; BF16 decodes to exact float32.

    Raises:
        FormatError: ``E_IO`` unreadable file, ``E_TRUNCATED``/``E_LIMIT``/``E_ST_HEADER`` bad header,
            ``E_DTYPE`` unknown dtype, ``E_ST_OFFSETS`` a tensor outside the data section or whose span differs
            from dtype x shape.
    """
    if isinstance(source, (bytes, memoryview)):
        raw = memoryview(source)
    else:
        try:
            with open(source, "rb") as fh:
                raw = memoryview(fh.read())
        except OSError as exc:
            raise FormatError("E_IO", f"cannot read {os.fspath(source)}: {exc.strerror or exc}") from None
    if len(raw) < 8:
        raise FormatError("E_TRUNCATED", "too short for a safetensors file", offset=0, expected=">= 8 bytes",
                          got=len(raw))
    n = int.from_bytes(raw[:8], "little")
    if n > MAX_ST_HEADER_BYTES or 8 + n > len(raw):
        raise FormatError("E_LIMIT" if n > MAX_ST_HEADER_BYTES else "E_ST_HEADER",
                          "safetensors header length is out of range", offset=0,
                          expected=f"<= {min(MAX_ST_HEADER_BYTES, len(raw) - 8)}", got=n)
    try:
        obj = json.loads(bytes(raw[8:8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise FormatError("E_ST_HEADER", f"safetensors header is not valid UTF-8 JSON ({exc})", offset=8,
                          expected="a JSON object", got=bytes(raw[8:48])) from None
    if not isinstance(obj, dict):
        raise FormatError("E_ST_HEADER", "safetensors header is not a JSON object", offset=8, expected="object",
                          got=type(obj).__name__)
    meta_obj = obj.pop("__metadata__", None) or {}
    if not isinstance(meta_obj, dict):
        raise FormatError("E_ST_HEADER", "__metadata__ is not an object", offset=8, expected="object",
                          got=type(meta_obj).__name__)
    data = raw[8 + n:]
    out: dict[str, np.ndarray] = {}
    for name, ent in obj.items():
        try:
            dtype, shape, (b, e) = ent["dtype"], tuple(int(d) for d in ent["shape"]), ent["data_offsets"]
        except (TypeError, KeyError, ValueError) as exc:
            raise FormatError("E_ST_HEADER", f"tensor entry {name!r} is malformed ({exc})", offset=8,
                              expected="{dtype, shape, data_offsets}", got=ent) from None
        if dtype not in NUMPY_DTYPE:
            raise FormatError("E_DTYPE", f"tensor {name!r} has an unsupported dtype", offset=8,
                              expected=" | ".join(sorted(NUMPY_DTYPE)), got=dtype)
        if (type(b) is not int or type(e) is not int or not 0 <= b <= e <= len(data)
                or any(d < 0 for d in shape) or e - b != _nbytes(dtype, shape)):
            raise FormatError("E_ST_OFFSETS", f"tensor {name!r} lies outside the data section or its span differs "
                              "from dtype x shape", offset=8 + n, expected=f"span {_nbytes(dtype, shape)}",
                              got=[b, e])
        out[name] = from_storage(data[b:e], dtype, shape)
    return out, {str(k): str(v) for k, v in meta_obj.items()}
