"""Patch-level and image-level evaluation of a network over an :class:`~sldpack.medical.loaders.ImageSet`.

Patch task (the seed paper): a network classifies single-channel patches into I / N / P
(:data:`~sldpack.medical.patches.PATCH_CLASS_NAMES`); an image's decision is Eq. (9) over the predicted
classes of its patches. Whole-image task (MedMNIST and other sets without masks): every image is one
input; the file's classes are scored directly (``image = patch``).

Evaluation streams windows in fixed-size chunks across images (memory O(chunk), whatever the data set size).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from sldpack.errors import DataError, UsageError
from sldpack.format.manifest import Manifest, Preprocessing
from sldpack.medical.detection import DEFAULT_DELTA, DetectionResults, detect_images
from sldpack.medical.loaders import ImageSet
from sldpack.medical.metrics import BinaryMetrics, PatchMetrics, binary_metrics, patch_metrics
from sldpack.medical.patches import PATCH_CLASS_NAMES, area_resize, cut_patches, grid_positions, label_patch_grid
from sldpack.pipelines.patch_source import PatchTask

__all__ = ["EvalProgress", "MedicalEvaluation", "evaluate", "evaluate_patches", "evaluate_whole_images", "softmax"]

EvalProgress = Callable[[int, int], None]
"""``progress(inputs_done, inputs_total)`` during evaluation."""

_F32 = NDArray[np.float32]
_I64 = NDArray[np.int64]

# --- evaluation -----------------------------------------------------------------------------------------

def softmax(logits: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
    """Row-wise softmax in float64 (stable)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    out: NDArray[np.float64] = e / e.sum(axis=-1, keepdims=True)
    return out


def _forward(module: nn.Module, x: _F32) -> _F32:
    dev = next(module.parameters()).device
    with torch.no_grad():
        out = module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(dev))
    return np.asarray(out.detach().to("cpu", torch.float32).numpy(), dtype=np.float32)


@dataclass(frozen=True)
class MedicalEvaluation:
    """Result of :func:`evaluate_patches` / :func:`evaluate_whole_images`.

    Attributes:
        task: ``"patches"`` (I/N/P patches + Eq. 9) or ``"images"`` (whole-image classification).
        patch: patch-level (or, for ``"images"``, per-image class-level) accuracy/recall; ``None`` when no
            input had a known label (no masks).
        image: image-level binary metrics (Sen/Spe/HM/accuracy/AUC); ``None`` when labels are unknown or
            the task is not binary.
        detection: per-image Eq. (9) results (patch task only).
        per_image: per-image rows for CSV export (both tasks).
        n_images: images evaluated.
        n_inputs: network inputs evaluated (patches, or images).
        n_labelled: inputs with a known patch label (patch-level metrics are over these).
        settings: what was evaluated how (patch geometry, windows, delta, mean/std).
        seconds: wall time.
    """

    task: str
    patch: PatchMetrics | None
    image: BinaryMetrics | None
    detection: DetectionResults | None
    per_image: tuple[dict[str, Any], ...]
    n_images: int
    n_inputs: int
    n_labelled: int
    settings: Mapping[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN -> ``None``); per-image rows are left out (see ``per_image``)."""
        return {"task": self.task, "n_images": self.n_images, "n_inputs": self.n_inputs,
                "n_labelled": self.n_labelled,
                "patch": None if self.patch is None else self.patch.to_dict(),
                "image": None if self.image is None else self.image.to_dict(),
                "settings": dict(self.settings), "seconds": round(self.seconds, 3)}

    def csv_columns(self) -> tuple[str, ...]:
        """Columns of :meth:`to_csv_text`."""
        return tuple(self.per_image[0].keys()) if self.per_image else ("name",)

    def to_csv_text(self) -> str:
        """Per-image results as CSV (patch task: the Eq. 9 columns of ``DetectionResults``)."""
        if self.detection is not None:
            return self.detection.to_csv_text()
        import csv
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        cols = self.csv_columns()
        w.writerow(cols)
        for row in self.per_image:
            w.writerow([repr(row[c]) if isinstance(row[c], float) else row[c] for c in cols])
        return buf.getvalue()


def _windows_for(data: ImageSet, i: int, settings: PatchTask, windows: str,
                 labelled: bool) -> tuple[_I64, _I64, NDArray[np.int8] | None]:
    """Positions (ys, xs) of image ``i`` to classify and their true labels (-1 unknown/discarded)."""
    h, w = data.shape
    gy, gx = grid_positions(h, w, settings.size, settings.stride)
    ys = np.repeat(gy, gx.size)
    xs = np.tile(gx, gy.size)
    if not labelled:
        return ys, xs, None
    assert data.masks is not None
    grid = label_patch_grid(data.masks[i], int(data.labels[i]), settings.config()).reshape(-1)
    if windows == "labelled":
        keep = grid >= 0
        return ys[keep], xs[keep], grid[keep]
    return ys, xs, grid


def evaluate_patches(module: nn.Module, data: ImageSet, settings: PatchTask, *, mean: float, std: float,
                     delta: float = DEFAULT_DELTA, windows: str = "auto", chunk: int = 512,
                     progress: EvalProgress | None = None) -> MedicalEvaluation:
    """Classify the windows of every image into I/N/P and decide each image by Eq. (9).

    Windows are streamed across images in chunks of ``chunk`` patches (cut, shrunk, normalised, one
    forward pass each); only positions are held for the whole set.

    Args:
        module: an I/N/P patch classifier (3 logits), in eval mode.
        data: the images (masks and 0/1 labels make the patch-level metrics possible).
        settings: patch geometry (and thresholds for the true patch labels).
        mean, std: preprocessing statistics of the network's inputs.
        delta: Eq. (9) threshold.
        windows: ``"labelled"`` (only windows labelled I/N/P by the mask, as in training), ``"all"`` (the
            whole sliding grid, no mask needed: how a deployed detector sees a new image), ``"auto"``
            (labelled when the set has masks, else all).
        chunk: patches per forward pass.
        progress: called with (patches done, total) after every chunk.

    Returns:
        The evaluation; ``image`` metrics need known 0/1 labels, ``patch`` metrics need masks.

    Raises:
        UsageError: a bad ``windows``/``chunk``, or a network without 3 outputs.
        DataError: images smaller than the patch, or labels other than 0/1 with masks.
    """
    t0 = time.perf_counter()
    if windows not in ("auto", "labelled", "all"):
        raise UsageError(f"windows must be auto, labelled or all, got {windows!r}")
    if chunk < 1:
        raise UsageError(f"chunk must be >= 1, got {chunk}")
    h, w = data.shape
    if h < settings.size or w < settings.size:
        raise DataError(f"images are {h}x{w} px, smaller than the {settings.size} px patches of this model")
    mode = ("labelled" if data.masks is not None else "all") if windows == "auto" else windows
    if mode == "labelled" and data.masks is None:
        raise DataError("--windows labelled needs organ masks; this data set has none (use --windows all)")
    labels_known = bool(np.isin(data.labels, [0, 1]).all())
    labelled = data.masks is not None and labels_known
    if mode == "labelled" and not labels_known:
        data.require_binary("image labels (needed to label the windows)")
    # positions of every window to classify: 13 bytes each, never the patches themselves
    ids: list[_I64] = []
    yss: list[_I64] = []
    xss: list[_I64] = []
    truth: list[NDArray[np.int8]] = []
    for i in range(len(data)):
        ys, xs, tl = _windows_for(data, i, settings, mode, labelled)
        ids.append(np.full(ys.size, i, dtype=np.int64))
        yss.append(ys)
        xss.append(xs)
        if tl is not None:
            truth.append(tl)
    all_ids = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
    all_y = np.concatenate(yss) if yss else np.zeros(0, dtype=np.int64)
    all_x = np.concatenate(xss) if xss else np.zeros(0, dtype=np.int64)
    total = int(all_ids.size)
    pred = np.empty(total, dtype=np.int64)
    mu, sd = np.float32(mean), np.float32(std)
    for start in range(0, total, chunk):
        sl = slice(start, min(start + chunk, total))
        patches = cut_patches(data.images, all_ids[sl], all_y[sl], all_x[sl], settings.size,
                              out_size=settings.out_size)
        logits = _forward(module, ((patches - mu) / sd)[:, None, :, :])
        if logits.shape[1] != 3:
            raise UsageError(f"the network has {logits.shape[1]} outputs; a patch model needs 3 (I, N, P)")
        pred[sl] = logits.argmax(axis=1)
        if progress is not None:
            progress(sl.stop, total)
    pm: PatchMetrics | None = None
    n_lab = 0
    if truth:
        tl_all = np.concatenate(truth).astype(np.int64)
        known = tl_all >= 0
        n_lab = int(known.sum())
        if n_lab:
            pm = patch_metrics(tl_all[known], pred[known], PATCH_CLASS_NAMES)
    counts = np.zeros((len(data), 3), dtype=np.int64)
    np.add.at(counts, (all_ids, pred), 1)
    true_img = data.labels if labels_known else np.full(len(data), -1, dtype=np.int64)
    det = detect_images(counts, names=data.names, true_labels=true_img, delta=delta)
    bm = det.metrics() if labels_known and len(data) else None
    settings_out = {"patch_size": settings.size, "stride": settings.stride, "out_size": settings.input_size,
                    "outside_max": settings.outside_max, "inside_min": settings.inside_min, "windows": mode,
                    "delta": det.delta, "mean": float(mean), "std": float(std),
                    "rule": "image positive when Num(P)/(Num(N)+Num(P)) >= delta over its classified windows; "
                            "I ignored"}
    return MedicalEvaluation(task="patches", patch=pm, image=bm, detection=det,
                             per_image=tuple(det.to_rows()), n_images=len(data), n_inputs=total, n_labelled=n_lab,
                             settings=settings_out, seconds=time.perf_counter() - t0)


def evaluate_whole_images(module: nn.Module, data: ImageSet, *, mean: Sequence[float], std: Sequence[float],
                          class_names: Sequence[str], input_size: tuple[int, int], chunk: int = 512,
                          progress: EvalProgress | None = None) -> MedicalEvaluation:
    """Classify every whole image (MedMNIST-style sets: one image = one input).

    Images are area-resized to ``input_size`` when their size differs, scaled to [0, 1] and normalised.
    Class-level accuracy/recall over ``class_names``; with two classes also the binary image metrics
    (label 1 positive, decision = argmax, AUC of the class-1 probability).

    Raises:
        UsageError: non-square resizing, a network whose outputs disagree with ``class_names``.
    """
    t0 = time.perf_counter()
    if chunk < 1:
        raise UsageError(f"chunk must be >= 1, got {chunk}")
    k = len(class_names)
    h, w = data.shape
    all_labels = np.asarray(data.labels, dtype=np.int64)
    outside = all_labels >= k
    if bool(outside.any()):
        # silently dropping them would report a perfect score on the classes the file knows
        first = int(np.flatnonzero(outside)[0])
        raise DataError(f"{int(outside.sum())} image(s) have labels outside the file's label space 0..{k - 1} "
                        f"({'/'.join(class_names)}), the first {data.names[first]!r} with label "
                        f"{int(all_labels[first])}: evaluate on data with the same classes")
    if (h, w) != tuple(input_size) and (h != w or input_size[0] != input_size[1]):
        raise UsageError(f"images are {h}x{w} px, the network expects {input_size[0]}x{input_size[1]}; "
                         "only square images are resized")
    mu = np.float32(mean[0] if len(mean) else 0.0)
    sd = np.float32(std[0] if len(std) else 1.0)
    n = len(data)
    probs = np.zeros((n, k), dtype=np.float64)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        x = np.asarray(data.images[start:stop]).astype(np.float32) / np.float32(255.0)
        if (h, w) != tuple(input_size):
            x = area_resize(x, int(input_size[0]))
        logits = _forward(module, ((x - mu) / sd)[:, None, :, :])
        if logits.shape[1] != k:
            raise UsageError(f"the network has {logits.shape[1]} outputs for {k} class names")
        probs[start:stop] = softmax(logits)
        if progress is not None:
            progress(stop, n)
    pred = probs.argmax(axis=1).astype(np.int64)
    labels = np.asarray(data.labels, dtype=np.int64)
    known = (labels >= 0) & (labels < k)
    pm = patch_metrics(labels[known], pred[known], tuple(class_names)) if known.any() else None
    bm: BinaryMetrics | None = None
    if k == 2 and known.any():
        bm = binary_metrics(labels[known], pred[known], probs[known, 1])
    rows = []
    for i in range(n):
        row: dict[str, Any] = {"name": data.names[i], "true_label": int(labels[i]) if known[i] else -1,
                               "predicted": int(pred[i])}
        for c in range(k):
            row[f"p_{class_names[c]}"] = float(probs[i, c])
        rows.append(row)
    settings_out = {"input_size": list(input_size), "resized": (h, w) != tuple(input_size),
                    "mean": float(mu), "std": float(sd), "rule": "image = one input; decision = argmax"}
    return MedicalEvaluation(task="images", patch=pm, image=bm, detection=None, per_image=tuple(rows),
                             n_images=n, n_inputs=n, n_labelled=int(known.sum()), settings=settings_out,
                             seconds=time.perf_counter() - t0)


def evaluate(module: nn.Module, manifest_like: Manifest | Preprocessing, data: ImageSet, *,
             class_names: Sequence[str] = (), settings: PatchTask | None = None,
             delta: float = DEFAULT_DELTA, windows: str = "auto", chunk: int = 512,
             progress: EvalProgress | None = None) -> MedicalEvaluation:
    """Evaluate ``module`` on ``data`` the way its preprocessing says: patches + Eq. (9) for a patch
    model, whole images otherwise.

    Args:
        module: the network in eval mode (e.g. ``sldpack.nn.replay.load_model(path)``).
        manifest_like: the file's manifest, or just its :class:`Preprocessing`.
        data: the images.
        class_names: whole-image task: class names (default: the manifest's labels).
        settings: override the patch geometry of the manifest (e.g. another stride).
        delta, windows, chunk, progress: see :func:`evaluate_patches`.

    Raises:
        UsageError: no preprocessing recorded, or a patch model without patch settings.
    """
    pre = manifest_like.preprocessing if isinstance(manifest_like, Manifest) else manifest_like
    if pre is None:
        raise UsageError("the file records no preprocessing (mean/std): cannot feed it real images")
    ps = settings if settings is not None else PatchTask.from_options(pre.options)
    names = tuple(class_names)
    if not names and isinstance(manifest_like, Manifest) and manifest_like.labels is not None:
        names = tuple(manifest_like.labels.names)
    if ps is None and names == PATCH_CLASS_NAMES:
        raise UsageError("this is an I/N/P patch model but its manifest records no patch size: "
                         "pass --patch-size and --stride")
    if ps is not None:
        if tuple(pre.image_size) != (ps.input_size, ps.input_size):
            raise UsageError(f"patches of {ps.input_size} px do not fit the network's "
                             f"{pre.image_size[0]}x{pre.image_size[1]} input (use --out-size)")
        return evaluate_patches(module, data, ps, mean=float(pre.mean[0]), std=float(pre.std[0]), delta=delta,
                                windows=windows, chunk=chunk, progress=progress)
    if not names:
        names = tuple(str(c) for c in range(int(_forward_shape(module))))
    return evaluate_whole_images(module, data, mean=pre.mean, std=pre.std, class_names=names,
                                 input_size=(int(pre.image_size[0]), int(pre.image_size[1])), chunk=chunk,
                                 progress=progress)


def _forward_shape(module: nn.Module) -> int:
    shape = getattr(module, "sldp_input_shape", None)
    if shape is None:
        raise UsageError("cannot tell the number of classes: pass class names")
    c, h, w = (int(v) for v in shape)
    return int(_forward(module, np.zeros((1, c, h, w), dtype=np.float32)).shape[1])
