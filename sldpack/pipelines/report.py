"""The sharing report: where the bytes of a ``.sldp`` file go, and what it saves against a checkpoint.

Torch-free (numpy + the container). The torch side (checkpoint sizes from the architecture zoo, the
Table-4 files, recomputing a replay fingerprint) lives in :mod:`sldpack.pipelines.sharing`.

Byte accounting rule (``sum(line.stored for line in report.lines) == file size``, always, checked):

* ``header``: the fixed 64-byte header.
* ``manifest``: the canonical msgpack manifest.
* Uncompressed payload: each role line (``images``, ``labels``, ``lrs``, ``bn_stats``, and
  ``theta0_check`` / ``extra`` when present) stores exactly the bytes of its tensors; the payload's
  tensor index (the safetensors JSON header with its 8-byte length and padding) is its own line,
  ``index``. ``overhead`` in summaries = header + index.
* zstd payload: tensor bytes are not separable after compression, so role lines show their *decoded*
  bytes and store 0, and one ``compressed payload`` line stores the whole frame (decoded column:
  tensors + index). ``overhead`` = header. Per-role shares of a compressed file are therefore not
  claimed; :func:`precision_table` shows what each storage choice costs instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from sldpack.errors import SldpError, UsageError
from sldpack.format.constants import COMPRESSIONS, DTYPE_FOR_NUMPY_NAME, ROLES, ZSTD_LEVEL_DEFAULT
from sldpack.format.container import SldpFile, Tensor, encode
from sldpack.format.container import open as open_sldp
from sldpack.format.container import read as read_sldp
from sldpack.format.manifest import Manifest, Provenance, ReplayFingerprint

__all__ = [
    "IMAGE_DTYPES",
    "ByteLine",
    "ByteReport",
    "PrecisionRow",
    "RequantizeResult",
    "byte_report",
    "format_bytes",
    "precision_table",
    "render_precision",
    "render_report",
    "requantize",
    "requantize_bytes",
]

IMAGE_DTYPES: dict[str, str] = {
    **{name: DTYPE_FOR_NUMPY_NAME[name] for name in ("float32", "float16", "bfloat16")},
    **{DTYPE_FOR_NUMPY_NAME[name]: DTYPE_FOR_NUMPY_NAME[name] for name in ("float32", "float16", "bfloat16")}}
"""Accepted spellings of an image storage dtype -> SLDP dtype."""

_F16_MAX = 65504.0


def format_bytes(n: float) -> str:
    """Binary units, the way the seed paper's tables use them (1 KB = 1024 B, 1 MB = 1024 KB)."""
    if n < 1024:
        return f"{int(n)} B"
    if n < 1024**2:
        return f"{n / 1024:.2f} KiB"
    if n < 1024**3:
        return f"{n / 1024**2:.2f} MiB"
    return f"{n / 1024**3:.2f} GiB"


@dataclass(frozen=True)
class ByteLine:
    """One line of the byte accounting.

    Attributes:
        part: ``header``, ``manifest``, ``index``, a role name, or ``compressed payload``.
        stored: bytes of the file attributed to this line (lines sum to the file size).
        decoded: bytes before compression (equal to ``stored`` when uncompressed).
        tensors: number of tensors on this line.
        detail: e.g. ``F32 [2,1,28,28]``.
    """

    part: str
    stored: int
    decoded: int
    tensors: int = 0
    detail: str = ""


@dataclass(frozen=True)
class ByteReport:
    """Byte accounting of one file, plus the checkpoint it stands in for (when known)."""

    path: str | None
    file_size: int
    compression: str
    lines: tuple[ByteLine, ...]
    manifest: Manifest
    checkpoint_bytes: int | None = None
    checkpoint_source: str | None = None  # "zoo: resnet18@1 ..." or "file: model.pt"
    checkpoint_note: str | None = None  # why there is no checkpoint size
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float | None:
        """``.sldp`` bytes / checkpoint bytes (the seed paper's compression rate)."""
        if not self.checkpoint_bytes:
            return None
        return self.file_size / self.checkpoint_bytes

    def by_part(self) -> dict[str, ByteLine]:
        """Lines by part name."""
        return {ln.part: ln for ln in self.lines}

    @property
    def overhead(self) -> int:
        """Stored bytes that are neither tensors nor manifest: fixed header (+ tensor index if uncompressed)."""
        parts = self.by_part()
        return parts["header"].stored + (parts["index"].stored if "index" in parts else 0)

    def with_checkpoint(self, nbytes: int | None, source: str | None, note: str | None = None) -> ByteReport:
        """The same report with a checkpoint size attached."""
        return replace(self, checkpoint_bytes=nbytes, checkpoint_source=source, checkpoint_note=note)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the ``--json`` output)."""
        arch = self.manifest.arch
        return {
            "file": self.path,
            "file_size": self.file_size,
            "compression": self.compression,
            "lines": [{"part": ln.part, "stored": ln.stored, "decoded": ln.decoded, "tensors": ln.tensors,
                       "detail": ln.detail} for ln in self.lines],
            "stored_total": sum(ln.stored for ln in self.lines),
            "roles": {ln.part: ln.decoded for ln in self.lines if ln.part in ROLES},
            "manifest_bytes": self.by_part()["manifest"].stored,
            "overhead_bytes": self.overhead,
            "rule": ("lines' stored bytes sum to the file size; with zstd, role lines give decoded bytes and "
                     "the 'compressed payload' line holds the stored frame"),
            "arch": arch.to_obj(),
            "checkpoint": {"bytes": self.checkpoint_bytes, "source": self.checkpoint_source,
                           "note": self.checkpoint_note},
            "rate": self.rate,
            **({"extra": dict(self.extra)} if self.extra else {}),
        }


def _detail(f: SldpFile, names: list[str]) -> str:
    infos = [f.manifest.tensors[n] for n in names]
    if len(infos) == 1:
        i = infos[0]
        return f"{i.dtype} [{','.join(str(d) for d in i.shape)}]"
    dtypes = sorted({i.dtype for i in infos})
    return f"{'/'.join(dtypes)}, {len(infos)} tensors"


def _report_from(f: SldpFile, path: str | None) -> ByteReport:
    lay = f.layout()
    tensors = f.manifest.tensors
    index_bytes = lay.payload_decoded_bytes - sum(lay.tensor_bytes.values())
    if index_bytes != lay.st_header_bytes:
        # the container guarantees a canonical payload; anything else is a bug worth stopping for
        raise SldpError(f"payload of {lay.payload_decoded_bytes} bytes is not index ({lay.st_header_bytes}) + "
                        f"tensors ({sum(lay.tensor_bytes.values())})")
    zstd = lay.compression != "none"
    lines = [ByteLine("header", lay.header_bytes, lay.header_bytes),
             ByteLine("manifest", lay.manifest_bytes, lay.manifest_bytes)]
    for role in ROLES:
        names = [n for n, t in tensors.items() if t.role == role]
        if not names and role in ("theta0_check", "extra"):
            continue
        nbytes = sum(lay.tensor_bytes[n] for n in names)
        lines.append(ByteLine(role, 0 if zstd else nbytes, nbytes, len(names), _detail(f, names) if names else ""))
    if zstd:
        lines.append(ByteLine("compressed payload", lay.payload_stored_bytes, lay.payload_decoded_bytes,
                              len(tensors), f"{lay.compression}, index {lay.st_header_bytes} B inside"))
    else:
        lines.append(ByteLine("index", lay.st_header_bytes, lay.st_header_bytes, 0, "safetensors header"))
    total = sum(ln.stored for ln in lines)
    if total != f.file_size:
        raise SldpError(f"byte accounting does not add up: {total} != file size {f.file_size}")
    return ByteReport(path=path, file_size=f.file_size, compression=lay.compression, lines=tuple(lines),
                      manifest=f.manifest)


def byte_report(source: str | os.PathLike[str] | bytes) -> ByteReport:
    """Byte accounting of a ``.sldp`` file (header, manifest, tensors by role, index / compressed payload).

    From a path, only the header and manifest are read (tensor sizes come from the digest-protected
    tensor table, the index size from its canonical encoding); ``sldp verify`` checks the rest.

    Args:
        source: a path or the file's bytes.

    Returns:
        A :class:`ByteReport` whose lines' ``stored`` bytes sum to the file size.

    Raises:
        FormatError: the file is not a valid ``.sldp``.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        f = read_sldp(bytes(source), verify=False)
        try:
            return _report_from(f, None)
        finally:
            f.close()
    with open_sldp(source) as f:
        return _report_from(f, os.fspath(source))


def render_report(rep: ByteReport) -> str:
    """The human table of ``sldp report FILE``."""
    arch = rep.manifest.arch
    out = [f"{rep.path or '<bytes>'}: {rep.file_size:,} bytes ({format_bytes(rep.file_size)}), "
           f"payload {rep.compression}",
           f"architecture {arch.id} (in_channels {arch.in_channels}, classes {arch.num_classes}, "
           f"image {arch.image_size[0]}x{arch.image_size[1]}, batchnorm {'yes' if arch.batchnorm else 'no'})",
           ""]
    rows = [("part", "tensors", "stored B", "decoded B", "share", "detail")]
    for ln in rep.lines:
        decoded_only = rep.compression != "none" and ln.part in ROLES
        share = "-" if decoded_only or not rep.file_size else f"{100.0 * ln.stored / rep.file_size:.2f}%"
        stored = "-" if decoded_only else f"{ln.stored:,}"
        rows.append((ln.part, str(ln.tensors) if ln.tensors else "", stored, f"{ln.decoded:,}", share, ln.detail))
    rows.append(("total", "", f"{sum(ln.stored for ln in rep.lines):,}", "", "100.00%", "= file size"))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for k, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [r[i].rjust(widths[i]) for i in range(1, 5)] + [r[5]]
        out.append("  ".join(cells).rstrip())
        if k == 0 or k == len(rows) - 2:
            out.append("-" * (sum(widths[:5]) + 8 + widths[5]))
    if rep.compression != "none":
        out.append("(zstd: role lines show decoded bytes; the stored bytes are in 'compressed payload')")
    out.append("")
    if rep.checkpoint_bytes:
        rate = rep.rate
        assert rate is not None
        out.append(f"full checkpoint: {rep.checkpoint_bytes:,} bytes ({format_bytes(rep.checkpoint_bytes)}) "
                   f"[{rep.checkpoint_source}]")
        out.append(f"compression rate (sldp / checkpoint): {rate:.5f}  ({_relative(rate)})")
    else:
        out.append(f"full checkpoint: unknown ({rep.checkpoint_note or 'not computed'})")
    return "\n".join(out)


def _relative(rate: float) -> str:
    """``"12x smaller"``, ``"1.3x larger"``: never "0x smaller"."""
    if rate <= 0:
        return "empty"
    if 0.995 <= rate <= 1.005:  # "1x smaller" of two equal sizes says nothing
        return "the same size"
    if rate > 1:
        return f"{rate:,.3g}x larger"
    inv = 1 / rate
    return f"{inv:,.0f}x smaller" if inv >= 10 else f"{inv:.2g}x smaller"


# --- storage precision ----------------------------------------------------------------------------

@dataclass(frozen=True)
class PrecisionRow:
    """Size of the same content with images stored at ``images_dtype`` and payload ``compression``."""

    images_dtype: str
    compression: str
    level: int | None
    file_size: int
    images_bytes: int
    max_abs_change: float  # largest |stored - original| over image values


def _images_as(arrays: Mapping[str, np.ndarray], manifest: Manifest, dtype: str) -> dict[str, Tensor]:
    out = {}
    for name, info in manifest.tensors.items():
        arr = arrays[name]
        if info.role == "images":
            if dtype == "F16" and np.isfinite(arr).all() and float(np.max(np.abs(arr), initial=0.0)) > _F16_MAX:
                raise UsageError(f"tensor {name!r} has values beyond the float16 range (|x| > {_F16_MAX:g})")
            out[name] = Tensor(info.role, np.asarray(arr, dtype=np.float32), dtype)
        else:
            out[name] = Tensor(info.role, arr, info.dtype)
    return out


def _stripped(manifest: Manifest) -> Manifest:
    return replace(manifest, tensors={}, payload=None)


def precision_table(source: str | os.PathLike[str] | bytes, *, dtypes: tuple[str, ...] = ("F32", "F16", "BF16"),
                    compressions: tuple[str, ...] = ("none", "zstd"), level: int = ZSTD_LEVEL_DEFAULT
                    ) -> list[PrecisionRow]:
    """Re-encode a file in memory with images at each storage dtype and payload compression.

    Nothing is written. The manifest (replay fingerprint included) is kept as is, so the sizes are
    those of :func:`requantize` with a recomputed fingerprint (it has the same size).

    Returns:
        One row per (dtype, compression), in the order given.
    """
    f = read_sldp(source if isinstance(source, bytes) else os.fspath(source))
    try:
        manifest, arrays = f.manifest, {k: np.array(v) for k, v in f.arrays().items()}
    finally:
        f.close()
    base = _stripped(manifest)
    rows = []
    for dt in dtypes:
        tensors = _images_as(arrays, manifest, dt)
        data = encode(base, tensors, compression="none")
        g = read_sldp(data)
        change = 0.0
        img_bytes = 0
        for name in g.iter_roles("images"):
            change = max(change, float(np.max(np.abs(g.tensor(name).astype(np.float64)
                                                     - arrays[name].astype(np.float64)), initial=0.0)))
            img_bytes += g.manifest.tensors[name].nbytes
        g.close()
        for comp in compressions:
            size = len(data) if comp == "none" else len(encode(base, tensors, compression=comp, level=level))
            rows.append(PrecisionRow(dt, comp, None if comp == "none" else level, size, img_bytes, change))
    return rows


def render_precision(rows: list[PrecisionRow], reference: int | None = None) -> str:
    """Table of :func:`precision_table` rows (``reference``: checkpoint bytes for the rate column)."""
    head = ["images", "payload", "file B", "size", "images B", "max |change|"] + (["rate"] if reference else [])
    table = [head]
    for r in rows:
        comp = r.compression if r.level is None else f"{r.compression}-{r.level}"
        row = [r.images_dtype, comp, f"{r.file_size:,}", format_bytes(r.file_size), f"{r.images_bytes:,}",
               f"{r.max_abs_change:.3g}"]
        if reference:
            row.append(f"{r.file_size / reference:.5f}")
        table.append(row)
    widths = [max(len(t[i]) for t in table) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(t, widths,
                                                                                                  strict=True)))
                     for t in table)


@dataclass(frozen=True)
class RequantizeResult:
    """What :func:`requantize` did."""

    path_out: str
    size_in: int
    size_out: int
    images_dtype_in: tuple[str, ...]
    images_dtype_out: str
    compression: str
    max_abs_change: float
    fingerprint: str  # "kept (images unchanged)", "recomputed", "dropped: <why>", "none in input"


FingerprintFn = Callable[[Manifest, Mapping[str, np.ndarray]], ReplayFingerprint]


def _default_fingerprint_fn() -> FingerprintFn | str:
    """The torch re-fingerprinting function, or the reason it is unavailable."""
    try:
        from sldpack.nn.fingerprint import refingerprint
    except ImportError as exc:
        return f"torch replay unavailable ({exc.name or exc})"
    return refingerprint


def requantize_bytes(source: str | os.PathLike[str] | bytes, images_dtype: str, compression: str = "none",
                     level: int = ZSTD_LEVEL_DEFAULT, *, fingerprint_fn: FingerprintFn | bool | None = True
                     ) -> tuple[bytes, RequantizeResult]:
    """:func:`requantize` in memory: the new file's bytes and what was done (``path_out`` is empty)."""
    if images_dtype not in IMAGE_DTYPES:
        raise UsageError(f"images dtype must be float32, float16 or bfloat16, got {images_dtype!r}")
    if compression not in COMPRESSIONS:
        raise UsageError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
    dt = IMAGE_DTYPES[images_dtype]
    f = read_sldp(source if isinstance(source, bytes) else os.fspath(source))
    try:
        manifest, size_in = f.manifest, f.file_size
        arrays = {k: np.array(v) for k, v in f.arrays().items()}
    finally:
        f.close()
    tensors = _images_as(arrays, manifest, dt)
    # what replay will see: the stored values, decoded exactly as a reader decodes them
    probe = read_sldp(encode(_stripped(manifest), tensors))
    stored_arrays = {k: np.array(v) for k, v in probe.arrays().items()}
    probe.close()
    in_dtypes = tuple(sorted({t.dtype for t in manifest.tensors.values() if t.role == "images"}))
    change = 0.0
    for n, info in manifest.tensors.items():
        if info.role == "images":
            diff = np.abs(stored_arrays[n].astype(np.float64) - arrays[n].astype(np.float64))
            change = max(change, float(np.max(diff, initial=0.0)))
    changed = any(not np.array_equal(stored_arrays[n], arrays[n]) for n in arrays)

    replay_fp: ReplayFingerprint | None = manifest.replay
    if manifest.replay is None:
        status = "none in input"
    elif not changed:
        status = "kept (images unchanged)"
    else:
        fn: FingerprintFn | str
        if fingerprint_fn is True:
            fn = _default_fingerprint_fn()
        elif callable(fingerprint_fn):
            fn = fingerprint_fn
        else:
            fn = "not requested"
        if isinstance(fn, str):
            replay_fp, status = None, f"dropped: {fn}"
        else:
            replay_fp, status = fn(manifest, stored_arrays), "recomputed"
    extra = dict(manifest.provenance.extra)
    extra["requantized"] = {"images_dtype_from": "/".join(in_dtypes), "images_dtype_to": dt,
                            "max_abs_change": change, "fingerprint": status}
    prov = Provenance(tool=manifest.provenance.tool, created=manifest.provenance.created,
                      dataset_sha256=manifest.provenance.dataset_sha256, extra=extra)
    new = replace(_stripped(manifest), replay=replay_fp, provenance=prov)
    data = encode(new, tensors, compression=compression, level=level)
    return data, RequantizeResult(path_out="", size_in=size_in, size_out=len(data), images_dtype_in=in_dtypes,
                                  images_dtype_out=dt, compression=compression, max_abs_change=change,
                                  fingerprint=status)


def requantize(path_in: str | os.PathLike[str], path_out: str | os.PathLike[str], images_dtype: str,
               compression: str = "none", level: int = ZSTD_LEVEL_DEFAULT, *,
               fingerprint_fn: FingerprintFn | bool | None = True) -> RequantizeResult:
    """Rewrite a file with its images stored in another dtype and/or another payload compression.

    Every other tensor keeps its stored dtype and bytes. When the image values change, the replay
    fingerprint no longer describes the file: it is recomputed from the *stored* (rounded) values by
    torch replay (:func:`sldpack.nn.replay.refingerprint`) when available, otherwise dropped, and
    ``provenance.extra["requantized"]`` records which (plus the source dtype and the largest change).
    theta0 digests do not depend on the images and are kept. ``sldp pack --images-dtype`` is the
    same operation at pack time.

    Args:
        path_in: source ``.sldp``.
        path_out: destination (written atomically; may equal ``path_in``).
        images_dtype: ``float32``/``float16``/``bfloat16`` (or ``F32``/``F16``/``BF16``).
        compression: ``none`` or ``zstd``.
        level: zstd level.
        fingerprint_fn: ``True``: torch re-fingerprinting if importable; ``False``/``None``: drop the
            fingerprint; or a callable ``(manifest, arrays) -> ReplayFingerprint``.

    Returns:
        A :class:`RequantizeResult`.

    Raises:
        UsageError: unknown dtype/compression, or values beyond the float16 range.
        FormatError: the input is not a valid ``.sldp``.
    """
    from sldpack.atomic import atomic_write_bytes

    data, res = requantize_bytes(path_in, images_dtype, compression, level, fingerprint_fn=fingerprint_fn)
    atomic_write_bytes(path_out, data)
    return replace(res, path_out=os.fspath(path_out))
