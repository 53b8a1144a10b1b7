"""Canonical msgpack: the manifest's encoding (spec section "Manifest encoding").

A small, strict codec instead of the ``msgpack`` package, because the reader must (a) report the byte
offset of every defect, (b) reject duplicate keys, ext types and float32 rather than silently accept
them, and (c) accept only the one canonical byte form of a value, so that the manifest digest is stable
across writers. Canonical form: shortest length/integer prefixes, non-negative integers in unsigned forms,
floats as float64 only, map keys are strings sorted by their UTF-8 bytes with no duplicates.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from sldpack.errors import FormatError, UsageError
from sldpack.format.constants import MAX_MSGPACK_DEPTH

__all__ = ["decode", "encode"]

_F64 = struct.Struct(">d")


# --- encoder -----------------------------------------------------------------------------------

def encode(value: Any) -> bytes:
    """Encode ``value`` (dict/list/tuple/str/bytes/int/float/bool/None) in canonical msgpack.

    Raises:
        UsageError: for a type msgpack-canonical does not carry, a non-string map key, a non-finite
            float or an integer outside the 64-bit range.
    """
    out = bytearray()
    _enc(value, out, 0)
    return bytes(out)


def _enc_len(n: int, fix_base: int, fix_max: int, op8: int | None, op16: int, op32: int, out: bytearray) -> None:
    if n <= fix_max:
        out.append(fix_base | n)
    elif op8 is not None and n <= 0xFF:
        out += bytes((op8, n))
    elif n <= 0xFFFF:
        out.append(op16)
        out += n.to_bytes(2, "big")
    elif n <= 0xFFFFFFFF:
        out.append(op32)
        out += n.to_bytes(4, "big")
    else:
        raise UsageError(f"msgpack container or string too long: {n}")


def _enc(v: Any, out: bytearray, depth: int) -> None:
    if depth > MAX_MSGPACK_DEPTH:
        raise UsageError(f"manifest value nests deeper than {MAX_MSGPACK_DEPTH}")
    if v is None:
        out.append(0xC0)
    elif v is True:
        out.append(0xC3)
    elif v is False:
        out.append(0xC2)
    elif isinstance(v, int):
        _enc_int(int(v), out)
    elif isinstance(v, float):
        if not math.isfinite(v):
            raise UsageError(f"manifest floats must be finite, got {v!r}")
        out.append(0xCB)
        out += _F64.pack(v)
    elif isinstance(v, str):
        raw = v.encode("utf-8")
        _enc_len(len(raw), 0xA0, 31, 0xD9, 0xDA, 0xDB, out)
        out += raw
    elif isinstance(v, (bytes, bytearray, memoryview)):
        raw = bytes(v)
        if len(raw) <= 0xFF:
            out += bytes((0xC4, len(raw)))
        elif len(raw) <= 0xFFFF:
            out.append(0xC5)
            out += len(raw).to_bytes(2, "big")
        else:
            out.append(0xC6)
            out += len(raw).to_bytes(4, "big")
        out += raw
    elif isinstance(v, (list, tuple)):
        _enc_len(len(v), 0x90, 15, None, 0xDC, 0xDD, out)
        for item in v:
            _enc(item, out, depth + 1)
    elif isinstance(v, dict):
        for k in v:
            if not isinstance(k, str):
                raise UsageError(f"manifest map keys must be strings, got {type(k).__name__}")
        items = sorted(v.items(), key=lambda kv: kv[0].encode("utf-8"))
        _enc_len(len(items), 0x80, 15, None, 0xDE, 0xDF, out)
        for k, item in items:
            _enc(k, out, depth + 1)
            _enc(item, out, depth + 1)
    else:
        # numpy scalars and the like: accept the exact Python equivalents only
        if hasattr(v, "item") and callable(v.item):
            _enc(v.item(), out, depth)
        else:
            raise UsageError(f"cannot store a {type(v).__name__} in the manifest")


def _enc_int(n: int, out: bytearray) -> None:
    if 0 <= n <= 0x7F:
        out.append(n)
    elif -32 <= n < 0:
        out.append(n & 0xFF)
    elif n >= 0:
        for op, width in ((0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8)):
            if n < 1 << (8 * width):
                out.append(op)
                out += n.to_bytes(width, "big")
                return
        raise UsageError(f"integer {n} does not fit in 64 bits")
    else:
        for op, width in ((0xD0, 1), (0xD1, 2), (0xD2, 4), (0xD3, 8)):
            if n >= -(1 << (8 * width - 1)):
                out.append(op)
                out += n.to_bytes(width, "big", signed=True)
                return
        raise UsageError(f"integer {n} does not fit in 64 bits")


# --- decoder -----------------------------------------------------------------------------------

class _Decoder:
    def __init__(self, data: bytes | memoryview, base: int, key_offsets: dict[str, int] | None = None) -> None:
        self.data = memoryview(data).cast("B")
        self.pos = 0
        self.base = base  # absolute file offset of data[0], for error messages
        self.offsets: dict[str, int] = {}
        self.key_offsets = key_offsets

    def fail(self, code: str, msg: str, at: int, expected: Any = None, got: Any = None) -> FormatError:
        return FormatError(code, msg, offset=self.base + at, expected=expected, got=got)

    def take(self, n: int, at: int) -> memoryview:
        if n > len(self.data) - self.pos:
            raise self.fail("E_MSGPACK", "manifest ends inside a msgpack value", at,
                            expected=f"{n} more bytes", got=f"{len(self.data) - self.pos}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def uint(self, width: int, at: int) -> int:
        return int.from_bytes(self.take(width, at), "big")

    def noncanon(self, at: int, what: str, expected: str) -> FormatError:
        return self.fail("E_MSGPACK_NONCANONICAL", f"{what} is not in canonical (shortest) form", at,
                         expected=expected, got=f"byte 0x{self.data[at]:02x}")

    def value(self, path: str, depth: int) -> Any:
        at = self.pos
        if depth > MAX_MSGPACK_DEPTH:
            raise self.fail("E_MSGPACK_DEPTH", "manifest nests too deeply", at,
                            expected=f"depth <= {MAX_MSGPACK_DEPTH}", got=depth)
        self.offsets[path] = at
        b = self.take(1, at)[0]
        if b <= 0x7F:
            return b
        if b >= 0xE0:
            return b - 0x100
        if 0x80 <= b <= 0x8F:
            return self.map(b & 0x0F, path, depth, at)
        if 0x90 <= b <= 0x9F:
            return self.array(b & 0x0F, path, depth, at)
        if 0xA0 <= b <= 0xBF:
            return self.string(b & 0x1F, at)
        if b == 0xC0:
            return None
        if b == 0xC2:
            return False
        if b == 0xC3:
            return True
        if b in (0xC4, 0xC5, 0xC6):
            width = {0xC4: 1, 0xC5: 2, 0xC6: 4}[b]
            n = self.uint(width, at)
            if width > 1 and n < 1 << (8 * width // 2):
                raise self.noncanon(at, "bin length", "the shortest bin prefix")
            return bytes(self.take(n, at))
        if b in (0xC7, 0xC8, 0xC9) or 0xD4 <= b <= 0xD8:
            raise self.fail("E_MSGPACK_TYPE", "ext types are not allowed in the manifest", at,
                            expected="no ext", got=f"0x{b:02x}")
        if b == 0xCA:
            raise self.fail("E_MSGPACK_TYPE", "float32 is not allowed in the manifest (floats are float64)", at,
                            expected="0xcb float64", got="0xca float32")
        if b == 0xCB:
            v = _F64.unpack(self.take(8, at))[0]
            if not math.isfinite(v):
                raise self.fail("E_NONFINITE", "NaN and infinity are not allowed in the manifest", at,
                                expected="finite float", got=repr(v))
            return v
        if 0xCC <= b <= 0xCF:
            width = 1 << (b - 0xCC)
            n = self.uint(width, at)
            floor = 0x80 if width == 1 else 1 << (8 * width // 2)
            if n < floor:
                raise self.noncanon(at, "unsigned integer", "the shortest integer form")
            return n
        if 0xD0 <= b <= 0xD3:
            width = 1 << (b - 0xD0)
            n = int.from_bytes(self.take(width, at), "big", signed=True)
            if n >= 0:
                raise self.noncanon(at, "non-negative integer in a signed form", "an unsigned form")
            floor = -32 if width == 1 else -(1 << (8 * (width // 2) - 1))
            if n >= floor:
                raise self.noncanon(at, "negative integer", "the shortest integer form")
            return n
        if b in (0xD9, 0xDA, 0xDB):
            width = {0xD9: 1, 0xDA: 2, 0xDB: 4}[b]
            n = self.uint(width, at)
            if n < (32 if width == 1 else 1 << (8 * width // 2)):
                raise self.noncanon(at, "string length", "the shortest str prefix")
            return self.string(n, at)
        if b in (0xDC, 0xDD):
            width = 2 if b == 0xDC else 4
            n = self.uint(width, at)
            if n < (16 if width == 2 else 1 << 16):
                raise self.noncanon(at, "array length", "the shortest array prefix")
            return self.array(n, path, depth, at)
        if b in (0xDE, 0xDF):
            width = 2 if b == 0xDE else 4
            n = self.uint(width, at)
            if n < (16 if width == 2 else 1 << 16):
                raise self.noncanon(at, "map length", "the shortest map prefix")
            return self.map(n, path, depth, at)
        raise self.fail("E_MSGPACK", "byte 0xc1 is never used in msgpack", at, expected="a type byte", got="0xc1")

    def string(self, n: int, at: int) -> str:
        raw = self.take(n, at)
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            # offsets convention: a manifest error points at the first byte of the offending value
            raise self.fail("E_MSGPACK", f"string is not valid UTF-8 (byte {exc.start} of the string)", at,
                            expected="UTF-8", got=f"byte 0x{raw[exc.start]:02x}") from None

    def _bound(self, n: int, per_item: int, at: int, what: str) -> None:
        # every element needs at least one byte: bound the count by what remains before allocating
        if n * per_item > len(self.data) - self.pos:
            raise self.fail("E_MSGPACK", f"{what} declares more elements than bytes remain", at,
                            expected=f"<= {(len(self.data) - self.pos) // per_item} elements", got=n)

    def array(self, n: int, path: str, depth: int, at: int) -> list[Any]:
        self._bound(n, 1, at, "array")
        return [self.value(f"{path}.{i}" if path else str(i), depth + 1) for i in range(n)]

    def map(self, n: int, path: str, depth: int, at: int) -> dict[str, Any]:
        self._bound(n, 2, at, "map")
        out: dict[str, Any] = {}
        prev: bytes | None = None
        for _ in range(n):
            kat = self.pos
            kb = self.data[kat] if kat < len(self.data) else None
            is_str = kb is not None and (0xA0 <= kb <= 0xBF or kb in (0xD9, 0xDA, 0xDB))
            if not is_str:
                raise self.fail("E_MSGPACK_TYPE", "map keys must be strings", kat, expected="str key",
                                got="end of data" if kb is None else f"type byte 0x{kb:02x}")
            key = self.value(f"{path}.<key>", depth + 1)
            assert isinstance(key, str)
            kraw = key.encode("utf-8")
            if prev is not None:
                if kraw == prev:
                    raise self.fail("E_MSGPACK_DUPLICATE_KEY", f"map repeats key {key!r}", kat,
                                    expected="distinct keys", got=key)
                if kraw < prev:
                    raise self.fail("E_MSGPACK_NONCANONICAL", "map keys are not sorted by UTF-8 bytes", kat,
                                    expected=f"a key after {prev.decode('utf-8', 'replace')!r}", got=key)
            prev = kraw
            child = f"{path}.{key}" if path else key
            if self.key_offsets is not None:
                self.key_offsets[child] = kat
            out[key] = self.value(child, depth + 1)
        return out


def decode(data: bytes | memoryview, *, base: int = 0,
           key_offsets: dict[str, int] | None = None) -> tuple[Any, dict[str, int]]:
    """Decode one canonical msgpack value that spans all of ``data``.

    Args:
        data: the bytes.
        base: absolute file offset of ``data[0]``; error offsets are reported relative to the file.
        key_offsets: if given, filled with dotted path -> offset (inside ``data``) of the map *key* whose
            value sits at that path (errors about a key, such as a bad tensor name, point at the key).

    Returns:
        ``(value, offsets)`` where ``offsets`` maps each dotted path (``arch.id``, ``tensors.x.shape.0``)
        to the offset of that value *inside* ``data``.

    Raises:
        FormatError: ``E_MSGPACK`` (malformed), ``E_MSGPACK_TYPE``, ``E_MSGPACK_NONCANONICAL``,
            ``E_MSGPACK_DUPLICATE_KEY``, ``E_MSGPACK_DEPTH`` or ``E_NONFINITE``, with the byte offset.
    """
    dec = _Decoder(data, base, key_offsets)
    value = dec.value("", 0)
    if dec.pos != len(dec.data):
        raise dec.fail("E_MSGPACK", "bytes follow the manifest's msgpack value", dec.pos,
                       expected="end of manifest", got=f"{len(dec.data) - dec.pos} more bytes")
    return value, dec.offsets
