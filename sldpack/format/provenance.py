"""Provenance that travels with a ``.sldp``: the training data's digest, the run, and the privacy audit.

* :func:`training_data_sha256` is the digest of spec section 5.3.1 (images, labels, masks as read, in a
  canonical order and framing), so that a receiver holding the same data can check that it is what the
  file was distilled from, without the data ever being in the file.
* :func:`run_provenance` gives the optional ``provenance`` fields the distiller fills (data digest,
  sldpack version, full configuration, command line).
* :func:`record_audit` writes an audit's verdict into a file, bound to the audited images' digest and to
  the SHA-256 of the audit's JSON report: a manifest-only re-pack (payload bytes unchanged), atomic.

Torch-free (numpy and the format core only).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from sldpack.errors import DataError, UsageError
from sldpack.format.audit_schema import MembershipRecord
from sldpack.format.manifest import AuditRecord

__all__ = [
    "DATA_DIGEST_TAG",
    "AuditRecording",
    "audit_report_bytes",
    "canonical_value",
    "file_sha256",
    "images_sha256",
    "record_audit",
    "run_provenance",
    "source_data_sha256",
    "training_data_sha256",
]

DATA_DIGEST_TAG = b"SLDP-TRAINING-DATA-1\n"
_ROWS_PER_UPDATE = 256  # images hashed per update: bounded memory for memory-mapped sets


def _dtype_token(a: np.ndarray[Any, Any], name: str) -> str:
    kind = a.dtype.kind
    if kind not in "uifb":
        raise DataError(f"training data {name}: dtype {a.dtype} cannot be digested (numbers or booleans only)")
    return f"{kind}{a.dtype.itemsize}"


def _update(h: Any, name: str, arr: Any) -> None:
    a = np.asarray(arr) if not isinstance(arr, np.ndarray) else arr
    token = _dtype_token(a, name)
    shape = ",".join(str(int(d)) for d in a.shape)
    h.update(f"{name}\n{token}\n{shape}\n".encode("ascii"))
    le = a.dtype.newbyteorder("<") if a.dtype.itemsize > 1 else a.dtype
    if a.ndim == 0:
        h.update(np.ascontiguousarray(a, dtype=le).tobytes())
        return
    for i in range(0, int(a.shape[0]), _ROWS_PER_UPDATE):
        # row-major, little-endian; a memmap is read one block at a time
        h.update(np.ascontiguousarray(a[i:i + _ROWS_PER_UPDATE], dtype=le).tobytes())


def _array_like(a: Any) -> Any:
    """``a`` itself when it has shape/dtype/ndim (an ndarray, a memmap, an on-disk store's lazy view: read
    block by block later, never loaded whole), else ``np.asarray(a)``."""
    return a if hasattr(a, "shape") and hasattr(a, "dtype") and hasattr(a, "ndim") else np.asarray(a)


def training_data_sha256(images: Any, labels: Any, masks: Any | None = None) -> str:
    """SHA-256 of the training data as read (spec section 5.3.1).

    The hashed stream is the tag ``SLDP-TRAINING-DATA-1\\n``, then for ``images``, ``labels`` and (when
    present) ``masks``, in that order: ``NAME\\n``, ``DTYPE\\n`` (numpy kind + item size: ``u1``, ``i8``,
    ``f4``, ``b1``), ``SHAPE\\n`` (decimal dimensions joined by ``,``), then the values row-major,
    little-endian. Labels are int64 ``[N]`` (an ``[N, 1]`` column is flattened); items keep the order
    of the data set.

    Raises:
        DataError: the arrays disagree on N, or hold non-numeric values.
    """
    imgs = _array_like(images)
    lab = np.asarray(labels)
    if lab.ndim == 2 and lab.shape[1] == 1:
        lab = lab[:, 0]
    if lab.ndim != 1 or imgs.ndim < 1 or lab.shape[0] != imgs.shape[0]:
        raise DataError(f"training data: labels {lab.shape} do not match images {imgs.shape}")
    if not np.issubdtype(lab.dtype, np.integer):
        raise DataError(f"training data: labels must be integers, got {lab.dtype}")
    h = hashlib.sha256(DATA_DIGEST_TAG)
    _update(h, "images", imgs)
    _update(h, "labels", lab.astype(np.int64))
    if masks is not None:
        m = _array_like(masks)
        if m.shape[:1] != imgs.shape[:1]:
            raise DataError(f"training data: masks {m.shape} do not match images {imgs.shape}")
        _update(h, "masks", m)
    return h.hexdigest()


def source_data_sha256(source: Any) -> str | None:
    """:func:`training_data_sha256` of a distillation source, or ``None`` when it cannot be known.

    Used, in order: a ``training_data_sha256`` attribute the source provides itself; the
    ``images``/``labels``/``masks`` arrays of an :class:`~sldpack.pipelines.sources.ArraySource`-like
    source, or those of its ``data`` (an :class:`~sldpack.medical.loaders.ImageSet`). The attribute may
    be a method (computed when asked: a patch source hashes its training images, labels and masks then).
    Sources that know neither give ``None`` and the field is left out rather than filled with a digest of
    something else.
    """
    own = getattr(source, "training_data_sha256", None)
    if callable(own):
        own = own()
    if isinstance(own, str):
        return own
    for holder in (source, getattr(source, "data", None)):
        if holder is None:
            continue
        images, labels = getattr(holder, "images", None), getattr(holder, "labels", None)
        if images is not None and labels is not None:
            return training_data_sha256(images, labels, getattr(holder, "masks", None))
    return None


def canonical_value(obj: Any) -> Any:
    """``obj`` as canonical-msgpack-ready values: maps with str keys, lists, str, int, finite float,
    bool, None. Tuples become lists, paths and other objects their ``str``, non-finite floats the
    strings ``"nan"``/``"inf"``/``"-inf"`` (the manifest forbids NaN and infinities)."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else str(v)
    if isinstance(obj, Mapping):
        return {str(k): canonical_value(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [canonical_value(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return canonical_value(obj.tolist())
    return str(obj)


def run_provenance(source: Any, config: Mapping[str, Any], *,
                   argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The optional ``provenance`` fields of a distillation run, as keyword arguments of
    :class:`~sldpack.format.manifest.Provenance`.

    Args:
        source: the real-data source (see :func:`source_data_sha256`).
        config: the complete distill configuration (``DistillConfig.to_obj()``).
        argv: the command line (default: ``sys.argv``, the program name reduced to its base name so no
            local install path is recorded).
    """
    from sldpack import __version__

    args = list(sys.argv if argv is None else argv)
    if args:
        args[0] = os.path.basename(args[0])
    return {"training_data_sha256": source_data_sha256(source), "sldpack_version": __version__,
            "distill_config": canonical_value(dict(config)), "command_line": tuple(str(a) for a in args)}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks (a large file is never loaded whole).

    The one file digest of signatures, acceptance records and rendered model cards.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- the audit record ---------------------------------------------------------------------------------

def images_sha256(path: str | os.PathLike[str]) -> str:
    """The manifest's SHA-256 of the file's ``images`` tensor (no payload read).

    Raises:
        FormatError: not a valid file. DataError: no tensor named ``images``.
    """
    from sldpack.format.container import open as open_sldp

    with open_sldp(path) as f:
        t = f.manifest.tensors.get("images")
    if t is None:
        raise DataError(f"{path}: the file has no 'images' tensor to bind an audit to")
    return t.sha256


def audit_report_bytes(report: Mapping[str, Any], images_digest: str) -> bytes:
    """The audit's JSON report as written by ``sldp audit --record``: the report plus ``images_sha256``
    (so the report names the images it is about), sorted keys, 2-space indent, UTF-8, final newline."""
    doc = dict(report)
    doc["images_sha256"] = images_digest
    return (json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8")


@dataclass(frozen=True)
class AuditRecording:
    """What :func:`record_audit` did.

    Attributes:
        record: the :class:`~sldpack.format.manifest.AuditRecord` now in ``provenance.audit``.
        report_path: where the JSON report was written (its SHA-256 is ``record.report_sha256``).
        manifest_sha256_before, manifest_sha256_after: the header's manifest digest before and after.
    """

    record: AuditRecord
    report_path: Path
    manifest_sha256_before: str
    manifest_sha256_after: str


def record_audit(path: str | os.PathLike[str], report: Mapping[str, Any], *, images_digest: str,
                 report_path: str | os.PathLike[str] | None = None,
                 membership: MembershipRecord | None = None) -> AuditRecording:
    """Write the audit's verdict into ``path`` (``provenance.audit``) and its JSON report beside it.

    A manifest-only re-pack: header and manifest are rewritten, the stored payload is copied byte for
    byte (compression kept); the result is read back and fully verified before it atomically replaces
    ``path``. The manifest digest changes, so a signature made before must be made again.

    Args:
        path: the audited ``.sldp``.
        report: the audit's ``to_dict()``; must hold ``verdict`` (``PASS``/``FLAG``).
        images_digest: the ``images`` tensor's SHA-256 when the audit read the file (from
            :func:`images_sha256` before auditing): if the file changed meanwhile, nothing is written.
        report_path: where the JSON report goes (default: ``path`` with suffix ``.audit.json``).
        membership: the membership-inference part (spec 5.3.2 ``membership``), when it ran; its verdict
            must agree with its attacks, and a FLAG there needs a FLAG verdict.

    Raises:
        UsageError: the file's images changed since the audit, the report has no valid verdict, or the
            membership record contradicts itself or the verdict.
        FormatError: the file is not valid.
    """
    from sldpack import __version__
    from sldpack.atomic import atomic_write_all
    from sldpack.format.container import assemble
    from sldpack.format.container import open as open_sldp
    from sldpack.format.container import read as read_sldp

    verdict = report.get("verdict")
    if verdict not in ("PASS", "FLAG"):
        raise UsageError(f"audit report verdict must be PASS or FLAG, got {verdict!r}")
    if membership is not None:
        if membership.rule_verdict() != membership.verdict:
            raise UsageError(f"membership verdict {membership.verdict} contradicts its attacks "
                             f"({membership.rule_verdict()} by flag_auc {membership.flag_auc:g})")
        if membership.verdict == "FLAG" and verdict != "FLAG":
            raise UsageError("the membership part flags: the audit's verdict must be FLAG")
    src = Path(path)
    with open_sldp(src) as f:
        f.verify()  # never re-pack (and bless) a file whose tensors do not match their digests
        manifest, header = f.manifest, f.header
        t = manifest.tensors.get("images")
        if t is None:
            raise DataError(f"{src}: the file has no 'images' tensor to bind an audit to")
        if t.sha256 != images_digest:
            raise UsageError(f"{src}: the images changed while the audit ran (sha256 {t.sha256[:16]}.., audited "
                             f"{images_digest[:16]}..); run the audit again")
        off = f.payload_offset
    with open(src, "rb") as fh:
        fh.seek(off)
        payload = fh.read(header.payload_length)
    body = audit_report_bytes(report, images_digest)
    rep_path = Path(report_path) if report_path is not None else src.with_suffix(".audit.json")
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    rec = AuditRecord(verdict=str(verdict), report_sha256=hashlib.sha256(body).hexdigest(),
                      images_sha256=images_digest, tool=f"sldpack {__version__} audit", created=created,
                      membership=membership)
    new = replace(manifest, provenance=replace(manifest.provenance, audit=rec))
    data = assemble(new, payload, version=(header.version_major, header.version_minor))
    check = read_sldp(data, verify=True)  # the new bytes are a valid file before anything is replaced
    after = check.header.manifest_sha256
    check.close()
    # no report without its record: both are complete on disk before either replaces a file
    atomic_write_all([(src, data), (rep_path, body)])
    return AuditRecording(rec, rep_path, header.manifest_sha256, after)
