"""Torch glue for the medical pipeline: a patch data source for the distiller, training on patches, and
patch-level + image-level evaluation of a network over an :class:`~sldpack.medical.loaders.ImageSet`.

Patch task (the seed paper): a network classifies single-channel patches into I / N / P
(:data:`~sldpack.medical.patches.PATCH_CLASS_NAMES`); an image's decision is Eq. (9) over the predicted
classes of its patches. The patch geometry (size, stride, thresholds, optional down-sampling) is written
into ``preprocessing.options`` of every file distilled from a :class:`PatchSource` (see
:meth:`PatchSettings.to_options`), so ``sldp eval`` cuts the same patches without being told.

Whole-image task (MedMNIST and other sets without masks): every image is one input; the file's classes
are scored directly (``image = patch``).

Nothing materialises all patches: sources cut only the patches of a drawn batch and evaluation streams
windows in fixed-size chunks across images (memory O(chunk), whatever the data set size).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from sldpack.errors import DataError, UsageError
from sldpack.format.manifest import ArchSpec, InitSpec, Manifest, Preprocessing
from sldpack.medical.detection import DEFAULT_DELTA, DetectionResults, detect_images
from sldpack.medical.loaders import (
    IMAGE_EXTENSIONS,
    ImageSet,
    load_folder,
    load_medmnist_npz,
    load_npz,
    read_image_file,
    split_indices,
)
from sldpack.medical.metrics import BinaryMetrics, PatchMetrics, binary_metrics, patch_metrics
from sldpack.medical.patches import (
    PATCH_CLASS_NAMES,
    PatchConfig,
    PatchIndex,
    area_resize,
    build_patch_index,
    cut_patches,
    grid_positions,
    label_patch_grid,
)
from sldpack.medical.phantom import make_phantom
from sldpack.pipelines.sources import RealSource, balanced_counts

__all__ = [
    "PATCH_TASK",
    "SPLITS",
    "DataSelection",
    "EvalProgress",
    "MedicalEvaluation",
    "PatchSettings",
    "PatchSource",
    "TrainedModel",
    "evaluate",
    "evaluate_patches",
    "evaluate_whole_images",
    "is_patch_model",
    "load_data",
    "load_trained_model",
    "npz_patch_source",
    "patch_settings_from_manifest",
    "phantom_data",
    "phantom_patch_source",
    "save_trained_model",
    "select_split",
    "softmax",
    "train_model",
]

PATCH_TASK = "patches_inp"
"""Value of ``preprocessing.options["task"]`` for I/N/P patch classifiers."""

EvalProgress = Callable[[int, int], None]
"""``progress(inputs_done, inputs_total)`` during evaluation."""

_F32 = NDArray[np.float32]
_I64 = NDArray[np.int64]


# --- patch geometry ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class PatchSettings:
    """Patch geometry and labelling thresholds of a patch task.

    Attributes:
        size: window side in pixels of the source images.
        stride: step between windows.
        out_size: side the cut patches are shrunk to by area averaging (``None``: ``size``); this is the
            network's input size.
        outside_max: I when the organ fraction is below this.
        inside_min: N/P when the organ fraction is above this.
    """

    size: int
    stride: int
    out_size: int | None = None
    outside_max: float = 0.01
    inside_min: float = 0.85

    def __post_init__(self) -> None:
        self.config()  # validates size, stride, thresholds
        if self.out_size is not None and not (1 <= self.out_size <= self.size):
            raise UsageError(f"patch out size must be in 1..{self.size}, got {self.out_size}")

    @property
    def input_size(self) -> int:
        """Side of the network input (``out_size`` or ``size``)."""
        return self.size if self.out_size is None else self.out_size

    def config(self) -> PatchConfig:
        """The :class:`~sldpack.medical.patches.PatchConfig` of these settings."""
        return PatchConfig(size=self.size, stride=self.stride, outside_max=self.outside_max,
                           inside_min=self.inside_min)

    def to_options(self) -> dict[str, Any]:
        """The ``preprocessing.options`` entries describing the patches (``scale`` 255: uint8 input)."""
        return {"task": PATCH_TASK, "scale": 255.0, "patch_size": int(self.size), "patch_stride": int(self.stride),
                "patch_out_size": int(self.input_size), "outside_max": float(self.outside_max),
                "inside_min": float(self.inside_min), "patch_classes": list(PATCH_CLASS_NAMES)}

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> PatchSettings | None:
        """Read :meth:`to_options` back; ``None`` when the options describe no patch task."""
        if options.get("task") != PATCH_TASK or "patch_size" not in options:
            return None
        try:
            size = int(options["patch_size"])
            out = int(options.get("patch_out_size", size))
            return cls(size=size, stride=int(options.get("patch_stride", max(1, size // 2))),
                       out_size=None if out == size else out,
                       outside_max=float(options.get("outside_max", 0.01)),
                       inside_min=float(options.get("inside_min", 0.85)))
        except (TypeError, ValueError) as exc:
            raise UsageError(f"the file's preprocessing.options describe patches badly: {exc}") from exc


def patch_settings_from_manifest(manifest: Manifest) -> PatchSettings | None:
    """The patch settings a file was distilled with (``None`` for a whole-image classifier)."""
    pre = manifest.preprocessing
    return None if pre is None else PatchSettings.from_options(pre.options)


def is_patch_model(manifest: Manifest) -> bool:
    """True when the file is an I/N/P patch classifier (3 classes and patch options, or labels I/N/P)."""
    if patch_settings_from_manifest(manifest) is not None:
        return True
    names = manifest.labels.names if manifest.labels is not None else ()
    return tuple(names) == PATCH_CLASS_NAMES


# --- the patch data source ------------------------------------------------------------------------------

class PatchSource:
    """Class-balanced I/N/P patch batches cut on demand from uint8 images (a :class:`RealSource`).

    Patches are ``uint8 / 255`` (optionally area-shrunk to ``settings.out_size``), then normalised with
    one mean/std; the statistics default to those of a deterministic class-balanced sample of
    ``stats_sample`` patches (seed ``stats_seed``), so every split of a data set can share them.

    Args:
        images: uint8 ``[N, H, W]`` (any array supporting ``images[i, y0:y1, x0:x1]``, e.g. a memmap).
        index: the labelled patches (positions into ``images``).
        settings: the geometry ``index`` was built with (``size`` must match).
        mean, std: preprocessing statistics in the ``[0, 1]`` space, or ``None`` to measure them.
        stats_sample: patches drawn to measure mean/std.
        stats_seed: seed of that draw.
        fingerprint: provenance digest; default: SHA-256 of the images, the index and the settings.

    Raises:
        DataError: an empty index, a class without patches, or a constant sample (std 0).
        UsageError: the index was built with another patch size.
    """

    def __init__(self, images: NDArray[np.uint8], index: PatchIndex, settings: PatchSettings, *,
                 mean: float | None = None, std: float | None = None, stats_sample: int = 4096,
                 stats_seed: int = 0, fingerprint: str | None = None) -> None:
        if len(index) == 0:
            raise DataError("no labelled patches (check the masks, the patch size and the thresholds)")
        if index.size != settings.size:
            raise UsageError(f"the patch index has {index.size} px windows, the settings say {settings.size}")
        self.images = images
        self.index = index
        self.settings = settings
        self._members = [np.flatnonzero(index.label == c) for c in range(3)]
        missing = [PATCH_CLASS_NAMES[c] for c in range(3) if self._members[c].size == 0]
        if missing:
            raise DataError(f"no {'/'.join(missing)} patches in the training images (need I, N and P: "
                            "normal and diseased images, and windows inside and outside the organ)")
        if mean is None or std is None:
            rng = np.random.default_rng(np.random.SeedSequence([stats_seed, 0x57A7]))
            x = self._cut(self._draw(min(stats_sample, max(3, len(index))), rng, balanced=True))
            mean = float(x.astype(np.float64).mean()) if mean is None else mean
            std = float(x.astype(np.float64).std()) if std is None else std
        if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
            raise DataError(f"patch statistics mean {mean}, std {std}: are the images constant?")
        self.mean = float(mean)
        self.std = float(std)
        self._fingerprint = fingerprint

    @classmethod
    def from_image_set(cls, data: ImageSet, settings: PatchSettings, *,
                       image_ids: Sequence[int] | NDArray[np.integer[Any]] | None = None,
                       per_class: int | None = None, subset_seed: int = 0, **kwargs: Any) -> PatchSource:
        """Index the labelled patches of ``data`` (optionally of some images only, optionally at most
        ``per_class`` random patches per class) and build the source.

        Raises:
            DataError: the set has no masks or non-binary labels, or no I/N/P patches.
        """
        data.require_binary()
        index = build_patch_index(data.require_masks(), data.labels, settings.config())
        if image_ids is not None:
            index = index.for_images(image_ids)
        if per_class is not None:
            index = index.subsample_per_class(per_class, seed=subset_seed)
        return cls(data.images, index, settings, **kwargs)

    # RealSource protocol ------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """3 (I, N, P)."""
        return 3

    @property
    def class_names(self) -> tuple[str, ...]:
        """``("I", "N", "P")``."""
        return PATCH_CLASS_NAMES

    @property
    def channels(self) -> int:
        """1 (grayscale)."""
        return 1

    @property
    def image_size(self) -> tuple[int, int]:
        """Network input side, twice."""
        s = self.settings.input_size
        return (s, s)

    @property
    def preprocessing(self) -> Preprocessing:
        """``(uint8 / 255 - mean) / std`` on patches; the options carry the patch geometry."""
        return Preprocessing(mean=(self.mean,), std=(self.std,), image_size=self.image_size, channels=1,
                             options=self.settings.to_options())

    @property
    def fingerprint(self) -> str | None:
        """SHA-256 of the images, the patch index and the settings (computed once, on first use)."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for i in range(int(self.images.shape[0])):
                h.update(np.ascontiguousarray(self.images[i]).tobytes())
            ix = self.index
            for arr in (ix.image, ix.y, ix.x, ix.label):
                h.update(np.ascontiguousarray(arr).tobytes())
            h.update(repr(sorted(self.settings.to_options().items())).encode())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def __len__(self) -> int:
        return len(self.index)

    def counts(self) -> list[int]:
        """Number of I, N, P patches."""
        return [int(m.size) for m in self._members]

    def _draw(self, k: int, rng: np.random.Generator, *, balanced: bool) -> _I64:
        if not balanced:
            return rng.integers(0, len(self.index), size=k, dtype=np.int64)
        parts = []
        for c, n in enumerate(balanced_counts(k, 3)):
            if n:
                pool = self._members[c]
                parts.append(pool[rng.choice(pool.size, size=n, replace=n > pool.size)])
        return np.concatenate(parts).astype(np.int64)

    def _cut(self, positions: _I64) -> _F32:
        ix = self.index
        return cut_patches(self.images, ix.image[positions], ix.y[positions], ix.x[positions], ix.size,
                           out_size=self.settings.out_size)

    def normalize(self, patches: _F32) -> _F32:
        """``[B, s, s]`` patches in [0, 1] -> network inputs ``float32 [B, 1, s, s]``."""
        x = (patches.astype(np.float32) - np.float32(self.mean)) / np.float32(self.std)
        out: _F32 = np.ascontiguousarray(x[:, None, :, :], dtype=np.float32)
        return out

    def sample(self, k: int, rng: np.random.Generator, *, balanced: bool = True) -> tuple[_F32, _I64]:
        """``k`` preprocessed patches ``float32 [k, 1, s, s]`` and labels ``int64 [k]`` (0 I, 1 N, 2 P).

        Balanced: ``balanced_counts(k, 3)`` per class, without replacement inside a class unless it is too
        small; otherwise uniform over all patches (the natural class mix).
        """
        if k < 1:
            raise UsageError(f"batch size must be >= 1, got {k}")
        pos = self._draw(k, rng, balanced=balanced)
        return self.normalize(self._cut(pos)), self.index.label[pos].astype(np.int64)

    def examples(self, per_class: int, seed: int = 0) -> tuple[_F32, _I64, _I64]:
        """``per_class`` raw patches of each class (for pictures): ``(patches [B,s,s] in [0,1], labels,
        image ids)``."""
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xE4A]))
        pos = np.concatenate([m[rng.choice(m.size, size=min(per_class, m.size), replace=False)]
                              for m in self._members]).astype(np.int64)
        return self._cut(pos), self.index.label[pos].astype(np.int64), self.index.image[pos].astype(np.int64)


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


def _windows_for(data: ImageSet, i: int, settings: PatchSettings, windows: str,
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


def evaluate_patches(module: nn.Module, data: ImageSet, settings: PatchSettings, *, mean: float, std: float,
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
             class_names: Sequence[str] = (), settings: PatchSettings | None = None,
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
    ps = settings if settings is not None else PatchSettings.from_options(pre.options)
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


# --- data selection (shared by `sldp eval`, `sldp train`, the demo and the source factories) -------------

SPLITS = ("train", "test", "all")
"""Splits of a data set without its own splits (npz with images/masks/labels, folders, phantom)."""


@dataclass(frozen=True)
class DataSelection:
    """The images chosen for a job and how they were chosen.

    Attributes:
        data: the images of the split.
        source: where they come from (path or ``phantom(...)``).
        split: the split name.
        split_rule: the rule in words (stated in every output).
        medmnist: the source is a MedMNIST-style file (its own splits, no masks).
        total: images in the source before splitting.
    """

    data: ImageSet
    source: str
    split: str
    split_rule: str
    medmnist: bool
    total: int

    def describe(self) -> str:
        """One human line."""
        h, w = self.data.shape
        masks = "with masks" if self.data.masks is not None else "no masks"
        return (f"{self.source}: split {self.split!r}, {len(self.data)} of {self.total} images, {h}x{w} px, "
                f"{masks} ({self.split_rule})")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        labels = np.asarray(self.data.labels)
        return {"source": self.source, "split": self.split, "split_rule": self.split_rule,
                "images": len(self.data), "total_images": self.total, "image_size": list(self.data.shape),
                "masks": self.data.masks is not None, "medmnist": self.medmnist,
                "label_counts": {str(int(v)): int((labels == v).sum()) for v in np.unique(labels)}}


def split_rule(train_fraction: float, seed: int) -> str:
    """The split rule in words."""
    a = round(100 * train_fraction)
    return (f"train/test {a}/{100 - a} by image, stratified by image label, seed {seed} "
            "(sldpack.medical.split_indices; one image per patient => split by patient)")


def select_split(data: ImageSet, split: str, *, train_fraction: float = 0.7,
                 seed: int = 0) -> tuple[ImageSet, str]:
    """The ``train``/``test``/``all`` part of ``data`` by the deterministic stratified split.

    Every image is its own unit (one image per patient: Montgomery, the phantom); the split is stratified
    by the image label when every label is known.

    Returns:
        ``(images of the split, the rule in words)``.

    Raises:
        UsageError: an unknown split name or a fraction outside (0, 1).
    """
    if split not in SPLITS:
        raise UsageError(f"split must be one of {', '.join(SPLITS)} for this data, got {split!r}")
    if not (0.0 < train_fraction < 1.0):
        raise UsageError(f"the train fraction must be in (0, 1), got {train_fraction}")
    if split == "all":
        return data, "all images, no split"
    labels = np.asarray(data.labels)
    strat = labels if bool((labels >= 0).all()) else None
    tr, te = split_indices(len(data), (train_fraction, 1.0 - train_fraction), seed, labels=strat)
    part = tr if split == "train" else te
    if part.size == 0:
        raise UsageError(f"the {split} split of {len(data)} images is empty; change the train fraction")
    return data.subset(part), split_rule(train_fraction, seed)


def phantom_data(n: int, size: int = 128, seed: int = 0, *, split: str = "all", train_fraction: float = 0.7,
                 split_seed: int | None = None) -> DataSelection:
    """Phantom images (:func:`sldpack.medical.make_phantom`) and one split of them.

    Args:
        n: number of images generated (before the split).
        size: image side.
        seed: phantom seed.
        split: ``train``, ``test`` or ``all``.
        train_fraction: share of images in the train split.
        split_seed: seed of the split (default: ``seed``).
    """
    full = make_phantom(n, size=size, seed=seed).to_image_set()
    s_seed = seed if split_seed is None else split_seed
    part, rule = select_split(full, split, train_fraction=train_fraction, seed=s_seed)
    return DataSelection(data=part, source=f"phantom(n={n}, size={size}, seed={seed})", split=split,
                         split_rule=rule, medmnist=False, total=n)


def load_data(path: str | Path, *, split: str = "test", train_fraction: float = 0.7, split_seed: int = 0,
              resize: int | None = None) -> DataSelection:
    """Load an evaluation/training data set in any format the loaders read, and pick a split.

    * MedMNIST-style ``.npz`` (``train_images`` ...): ``split`` names one of the file's own splits.
    * ``.npz`` with ``images`` (+ ``masks``, ``labels``), a folder (images + ``masks/`` + ``labels.csv``,
      PNG/JPEG/TIFF/DICOM): ``split`` is ``train``/``test``/``all`` of :func:`select_split`.
    * a single image file (PNG/JPEG/TIFF/DICOM): that image, label unknown (decision only, no metrics).

    Raises:
        DataError: a missing, unreadable or malformed source (naming the file and the problem).
        UsageError: a split the source does not have.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or folder")
    if p.is_dir():
        full = load_folder(p, size=resize)
        part, rule = select_split(full, split, train_fraction=train_fraction, seed=split_seed)
        return DataSelection(part, str(p), split, rule, False, len(full))
    ext = p.suffix.lower()
    if ext in IMAGE_EXTENSIONS:
        img = read_image_file(p)
        one = ImageSet(images=img[None], masks=None, labels=np.array([-1], dtype=np.int64), names=(p.name,))
        return DataSelection(one, str(p), "all", "one image, label unknown", False, 1)
    if ext != ".npz":
        raise DataError(f"{p}: unsupported data source (an .npz file, a folder, or one PNG/JPEG/TIFF/DICOM image)")
    try:
        with np.load(p, allow_pickle=False) as z:
            keys = set(z.files)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{p}: not a readable .npz archive ({exc})") from exc
    if "images" in keys:
        full = load_npz(p)
        part, rule = select_split(full, split, train_fraction=train_fraction, seed=split_seed)
        return DataSelection(part, str(p), split, rule, False, len(full))
    splits = load_medmnist_npz(p)
    if split not in splits:
        raise UsageError(f"{p} is a MedMNIST-style file with the splits {', '.join(sorted(splits))}; "
                         f"--split {split!r} is not one of them")
    return DataSelection(splits[split], str(p), split, "the file's own split", True,
                         sum(len(s) for s in splits.values()))


# --- plug-in data sources for `sldp distill --source` --------------------------------------------------

def _kv(argument: str | None, first_key: str) -> dict[str, str]:
    """``"a=1,b=2"`` -> dict; a first item without ``=`` is the value of ``first_key``."""
    out: dict[str, str] = {}
    if not argument:
        return out
    for k, item in enumerate(argument.split(",")):
        key, sep, val = item.partition("=")
        if not sep:
            if k == 0:
                out[first_key] = item
                continue
            raise UsageError(f"source options want KEY=VALUE, got {item!r}")
        out[key.strip()] = val.strip()
    return out


def _int_opt(opts: Mapping[str, str], key: str, default: int | None) -> int | None:
    if key not in opts:
        return default
    try:
        return int(opts[key])
    except ValueError:
        raise UsageError(f"source option {key}={opts[key]!r} is not an integer") from None


def _settings_from(opts: Mapping[str, str], patch_default: int) -> PatchSettings:
    size = _int_opt(opts, "patch", patch_default)
    assert size is not None
    stride = _int_opt(opts, "stride", max(1, size // 2))
    assert stride is not None
    return PatchSettings(size=size, stride=stride, out_size=_int_opt(opts, "out", None),
                         outside_max=float(opts.get("outside_max", 0.01)),
                         inside_min=float(opts.get("inside_min", 0.85)))


_SOURCE_KEYS = {"patch", "stride", "out", "outside_max", "inside_min", "fraction", "split_seed", "per_class"}


def _check_keys(opts: Mapping[str, str], allowed: set[str]) -> None:
    bad = sorted(set(opts) - allowed)
    if bad:
        raise UsageError(f"unknown source option(s) {', '.join(bad)}; accepted: {', '.join(sorted(allowed))}")


def phantom_patch_source(argument: str | None, split: str) -> PatchSource:
    """``sldp distill --source sldpack.pipelines.medical:phantom_patch_source:n=60,size=128,patch=32``.

    Options (``KEY=VALUE``, comma-separated; the first may be just the image count): ``n`` (60), ``size``
    (128), ``seed`` (0), ``patch`` (32), ``stride`` (patch/2), ``out`` (patch side fed to the network),
    ``outside_max``/``inside_min`` (thresholds), ``fraction`` (0.7, train share), ``split_seed`` (seed),
    ``per_class`` (at most N patches per class). ``split`` is ``train``/``test``/``all`` (:func:`select_split`).
    """
    opts = _kv(argument, "n")
    _check_keys(opts, _SOURCE_KEYS | {"n", "size", "seed"})
    sel = phantom_data(_int_opt(opts, "n", 60) or 60, _int_opt(opts, "size", 128) or 128,
                       _int_opt(opts, "seed", 0) or 0, split=split, train_fraction=float(opts.get("fraction", 0.7)),
                       split_seed=_int_opt(opts, "split_seed", None))
    return PatchSource.from_image_set(sel.data, _settings_from(opts, 32), per_class=_int_opt(opts, "per_class", None))


def npz_patch_source(argument: str | None, split: str) -> PatchSource:
    """``sldp distill --source sldpack.pipelines.medical:npz_patch_source:PATH,patch=64,stride=32,out=32``.

    Patches of an ``.npz`` with images/masks/labels (or a folder), split by :func:`select_split`. Options as
    :func:`phantom_patch_source` (``patch`` default 64) plus the leading ``PATH`` (or ``path=``) and
    ``resize`` (folders only).
    """
    opts = _kv(argument, "path")
    _check_keys(opts, _SOURCE_KEYS | {"path", "resize"})
    if "path" not in opts:
        raise UsageError("npz_patch_source needs a path: --source sldpack.pipelines.medical:npz_patch_source:FILE.npz")
    sel = load_data(opts["path"], split=split, train_fraction=float(opts.get("fraction", 0.7)),
                    split_seed=_int_opt(opts, "split_seed", 0) or 0, resize=_int_opt(opts, "resize", None))
    return PatchSource.from_image_set(sel.data, _settings_from(opts, 64), per_class=_int_opt(opts, "per_class", None))


# --- normally trained models (the baselines of `sldp train`) ------------------------------------------

@dataclass
class TrainedModel:
    """A network with everything needed to evaluate it on raw images.

    Attributes:
        module: the network, eval mode.
        arch: its architecture (``arch.options`` complete).
        preprocessing: mean/std and, for patch models, the patch options.
        class_names: names of the outputs.
        metadata: the rest of the checkpoint's metadata (training settings).
    """

    module: nn.Module
    arch: ArchSpec
    preprocessing: Preprocessing
    class_names: tuple[str, ...]
    metadata: dict[str, Any] = field(default_factory=dict)


def train_model(source: RealSource, *, arch: str = "convnet@1", arch_options: Mapping[str, Any] | None = None,
                batchnorm: bool = False, steps: int = 500, batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
                device: str = "cpu", progress: Callable[[int, int, float], None] | None = None) -> TrainedModel:
    """Train ``arch`` normally on class-balanced batches of ``source`` (the baselines of the paper's tables).

    theta_0 comes from the portable init with ``seed`` (the same start a distilled file with that seed has);
    training is :func:`sldpack.nn.train.train_normal` (Adam, cosine decay).

    Returns:
        The trained model, eval mode, on ``device``.

    Raises:
        UsageError: bad architecture/options or training settings, divergence.
    """
    from sldpack.nn.replay import build_module
    from sldpack.nn.train import train_normal
    from sldpack.nn.zoo import resolve_options

    spec = ArchSpec(id=arch, in_channels=source.channels, num_classes=source.num_classes,
                    image_size=tuple(source.image_size), batchnorm=batchnorm,  # type: ignore[arg-type]
                    options=resolve_options(arch, arch_options))
    module, _ = build_module(spec, InitSpec(seed=seed))
    train_normal(module, lambda k, rng: source.sample(k, rng, balanced=True), steps=steps, batch_size=batch_size,
                 lr=lr, seed=seed, device=device, progress=progress)
    meta = {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "optimizer": "adam, cosine decay",
            "init": "portable xavier_normal", "sampling": "class-balanced", "dataset_sha256": source.fingerprint}
    return TrainedModel(module=module, arch=spec, preprocessing=source.preprocessing,
                        class_names=tuple(source.class_names), metadata=meta)


def save_trained_model(path: str | Path, model: TrainedModel) -> int:
    """Write ``model`` as ``.safetensors`` (state_dict + ``sldp_*`` metadata that :func:`load_trained_model`
    reads back); atomic. Returns the bytes written."""
    from sldpack.nn.replay import save_safetensors

    meta = {"format": "pt", "arch": model.arch.id,
            "sldp_arch": json.dumps(model.arch.to_obj(), sort_keys=True),
            "sldp_preprocessing": json.dumps(model.preprocessing.to_obj(), sort_keys=True),
            "sldp_labels": json.dumps(list(model.class_names)),
            "sldp_training": json.dumps(model.metadata, sort_keys=True, default=str)}
    return save_safetensors(path, model.module.state_dict(), metadata=meta)


_ST_NUMPY = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "U8": "u1"}


def load_trained_model(path: str | Path, *, device: str = "cpu") -> TrainedModel:
    """Read a checkpoint written by :func:`save_trained_model` (``sldp train --save``).

    Raises:
        DataError: unreadable file, or a checkpoint without the ``sldp_arch``/``sldp_preprocessing``
            metadata (e.g. ``sldp replay``'s output: evaluate its ``.sldp`` file instead).
    """
    from sldpack.nn.replay import resolve_device
    from sldpack.nn.zoo import build_from_spec

    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {p}: {exc}") from exc
    n = int.from_bytes(raw[:8], "little") if len(raw) >= 8 else -1
    if n < 2 or n > len(raw) - 8:
        raise DataError(f"{p}: not a safetensors file")
    try:
        header = json.loads(raw[8:8 + n])
        meta = header.pop("__metadata__", {}) or {}
        arch_obj = json.loads(meta["sldp_arch"])
        pre_obj = json.loads(meta["sldp_preprocessing"])
        names = tuple(str(v) for v in json.loads(meta.get("sldp_labels", "[]")))
        training = json.loads(meta.get("sldp_training", "{}"))
        arch = ArchSpec(id=str(arch_obj["id"]), in_channels=int(arch_obj["in_channels"]),
                        num_classes=int(arch_obj["num_classes"]),
                        image_size=(int(arch_obj["image_size"][0]), int(arch_obj["image_size"][1])),
                        batchnorm=bool(arch_obj.get("batchnorm", False)), options=dict(arch_obj.get("options", {})))
        pre = Preprocessing(mean=tuple(float(v) for v in pre_obj["mean"]),
                            std=tuple(float(v) for v in pre_obj["std"]),
                            image_size=(int(pre_obj["image_size"][0]), int(pre_obj["image_size"][1])),
                            channels=int(pre_obj["channels"]), options=dict(pre_obj.get("options", {})))
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise DataError(f"{p}: not a checkpoint written by `sldp train --save` (missing or bad sldp_* metadata: "
                        f"{exc}); to evaluate a distilled network, pass its .sldp file") from exc
    module = build_from_spec(arch)
    data = memoryview(raw)[8 + n:]
    state: dict[str, torch.Tensor] = {}
    try:
        for name, e in header.items():
            b, end = (int(v) for v in e["data_offsets"])
            if not 0 <= b <= end <= len(data):
                raise DataError(f"{p}: tensor {name!r} lies outside the data section")
            arr = np.frombuffer(data[b:end], dtype=_ST_NUMPY[e["dtype"]]).reshape(tuple(e["shape"])).copy()
            state[name] = torch.from_numpy(arr)
        module.load_state_dict(state, strict=True)
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise DataError(f"{p}: tensors do not fit {arch.id}: {exc}") from exc
    module.sldp_input_shape = (arch.in_channels, arch.image_size[0], arch.image_size[1])  # type: ignore[assignment]
    module.eval()
    return TrainedModel(module=module.to(resolve_device(device)), arch=arch, preprocessing=pre, class_names=names,
                        metadata=training)
