"""Packing: the documented ``sldp pack`` input (``manifest.json`` + tensors) written, read and packed.

A run directory's ``final/`` holds this input, and so can the output of any other distiller: :func:`pack`
checks it, replays it for a fresh fingerprint (a recorded one is never copied unchecked) and writes the
``.sldp``. Tensor roles follow the names (spec section 6.2, :func:`~sldpack.format.constants.role_for_name`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

import sldpack
from sldpack.atomic import atomic_write_bytes
from sldpack.errors import DataError, UsageError
from sldpack.format.constants import role_for_name
from sldpack.format.manifest import Manifest
from sldpack.nn.config import DEFAULT_PROBE_COUNT, DEFAULT_REFERENCE_THREADS
from sldpack.nn.fingerprint import fingerprint_arrays
from sldpack.nn.network import build_module
from sldpack.nn.replay import check_replayable
from sldpack.nn.runlog import utc_now

__all__ = ["PackResult", "load_pack_input", "pack", "write_pack_input"]


def write_pack_input(directory: str | Path, manifest: Manifest, tensors: Mapping[str, sldpack.Tensor]) -> None:
    """Write the documented ``sldp pack`` input: ``manifest.json`` + ``tensors.npz`` (+ roles in the JSON).

    ``manifest.json`` is ``Manifest.to_obj()`` without ``tensors``/``payload`` plus ``"roles": {name: role}``.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    obj = manifest.to_obj()
    obj.pop("tensors", None)
    obj.pop("payload", None)
    obj["roles"] = {n: t.role for n, t in tensors.items()}
    buf = io.BytesIO()
    arrays: dict[str, Any] = {n: np.asarray(t.array) for n, t in tensors.items()}
    np.savez(buf, **arrays)
    atomic_write_bytes(d / "tensors.npz", buf.getvalue())
    atomic_write_bytes(d / "manifest.json", (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


@dataclass(frozen=True)
class PackResult:
    """What :func:`pack` wrote: the stored manifest, the file size and remarks (e.g. what was computed)."""

    manifest: Manifest
    file_size: int
    notes: tuple[str, ...]


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from sldpack.errors import FormatError
    from sldpack.format.safetensors_codec import read_checkpoint

    try:
        return read_checkpoint(path)[0]
    except FormatError as exc:
        raise DataError(f"{path}: {exc}") from exc


def load_pack_input(source: str | Path, tensors: str | Path | None = None
                    ) -> tuple[Manifest, dict[str, sldpack.Tensor]]:
    """Read a pack input: run directory, folder with manifest.json + tensors, or a manifest.json.

    Returns:
        The manifest (tensor table empty; the writer fills it) and the tensors with their roles.

    Raises:
        DataError: files missing or unreadable. UsageError: no tensor file beside the manifest and none named
        (``tensors``). FormatError: the manifest JSON breaks the schema.
    """
    src = Path(source)
    if src.is_dir() and (src / "final" / "manifest.json").is_file():
        src = src / "final"
    mpath = src / "manifest.json" if src.is_dir() else src
    if not mpath.is_file():
        raise DataError(f"{source}: no manifest.json (nor final/manifest.json of a run directory)")
    if tensors is not None:
        tpath = Path(tensors)
    else:
        cands = [mpath.parent / "tensors.npz", mpath.parent / "tensors.safetensors"]
        found = [c for c in cands if c.is_file()]
        if not found:
            raise UsageError(f"no tensors.npz or tensors.safetensors beside {mpath}; name the tensor file with "
                             "{tensors}", field="tensors")
        tpath = found[0]
    try:
        obj = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {mpath}: {exc}") from exc
    if not isinstance(obj, dict):
        raise DataError(f"{mpath}: the manifest must be a JSON object")
    roles = obj.pop("roles", {}) or {}
    obj.pop("tensors", None)
    obj.pop("payload", None)
    obj.setdefault("provenance", {"tool": f"sldpack {sldpack.__version__} pack", "created": utc_now()})
    obj["tensors"] = {}
    obj["payload"] = {"compression": "none", "stored_size": 0, "decoded_size": 0}
    manifest = Manifest.from_obj(obj)
    if tpath.suffix == ".npz":
        try:
            with np.load(tpath, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read {tpath}: {exc}") from exc
    elif tpath.suffix == ".safetensors":
        arrays = _read_safetensors(tpath)
    else:
        raise DataError(f"{tpath}: tensors must be .npz or .safetensors")
    out = {n: sldpack.Tensor(str(roles.get(n, role_for_name(n))), np.asarray(a)) for n, a in arrays.items()}
    return manifest, out


def _check_pack_values(manifest: Manifest, arrays: Mapping[str, np.ndarray]) -> None:
    """Refuse what would pack into a file that cannot be replayed: an unknown architecture, non-finite
    tensors (step sizes included). A negative or zero step size is replayed as stored (spec annex replay,
    section 2), so it is packed."""
    from sldpack.nn.zoo import resolve_options

    resolve_options(manifest.arch.id, manifest.arch.options)  # UsageError naming the known ids
    for name, arr in arrays.items():
        a = np.asarray(arr)
        if a.dtype.kind == "f":
            bad = ~np.isfinite(a)
            if bool(bad.any()):
                first = tuple(int(i) for i in np.argwhere(bad)[0])
                raise DataError(f"tensor {name!r}: {int(bad.sum())} value(s) are NaN or infinite, the first at "
                                f"index {first}")


def pack(source: str | Path, out: str | Path, *, tensors: str | Path | None = None, compression: str = "none",
         fingerprint: str = "auto") -> PackResult:
    """Build a ``.sldp`` from a pack input (see :func:`load_pack_input`).

    Args:
        source: run directory, folder with manifest.json + tensors, or manifest.json.
        out: the ``.sldp`` to write (atomically).
        tensors: tensor file when ``source`` is a manifest.json elsewhere.
        compression: ``"none"`` or ``"zstd"``.
        fingerprint: ``"auto"``/``"always"``: replay and store a fresh fingerprint (and theta0 digests); a
            recorded one is never copied unchecked (one that disagrees is reported in the notes).
            ``"never"``: write the file without a fingerprint (a recorded one is dropped, and the notes say so).

    Returns:
        The stored manifest, file size and notes.

    Raises:
        UsageError / DataError / FormatError: bad input.
    """
    if fingerprint not in ("auto", "always", "never"):
        raise UsageError(f"{{fingerprint}} must be auto, always or never, got {fingerprint!r}", field="fingerprint")
    manifest, tens = load_pack_input(source, tensors)
    arrays = {n: np.asarray(t.array) for n, t in tens.items()}
    check_replayable(manifest, {n: tuple(a.shape) for n, a in arrays.items()})
    _check_pack_values(manifest, arrays)
    notes: list[str] = []
    # the tensors may have been edited since the fingerprint was recorded: a stored fingerprint is always
    # one this replay produced, or none at all
    need_fp = fingerprint != "never"
    if not need_fp and manifest.replay is not None:
        manifest = replace(manifest, replay=None)
        notes.append("the recorded replay fingerprint was dropped (fingerprint='never'): it was not checked "
                     "against these tensors")
    if need_fp:  # the replay below needs theta0; missing digests are filled from the same build
        _, digests = build_module(manifest.arch, manifest.init)
        if manifest.init.theta0_sha256 is None:
            manifest = replace(manifest, init=replace(manifest.init, theta0_sha256=digests))
            notes.append("theta0 digests computed")
    if need_fp:
        old = manifest.replay
        threads = DEFAULT_REFERENCE_THREADS
        seed = manifest.init.seed if old is None else old.probe_seed
        count = DEFAULT_PROBE_COUNT if old is None else old.probe_count
        fp = fingerprint_arrays(manifest, arrays, probe_seed=seed, probe_count=count, threads=threads)
        if old is not None and old.theta_opt_sha256 != fp.theta_opt_sha256:
            notes.append(f"the recorded fingerprint {old.theta_opt_sha256[:16]}.. differs from this replay's "
                         f"{fp.theta_opt_sha256[:16]}..; the new one is stored")
        manifest = replace(manifest, replay=fp)
        notes.append(f"replay fingerprint computed ({threads} thread(s))")
    stored = sldpack.write(out, manifest, tens, compression=compression)
    return PackResult(manifest=stored, file_size=Path(out).stat().st_size, notes=tuple(notes))
