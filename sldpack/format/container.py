"""Reading and writing ``.sldp`` files (spec ``spec/SLDP-1.md``).

The reader treats every file as hostile: each length is checked against what remains before anything is
allocated, every structure is validated before use, and every failure is a :class:`FormatError` carrying
an error code and an absolute byte offset.
"""

from __future__ import annotations

import builtins
import hashlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from sldpack.atomic import atomic_write_bytes
from sldpack.errors import DigestError, FormatError, UsageError, VersionError
from sldpack.format import canonical_msgpack
from sldpack.format.constants import (
    COMPRESSIONS,
    DTYPE_FOR_NUMPY_NAME,
    DTYPE_ITEMSIZE,
    HEADER_DIGEST_PREFIX,
    HEADER_SIZE,
    HEADER_STRUCT,
    MAGIC,
    MAX_DECODED_PAYLOAD,
    MAX_MANIFEST_BYTES,
    MAX_RANK,
    MAX_ST_HEADER_BYTES,
    MAX_TENSORS,
    OFF_MANIFEST_LENGTH,
    OFF_MANIFEST_SHA256,
    OFF_PAYLOAD_LENGTH,
    OFF_RESERVED,
    OFF_VERSION_MAJOR,
    ROLES,
    TEXT_MODE_MAGICS,
    VERSION_MAJOR,
    VERSION_MINOR,
    ZSTD_LEVEL_DEFAULT,
    ZSTD_MAGIC,
    minor_version_for,
    role_for_name,
)
from sldpack.format.manifest import Manifest, PayloadInfo, TensorInfo, check_tensor_name
from sldpack.format.safetensors_codec import StEntry, encode_header, from_storage, parse_header, to_storage

__all__ = ["Header", "Layout", "SldpFile", "Tensor", "assemble", "encode", "header_digest", "open", "read", "write"]

_ZSTD_FEED = 1024  # input bytes per decompress call: bounds output overshoot to ~32 MiB (128 KiB/block)
_ZSTD_MAX_WINDOW = 1 << 27


@dataclass(frozen=True)
class Tensor:
    """A tensor to store: its role, the values, and the storage dtype (``None``: from the array)."""

    role: str
    array: np.ndarray
    dtype: str | None = None


@dataclass(frozen=True)
class Header:
    """The fixed 64-byte header."""

    version_major: int
    version_minor: int
    manifest_length: int
    payload_length: int
    manifest_sha256: str


@dataclass(frozen=True)
class Layout:
    """Where the bytes of a file go. ``header + manifest + payload_stored == file size`` always."""

    header_bytes: int
    manifest_bytes: int
    payload_stored_bytes: int
    payload_decoded_bytes: int
    st_header_bytes: int
    tensor_bytes: Mapping[str, int]
    compression: str


# --- writer ------------------------------------------------------------------------------------

def _storage_dtype(t: Tensor, name: str) -> str:
    if t.dtype is not None:
        if t.dtype not in DTYPE_ITEMSIZE:
            raise UsageError(f"tensor {name!r}: storage dtype {t.dtype!r} not in {sorted(DTYPE_ITEMSIZE)}")
        return t.dtype
    key = np.dtype(t.array.dtype).name
    if key not in DTYPE_FOR_NUMPY_NAME:
        raise UsageError(f"tensor {name!r}: numpy dtype {key} has no SLDP storage dtype; pass dtype=")
    return DTYPE_FOR_NUMPY_NAME[key]


def encode(manifest: Manifest, tensors: Mapping[str, Tensor], *, compression: str = "none",
           level: int = ZSTD_LEVEL_DEFAULT) -> bytes:
    """Serialise a complete ``.sldp`` file to bytes.

    The writer fills ``manifest.tensors`` (role, dtype, shape, SHA-256) and ``manifest.payload`` from
    ``tensors``; whatever the caller put there is replaced.

    Args:
        manifest: everything but the tensor table and payload info.
        tensors: name -> :class:`Tensor`.
        compression: ``"none"`` or ``"zstd"``.
        level: zstd level (1..22), used with ``compression="zstd"``.

    Raises:
        UsageError: bad names, roles, dtypes, ranks, non-finite learning rates, or too many tensors.
    """
    if compression not in COMPRESSIONS:
        raise UsageError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
    if len(tensors) > MAX_TENSORS:
        raise UsageError(f"at most {MAX_TENSORS} tensors, got {len(tensors)}")
    stored: dict[str, np.ndarray] = {}
    infos: dict[str, TensorInfo] = {}
    for name, t in tensors.items():
        try:
            check_tensor_name(name)
        except FormatError as exc:
            raise UsageError(str(exc)) from None
        if t.role not in ROLES:
            raise UsageError(f"tensor {name!r}: role {t.role!r} not in {ROLES}")
        if t.role != role_for_name(name):
            raise UsageError(f"tensor {name!r} must have role {role_for_name(name)!r} (spec 6.2: names and roles "
                             f"agree), got {t.role!r}")
        if t.array.ndim > MAX_RANK:
            raise UsageError(f"tensor {name!r}: rank {t.array.ndim} exceeds {MAX_RANK}")
        dtype = _storage_dtype(t, name)
        data = to_storage(np.asarray(t.array), dtype)
        if t.role == "lrs" and dtype in ("F64", "F32", "F16", "BF16") and not np.isfinite(
                from_storage(data.tobytes(), dtype, data.shape)).all():
            raise UsageError(f"tensor {name!r}: learning rates must be finite")
        stored[name] = data
        infos[name] = TensorInfo(role=t.role, dtype=dtype, shape=tuple(int(d) for d in data.shape),
                                 sha256=hashlib.sha256(data.tobytes()).hexdigest())
    st_header, _ = encode_header({n: (i.dtype, i.shape) for n, i in infos.items()})
    order = sorted(stored, key=lambda n: n.encode("utf-8"))
    decoded = b"".join([st_header, *(stored[n].tobytes() for n in order)])
    if len(decoded) > MAX_DECODED_PAYLOAD:
        raise UsageError(f"payload of {len(decoded)} bytes exceeds the {MAX_DECODED_PAYLOAD}-byte limit")
    if compression == "zstd":
        import zstandard

        payload = zstandard.ZstdCompressor(level=level, write_content_size=True).compress(decoded)
    else:
        payload = decoded
    full = replace(manifest, tensors={n: infos[n] for n in order},
                   payload=PayloadInfo(compression=compression, stored_size=len(payload),
                                       decoded_size=len(decoded),
                                       stored_sha256=hashlib.sha256(payload).hexdigest()
                                       if compression == "zstd" else None))
    return assemble(full, payload)


def assemble(manifest: Manifest, payload: bytes, *, version: tuple[int, int] | None = None) -> bytes:
    """Header + canonical manifest + ``payload`` (already stored: raw or one zstd frame), as file bytes.

    The manifest must already describe ``payload`` (tensor table, payload info). The header carries the
    lowest version that carries the manifest's content (spec section 3: 1.0 unless a key of a later minor
    version, e.g. ``decision``, is present). ``version`` lets a re-pack keep the file's own version; it is
    raised, never lowered, to what the content needs.

    Raises:
        UsageError: the encoded manifest exceeds the manifest limit.
    """
    obj = manifest.to_obj()
    need = (VERSION_MAJOR, minor_version_for(obj))
    major, minor = need if version is None else (version[0], max(version[1], need[1]))
    mbytes = canonical_msgpack.encode(obj)
    if len(mbytes) > MAX_MANIFEST_BYTES:
        raise UsageError(f"manifest of {len(mbytes)} bytes exceeds the {MAX_MANIFEST_BYTES}-byte limit "
                         "(move bulk data into tensors)")
    prefix = HEADER_STRUCT.pack(MAGIC, major, minor, 0, len(mbytes), len(payload),
                                bytes(32))[:HEADER_DIGEST_PREFIX]
    return b"".join([prefix, header_digest(prefix, mbytes), mbytes, payload])


def header_digest(prefix: bytes | memoryview, manifest: bytes | memoryview) -> bytes:
    """The header's ``manifest_sha256``: SHA-256 of header bytes 0..31 followed by the manifest bytes.

    Covering the header too means a flipped bit anywhere in it is caught: ``version_minor`` has no other
    check (any minor is accepted), the other fields also have their own.
    """
    h = hashlib.sha256(prefix[:HEADER_DIGEST_PREFIX])
    h.update(manifest)
    return h.digest()


def write(path: str | os.PathLike[str], manifest: Manifest, tensors: Mapping[str, Tensor], *,
          compression: str = "none", level: int = ZSTD_LEVEL_DEFAULT) -> Manifest:
    """Write a ``.sldp`` file atomically (temp file + fsync + rename) and return the stored manifest."""
    data = encode(manifest, tensors, compression=compression, level=level)
    atomic_write_bytes(path, data)
    return read(data, verify=False).manifest


# --- reader ------------------------------------------------------------------------------------

class _Source:
    """Random access to the file's bytes: an in-memory buffer, or a file read with positioned reads.

    Positioned reads rather than a memory map: slices of a map kept alive by an exception's traceback
    would stop the map from closing, and reads let ``inspect`` touch nothing but header and manifest.
    """

    def __init__(self, data: bytes | bytearray | memoryview | None = None, path: str | None = None) -> None:
        self._file: Any = None
        self._buf: memoryview | None = None
        self.path = path
        if data is not None:
            self._buf = memoryview(data).cast("B")
            self.size = len(self._buf)
        else:
            assert path is not None
            try:
                self._file = builtins.open(path, "rb")  # noqa: SIM115 - closed by close()
                self.size = os.fstat(self._file.fileno()).st_size
            except OSError as exc:
                self.close()
                raise FormatError("E_IO", f"cannot read file: {exc.strerror or exc}", path=path) from None

    def read_at(self, offset: int, n: int) -> bytes | memoryview:
        """``n`` bytes at ``offset``; callers have already bounded both by ``size``."""
        if self._buf is not None:
            return self._buf[offset:offset + n]
        try:
            self._file.seek(offset)
            data: bytes = self._file.read(n)
        except OSError as exc:
            raise FormatError("E_IO", f"cannot read file: {exc.strerror or exc}", offset=offset,
                              path=self.path) from None
        if len(data) != n:  # the file shrank under us
            raise FormatError("E_TRUNCATED", "file ended while reading", offset=offset + len(data),
                              expected=n, got=len(data), path=self.path)
        return data

    def chunks(self, offset: int, n: int, size: int = 1 << 23) -> Iterator[bytes | memoryview]:
        """The range ``[offset, offset + n)`` in chunks of at most ``size`` bytes."""
        end = offset + n
        while offset < end:
            k = min(size, end - offset)
            yield self.read_at(offset, k)
            offset += k

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _parse_header(src: _Source) -> Header:
    if src.size < HEADER_SIZE:
        got = bytes(src.read_at(0, min(10, src.size)))
        if MAGIC.startswith(got[:8]):  # a prefix of the magic or the whole magic; includes the empty file
            raise FormatError("E_TRUNCATED", "file ends inside the 64-byte header", offset=src.size,
                              expected=f">= {HEADER_SIZE} bytes", got=src.size)
        _check_magic(got)
    raw = bytes(src.read_at(0, HEADER_SIZE))
    _magic, major, minor, reserved, mlen, plen, mdigest = HEADER_STRUCT.unpack(raw)
    _check_magic(raw)
    if major != VERSION_MAJOR:
        raise VersionError("E_VERSION_MAJOR", f"file is SLDP {major}.{minor}; this reader implements SLDP "
                           f"{VERSION_MAJOR}.x (up to {VERSION_MAJOR}.{VERSION_MINOR})", offset=OFF_VERSION_MAJOR,
                           expected=f"major {VERSION_MAJOR}", got=f"{major}.{minor}")
    if reserved != 0:
        raise FormatError("E_RESERVED", "reserved header field must be zero", offset=OFF_RESERVED,
                          expected=0, got=reserved)
    if mlen > MAX_MANIFEST_BYTES:
        raise FormatError("E_LIMIT", "manifest_length exceeds the limit", offset=OFF_MANIFEST_LENGTH,
                          expected=f"<= {MAX_MANIFEST_BYTES}", got=mlen)
    if plen > MAX_DECODED_PAYLOAD:
        raise FormatError("E_LIMIT", "payload_length exceeds the limit", offset=OFF_PAYLOAD_LENGTH,
                          expected=f"<= {MAX_DECODED_PAYLOAD}", got=plen)
    end = HEADER_SIZE + mlen + plen
    if src.size < end:
        raise FormatError("E_TRUNCATED", "file is shorter than its header declares", offset=src.size,
                          expected=f"{end} bytes", got=f"{src.size} bytes")
    if src.size > end:
        raise FormatError("E_TRAILING", "bytes follow the declared end of the file", offset=end,
                          expected=f"{end} bytes", got=f"{src.size} bytes")
    return Header(major, minor, mlen, plen, bytes(mdigest).hex())


def _check_magic(got: bytes) -> None:
    """``got``: the file's first bytes (at least 10 when the file has them)."""
    if got[:8] == MAGIC:
        return
    # text-mode transfers (spec section 3): CRLF->LF drops the \r, LF->CRLF adds one before each (or each
    # lone) \n; the translated sequence must be there in full
    if got[:5] == MAGIC[:5] and any(got[5:].startswith(t) for t in TEXT_MODE_MAGICS):
        raise FormatError("E_TEXT_MODE", "magic damaged by a text-mode (CRLF/LF) transfer; copy the file "
                          "in binary mode", offset=0, expected=MAGIC.hex(), got=bytes(got[:8]).hex())
    raise FormatError("E_MAGIC", "not an SLDP file", offset=0, expected=MAGIC.hex(), got=bytes(got[:8]).hex())


def _parse_manifest(src: _Source, header: Header) -> tuple[Manifest, bytes]:
    """The checked manifest and the canonical safetensors header its tensor table implies."""
    mbytes = src.read_at(HEADER_SIZE, header.manifest_length)
    digest = header_digest(src.read_at(0, HEADER_DIGEST_PREFIX), mbytes).hex()
    if digest != header.manifest_sha256:
        raise DigestError("E_MANIFEST_DIGEST", "header bytes 0-31 and manifest do not match manifest_sha256 "
                          "(corrupted)", offset=OFF_MANIFEST_SHA256, expected=header.manifest_sha256, got=digest)
    keys: dict[str, int] = {}
    obj, offsets = canonical_msgpack.decode(mbytes, base=HEADER_SIZE, key_offsets=keys)
    manifest = Manifest.from_obj(obj, offsets=offsets, base=HEADER_SIZE, key_offsets=keys)
    pay = manifest.payload
    assert pay is not None
    where = HEADER_SIZE + offsets.get("payload.decoded_size", 0)
    if pay.stored_size != header.payload_length:
        raise FormatError("E_SCHEMA", "payload.stored_size differs from the header's payload_length",
                          offset=HEADER_SIZE + offsets.get("payload.stored_size", 0),
                          expected=header.payload_length, got=pay.stored_size, field="payload.stored_size")
    if pay.decoded_size > MAX_DECODED_PAYLOAD:
        raise FormatError("E_LIMIT", "payload.decoded_size exceeds the limit", offset=where,
                          expected=f"<= {MAX_DECODED_PAYLOAD}", got=pay.decoded_size, field="payload.decoded_size")
    if pay.compression == "none" and pay.decoded_size != pay.stored_size:
        raise FormatError("E_SCHEMA", "uncompressed payload must have decoded_size == stored_size",
                          offset=HEADER_SIZE + offsets.get("payload.decoded_size", 0), expected=pay.stored_size,
                          got=pay.decoded_size, field="payload.decoded_size")
    expected_st, _ = encode_header({n: (t.dtype, t.shape) for n, t in manifest.tensors.items()})
    need = len(expected_st) + sum(t.nbytes for t in manifest.tensors.values())
    if need != pay.decoded_size:
        raise FormatError("E_SCHEMA", "payload.decoded_size differs from what the tensor table needs",
                          offset=HEADER_SIZE + offsets.get("payload.decoded_size", 0), expected=need,
                          got=pay.decoded_size, field="payload.decoded_size")
    return manifest, expected_st


class SldpFile:
    """An opened ``.sldp`` file. Header and manifest are parsed on open; tensor bytes on demand.

    Use :func:`open` (lazy, from a path) or :func:`read` (from bytes or a path, fully checked).
    """

    def __init__(self, src: _Source) -> None:
        self._src = src
        self.path = src.path
        try:
            self.header = _parse_header(src)
            self.manifest, self._st_header = _parse_manifest(src, self.header)
        except FormatError as exc:
            src.close()
            raise (exc.with_path(src.path) if src.path else exc) from None
        self._decoded: memoryview | None = None  # the decompressed payload, zstd files only
        self._entries: dict[str, StEntry] | None = None
        self._data_start = 0

    @property
    def file_size(self) -> int:
        """Size of the whole file in bytes."""
        return self._src.size

    @property
    def payload_offset(self) -> int:
        """Absolute offset of the payload's first byte."""
        return HEADER_SIZE + self.header.manifest_length

    def __enter__(self) -> SldpFile:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Release the file handle (an in-memory source has none)."""
        self._decoded = None
        self._src.close()

    def _fail(self, exc: FormatError) -> FormatError:
        return exc.with_path(self.path) if self.path else exc

    def _payload(self) -> tuple[memoryview | None, dict[str, StEntry], int]:
        """Parse the payload's safetensors header (decompressing a zstd payload whole, bounded)."""
        if self._entries is not None:
            return self._decoded, self._entries, self._data_start
        pay = self.manifest.payload
        assert pay is not None
        # offsets convention (spec section 11): errors in the safetensors length field point at the payload's
        # first byte, errors in its JSON at the JSON's first byte; every error inside a compressed payload at
        # the payload's first byte (decoded bytes have no position in the file)
        base = self.payload_offset
        flat = pay.compression != "none"
        try:
            if pay.compression == "none":
                decoded = None
                n = int.from_bytes(self._src.read_at(base, 8), "little") if pay.decoded_size >= 8 else 0
                prefix = self._src.read_at(base, min(pay.decoded_size, 8 + min(n, MAX_ST_HEADER_BYTES)))
            else:
                stored = self._src.read_at(base, self.header.payload_length)
                got = hashlib.sha256(stored).hexdigest()
                if got != pay.stored_sha256:  # checked before the frame is parsed (spec section 9)
                    raise DigestError("E_PAYLOAD_DIGEST", "compressed payload bytes do not match "
                                      "payload.stored_sha256", offset=base, expected=pay.stored_sha256, got=got,
                                      field="payload.stored_sha256")
                decoded = memoryview(_unzstd(stored, pay.decoded_size, base))
                prefix = decoded
            entries, data_start = parse_header(prefix, decoded_size=pay.decoded_size, base=base, flat=flat)
            self._check_against_manifest(prefix, entries, base if flat else base + 8)
        except FormatError as exc:
            raise self._fail(exc) from None
        self._decoded = decoded
        self._entries = {e.name: e for e in entries}
        self._data_start = data_start
        return decoded, self._entries, data_start

    def _check_against_manifest(self, decoded: bytes | memoryview, entries: list[StEntry], at: int) -> None:
        """E_ST_MISMATCH at ``at`` (the JSON's first byte, or the payload's for a compressed payload)."""
        base = at
        table = self.manifest.tensors
        names = {e.name for e in entries}
        if names != set(table):
            missing = sorted(set(table) - names)[:3]
            extra = sorted(names - set(table))[:3]
            raise FormatError("E_ST_MISMATCH", "payload tensors differ from the manifest's tensor table",
                              offset=base, expected=f"also {missing}" if missing else "no extra tensors",
                              got=f"extra {extra}" if extra else f"missing {missing}")
        for e in entries:
            t = table[e.name]
            if (t.dtype, t.shape) != (e.dtype, e.shape):
                raise FormatError("E_ST_MISMATCH", f"tensor {e.name!r} differs between payload and manifest",
                                  offset=base, expected=f"{t.dtype}{list(t.shape)}", got=f"{e.dtype}{list(e.shape)}")
        canonical = self._st_header
        if bytes(decoded[:len(canonical)]) != canonical:
            raise FormatError("E_ST_MISMATCH", "safetensors header is not in canonical form (name order, no "
                              "whitespace, space padding to 8)", offset=base, expected=canonical[:48],
                              got=bytes(decoded[:48]))

    def _span(self, name: str) -> tuple[int, int]:
        """(offset, length) of tensor ``name``'s bytes in the decoded payload."""
        if name not in self.manifest.tensors:
            raise UsageError(f"no tensor named {name!r}; the file has {sorted(self.manifest.tensors)}")
        _, entries, start = self._payload()
        e = entries[name]
        return start + e.begin, e.end - e.begin

    def _raw(self, name: str) -> bytes | memoryview:
        off, n = self._span(name)
        decoded, _, _ = self._payload()
        if decoded is not None:
            return decoded[off:off + n]
        return self._src.read_at(self.payload_offset + off, n)

    def _digest(self, name: str) -> str:
        """SHA-256 of a tensor's bytes, streamed in chunks (no allocation of the whole tensor)."""
        off, n = self._span(name)
        decoded, _, _ = self._payload()
        h = hashlib.sha256()
        if decoded is not None:
            h.update(decoded[off:off + n])
        else:
            for chunk in self._src.chunks(self.payload_offset + off, n):
                h.update(chunk)
        return h.hexdigest()

    def _flat_offsets(self) -> bool:
        """True when errors inside the payload all point at its first byte (compressed payload)."""
        pay = self.manifest.payload
        assert pay is not None
        return pay.compression != "none"

    def _tensor_offset(self, name: str) -> int:
        _, entries, start = self._payload()
        pay = self.manifest.payload
        assert pay is not None
        rel = start + entries[name].begin
        return self.payload_offset + rel if pay.compression == "none" else self.payload_offset

    def tensor(self, name: str, *, verify: bool = True) -> np.ndarray:
        """Return tensor ``name`` as a numpy array (BF16 storage comes back as exact float32).

        Args:
            name: tensor name from ``manifest.tensors``.
            verify: check the tensor's SHA-256 (default) before returning it.

        Raises:
            UsageError: no such tensor. DigestError: bytes do not match. FormatError: structural defect.
        """
        raw = self._raw(name)
        info = self.manifest.tensors[name]
        if verify:
            self._check_digest(name, hashlib.sha256(raw).hexdigest())
        arr = from_storage(raw, info.dtype, info.shape)
        if info.role == "lrs" and arr.dtype.kind == "f" and not np.isfinite(arr).all():
            bad = int(np.flatnonzero(~np.isfinite(arr.reshape(-1)))[0])
            raise self._fail(FormatError("E_NONFINITE", f"learning rate {bad} of {name!r} is not finite",
                                         offset=self._tensor_offset(name) + (
                                             0 if self._flat_offsets() else bad * DTYPE_ITEMSIZE[info.dtype]),
                                         expected="finite", got=float(arr.reshape(-1)[bad]),
                                         field=f"tensors.{name}"))
        return arr

    def arrays(self, *, verify: bool = True) -> dict[str, np.ndarray]:
        """Every tensor, by name, in storage order."""
        return {n: self.tensor(n, verify=verify) for n in self.manifest.tensors}

    def iter_roles(self, role: str) -> Iterator[str]:
        """Names of the tensors with ``role``, in storage order."""
        return (n for n, t in self.manifest.tensors.items() if t.role == role)

    def _check_digest(self, name: str, got: str) -> None:
        info = self.manifest.tensors[name]
        if got != info.sha256:
            raise self._fail(DigestError("E_TENSOR_DIGEST", f"tensor {name!r} bytes do not match its sha256",
                                         offset=self._tensor_offset(name), expected=info.sha256, got=got,
                                         field=f"tensors.{name}.sha256"))

    def verify(self) -> None:
        """Check the structure and every digest; raise on the first failure.

        Each byte is hashed once, streamed in chunks; learning rates are also checked to be finite.

        Raises:
            DigestError: a tensor's bytes do not match their SHA-256.
            FormatError: any structural defect (including non-finite learning rates).
        """
        for name, info in self.manifest.tensors.items():
            if info.role == "lrs":
                self.tensor(name, verify=True)  # small; also checks finiteness
            else:
                self._check_digest(name, self._digest(name))

    def stored_manifest(self) -> Any:
        """The manifest exactly as stored: the decoded msgpack value, without defaults or normalisation.

        (``manifest`` is the typed view, which fills optional fields with their defaults.)
        """
        raw = self._src.read_at(HEADER_SIZE, self.header.manifest_length)
        return canonical_msgpack.decode(raw, base=HEADER_SIZE)[0]

    def layout(self) -> Layout:
        """Byte accounting of the file (see :class:`Layout`)."""
        pay = self.manifest.payload
        assert pay is not None
        return Layout(header_bytes=HEADER_SIZE, manifest_bytes=self.header.manifest_length,
                      payload_stored_bytes=self.header.payload_length, payload_decoded_bytes=pay.decoded_size,
                      st_header_bytes=len(self._st_header),
                      tensor_bytes={n: t.nbytes for n, t in self.manifest.tensors.items()},
                      compression=pay.compression)


def _check_zstd_frame_header(stored: bytes | memoryview, base: int) -> None:
    """Spec 6.1: exactly one Zstandard frame, not skippable, no dictionary, unused/reserved bits zero."""
    head = bytes(stored[:5])
    if len(head) >= 4 and (int.from_bytes(head[:4], "little") & 0xFFFFFFF0) == 0x184D2A50:
        raise FormatError("E_ZSTD", "a skippable zstd frame is not allowed in the payload", offset=base,
                          expected="one Zstandard frame (magic 28 b5 2f fd)", got=head[:4].hex())
    if head[:4] != ZSTD_MAGIC:
        raise FormatError("E_ZSTD", "payload is not a zstd frame", offset=base, expected=ZSTD_MAGIC.hex(),
                          got=head[:4].hex())
    if len(head) < 5:
        raise FormatError("E_ZSTD", "zstd frame is truncated", offset=base, expected="a frame header",
                          got="end of payload")
    fhd = head[4]
    if fhd & 0x18:  # bit 4 unused, bit 3 reserved: a decoder may ignore bit 4, SLDP does not (no free bits)
        raise FormatError("E_ZSTD", "zstd frame header descriptor has its unused or reserved bit set", offset=base,
                          expected="bits 3 and 4 zero", got=f"0x{fhd:02x}")
    if fhd & 0x03:
        raise FormatError("E_ZSTD", "zstd frame names a dictionary; SLDP payloads are compressed without one",
                          offset=base, expected="Dictionary_ID_flag 0", got=f"0x{fhd:02x}")


def _unzstd(stored: bytes | memoryview, decoded_size: int, base: int) -> bytes:
    import zstandard

    _check_zstd_frame_header(stored, base)
    try:
        params = zstandard.get_frame_parameters(stored)
    except zstandard.ZstdError as exc:
        raise FormatError("E_ZSTD", f"payload is not a zstd frame ({exc})", offset=base,
                          expected="zstd frame", got=bytes(stored[:4]).hex()) from None
    if params.content_size != zstandard.CONTENTSIZE_UNKNOWN and params.content_size != decoded_size:
        # python-zstandard trusts this field and ignores max_output_size: check it before decompressing
        raise FormatError("E_ZSTD_SIZE", "zstd frame declares a size other than payload.decoded_size",
                          offset=base, expected=decoded_size, got=params.content_size)
    dobj = zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW).decompressobj()
    out = bytearray()
    try:
        for i in range(0, len(stored), _ZSTD_FEED):
            out += dobj.decompress(stored[i:i + _ZSTD_FEED])
            if len(out) > decoded_size:
                raise FormatError("E_ZSTD_SIZE", "zstd frame decodes to more than payload.decoded_size",
                                  offset=base, expected=decoded_size, got=f"> {decoded_size}")
            if dobj.eof:
                if dobj.unused_data or i + _ZSTD_FEED < len(stored):
                    raise FormatError("E_ZSTD", "bytes follow the zstd frame inside the payload", offset=base,
                                      expected="one frame", got="trailing data")
                break
    except zstandard.ZstdError as exc:
        raise FormatError("E_ZSTD", f"corrupt zstd frame ({exc})", offset=base, expected="valid zstd frame",
                          got="decoder error") from None
    if not dobj.eof:
        raise FormatError("E_ZSTD", "zstd frame is truncated", offset=base,
                          expected="complete frame", got="end of payload")
    if len(out) != decoded_size:
        raise FormatError("E_ZSTD_SIZE", "zstd frame decodes to a size other than payload.decoded_size",
                          offset=base, expected=decoded_size, got=len(out))
    return bytes(out)


def open(path: str | os.PathLike[str]) -> SldpFile:
    """Open a ``.sldp`` file lazily: header and manifest are checked now, tensors when asked for.

    Raises:
        FormatError: ``E_IO`` if unreadable, or the first structural defect of header/manifest.
    """
    p = os.fspath(path)
    if Path(p).is_dir():
        raise FormatError("E_IO", "is a directory, not a file", path=p)
    return SldpFile(_Source(path=p))


def read(source: bytes | bytearray | memoryview | str | os.PathLike[str], *, verify: bool = True) -> SldpFile:
    """Read a ``.sldp`` file from bytes or a path and check all of it (every digest, unless ``verify=False``).

    Raises:
        FormatError / DigestError: the first defect found, with code and byte offset.
    """
    f = SldpFile(_Source(data=source)) if isinstance(source, (bytes, bytearray, memoryview)) else open(source)
    try:
        if verify:
            f.verify()
        else:
            f._payload()
    except BaseException:
        f.close()
        raise
    return f

