"""``sldp export``: replay a ``.sldp`` and write its network as ONNX, TorchScript, safetensors or a MONAI bundle.

Every export is checked before it is reported: the written artefact is loaded back by the runtime a
receiver will use and run on the file's probe inputs (the replay fingerprint's seeded inputs), and its
logits are compared with the torch replay's (:func:`sldpack.nn.export.check_logits`). The artefact is
written under a temporary name beside the target and renamed only when the check passes; a failed check
deletes it and raises :class:`~sldpack.errors.ExportMismatchError` (exit code 1).

The network is the replay's theta_opt + theta_bn in eval mode; its input is the *normalised* image
(``(x / 255 - mean) / std`` for uint8 pixels, the file's ``preprocessing``), shape ``[batch, C, H, W]``, and
its output the logits in the order of ``labels.names``. Patch models classify one patch; the image-level
decision (Eq. 9) is the MONAI bundle's job (``sldpack.nn.decision``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sldpack.errors import ExportMismatchError, ReplayMismatchError, UsageError

__all__ = ["DEFAULT_PROBES", "EXPORT_TARGETS", "ExportResult", "export_file"]

EXPORT_TARGETS = ("onnx", "torchscript", "safetensors", "monai-bundle")
"""What ``sldp export --to`` writes."""
DEFAULT_PROBES = 8
"""Probe inputs the export check runs (the export is traced on 2 of them, so the batch axis stays free)."""


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_file` wrote and how it was checked.

    Attributes:
        target: one of :data:`EXPORT_TARGETS`.
        out: the written file (or bundle folder).
        nbytes: its size (a bundle: all its files).
        check: the logit comparison (:class:`sldpack.nn.export.ExportCheck` as a dict).
        replay_status: the replay fingerprint check (``exact``, ``within_tolerance``, ``no_fingerprint``).
        exporter: for ONNX, which torch exporter wrote the file.
        files: a bundle's files, relative to ``out``.
        seconds: wall time of replay + export + check.
    """

    target: str
    out: Path
    nbytes: int
    check: Mapping[str, Any]
    replay_status: str
    exporter: str = ""
    files: tuple[str, ...] = ()
    seconds: float = 0.0
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"target": self.target, "out": str(self.out), "bytes": self.nbytes, "check": dict(self.check),
                "replay": self.replay_status, "exporter": self.exporter or None, "files": list(self.files),
                "seconds": round(self.seconds, 3), "notes": list(self.notes)}


def _tmp_beside(out: Path) -> Path:
    return out.with_name(f".{out.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")


def _remove(p: Path) -> None:
    with contextlib.suppress(OSError):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def _size(p: Path) -> int:
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size


def export_file(path: str | os.PathLike[str], target: str, out: str | os.PathLike[str], *,
                probes: int = DEFAULT_PROBES, rtol: float | None = None, threads: int | None = None,
                license_text: str | None = None) -> ExportResult:
    """Replay ``path`` on the CPU and write its network to ``out`` as ``target``, checked.

    Args:
        path: the ``.sldp`` file (never modified).
        target: ``onnx``, ``torchscript``, ``safetensors`` or ``monai-bundle``.
        out: the file to write (a bundle: a folder that must not exist yet, or be empty).
        probes: probe inputs of the check (>= 2).
        rtol: accepted relative logit difference (default :data:`sldpack.nn.export.EXPORT_RTOL`).
        threads: torch CPU threads of the replay (default: the fingerprint's reference count).
        license_text: a bundle's ``LICENSE`` text (default: from the model card's licence fields).

    Returns:
        An :class:`ExportResult`.

    Raises:
        UsageError: unknown target, a missing extra, a network the target cannot express, an existing
            non-empty bundle folder, a file without preprocessing (bundle).
        ReplayMismatchError: the replay does not reproduce the file's fingerprint (nothing is written).
        ExportMismatchError: the export's logits differ from the replay's (nothing is left at ``out``).
    """
    import sldpack
    from sldpack.nn.export import EXPORT_RTOL, check_logits, module_logits
    from sldpack.nn.fingerprint import probe_inputs
    from sldpack.nn.verify import replay_and_verify

    if target not in EXPORT_TARGETS:
        raise UsageError(f"unknown export target {target!r}; one of {', '.join(EXPORT_TARGETS)}")
    if probes < 2:
        raise UsageError(f"probes must be >= 2, got {probes}")
    tol = EXPORT_RTOL if rtol is None else float(rtol)
    dst = Path(out)
    if target == "monai-bundle" and dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise UsageError(f"{dst}: exists and is not an empty folder; a bundle goes into a new folder")
    if target != "monai-bundle" and dst.is_dir():
        raise UsageError(f"{dst}: is a folder; --out names the file to write")
    t0 = time.perf_counter()
    with sldpack.open(path) as f:
        manifest = f.manifest
        res, rep = replay_and_verify(f, device="cpu", threads=threads)
    if not rep.ok:
        raise ReplayMismatchError(f"{path}: {rep.summary()}; nothing exported")
    module = res.module.to("cpu").eval()
    arch = manifest.arch
    seed = manifest.replay.probe_seed if manifest.replay is not None else 0
    x = probe_inputs(seed, probes, arch.in_channels, (int(arch.image_size[0]), int(arch.image_size[1])))
    ref = module_logits(module, x)
    tmp = _tmp_beside(dst)
    exporter = ""
    files: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    try:
        if target == "onnx":
            from sldpack.nn.export import export_onnx, run_onnx

            exporter = export_onnx(module, tmp, x[:2])
            got = run_onnx(tmp, x)
        elif target == "torchscript":
            from sldpack.nn.export import export_torchscript, run_torchscript

            export_torchscript(module, tmp, x[:2])
            got = run_torchscript(tmp, x)
        elif target == "safetensors":
            got = _export_safetensors(module, manifest, tmp, x)
        else:
            from sldpack.pipelines.bundle import write_bundle

            tmp.mkdir()
            got, files, notes = write_bundle(module, manifest, tmp, x, source_name=Path(path).name,
                                             license_text=license_text)
        check = check_logits(ref, got, rtol=tol)
        if not check.ok:
            raise ExportMismatchError(f"{target} export of {path} does not reproduce the replay: "
                                      f"{check.summary()}; the export was deleted")
        if target == "monai-bundle" and dst.is_dir():
            dst.rmdir()  # empty (checked above); os.replace cannot rename onto it otherwise
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            _remove(tmp)
    return ExportResult(target=target, out=dst, nbytes=_size(dst), check=check.to_dict(), replay_status=rep.status,
                        exporter=exporter, files=tuple(files), seconds=time.perf_counter() - t0, notes=tuple(notes))


def _export_safetensors(module: Any, manifest: Any, tmp: Path, x: Any) -> Any:
    """theta_opt + theta_bn with the metadata ``sldp eval model.safetensors`` reads; checked by loading it back."""
    from sldpack.nn.export import module_logits
    from sldpack.pipelines.models import TrainedModel, load_trained_model, save_trained_model

    if manifest.preprocessing is None:
        raise UsageError("the file records no preprocessing (mean/std): a checkpoint without it could not be "
                         "evaluated; export to onnx or torchscript instead")
    names = tuple(manifest.labels.names) if manifest.labels is not None else ()
    save_trained_model(tmp, TrainedModel(module=module, arch=manifest.arch, preprocessing=manifest.preprocessing,
                                         class_names=names, metadata={"exported_from": "sldp export"}))
    back = load_trained_model(tmp, device="cpu")
    return module_logits(back.module, x)
