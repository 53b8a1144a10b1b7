"""Which images a job reads: load a data set in any supported layout and pick a split (numpy only).

Shared by every data-reading command (``sldp distill``, ``train``, ``eval``, ``audit``, ``demo``) through
:mod:`sldpack.pipelines.inputs`, so a split named on one command is the same images on every other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sldpack.errors import DataError, UsageError
from sldpack.medical.loaders import (
    IMAGE_EXTENSIONS,
    ImageSet,
    count_unlabelled,
    load_folder,
    load_medmnist_npz,
    load_npz,
    missing_path,
    open_npz,
    read_image_file,
    split_indices,
)
from sldpack.medical.phantom import make_phantom

__all__ = ["DATA_FORMATS", "SPLITS", "DataFormat", "DataSelection", "detect_format", "load_data", "phantom_data",
           "select_split", "split_rule"]

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
        note: what was left out on request (``--unlabelled skip``), stated in every output.
    """

    data: ImageSet
    source: str
    split: str
    split_rule: str
    medmnist: bool
    total: int
    note: str = ""

    def describe(self) -> str:
        """One human line."""
        h, w = self.data.shape
        masks = "with masks" if self.data.masks is not None else "no masks"
        return (f"{self.source}: split {self.split!r}, {len(self.data)} of {self.total} images, {h}x{w} px, "
                f"{masks} ({self.split_rule})" + (f"; {self.note}" if self.note else ""))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        labels = np.asarray(self.data.labels)
        return {"source": self.source, "split": self.split, "split_rule": self.split_rule,
                "images": len(self.data), "total_images": self.total, "image_size": list(self.data.shape),
                "masks": self.data.masks is not None, "medmnist": self.medmnist,
                "label_counts": {str(int(v)): int((labels == v).sum()) for v in np.unique(labels)},
                **({"note": self.note} if self.note else {})}


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


DataFormat = Literal["auto", "medmnist", "npz", "folder", "image"]
DATA_FORMATS: tuple[str, ...] = ("auto", "medmnist", "npz", "folder", "image")
"""``--format`` values: ``medmnist`` (``{split}_images``/``{split}_labels`` npz), ``npz`` (``images`` +
``masks`` + ``labels``), ``folder`` (images + ``masks/`` + ``labels.csv``; PNG/JPEG/TIFF/DICOM), ``image``
(one PNG/JPEG/TIFF/DICOM file); ``auto`` detects which."""


def detect_format(path: str | Path) -> DataFormat:
    """The layout of ``path`` (see :data:`DATA_FORMATS`), from its kind, extension and npz array names.

    Raises:
        DataError: a missing or unreadable source, or one of no supported layout.
    """
    p = Path(path)
    if not (p.is_file() or p.is_dir()):
        raise missing_path(p)  # says why: absent, a link loop, a FIFO ...
    if p.is_dir():
        return "folder"
    ext = p.suffix.lower()
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext != ".npz":
        raise DataError(f"{p}: unsupported data source (an .npz file, a folder, or one PNG/JPEG/TIFF/DICOM image)")
    with open_npz(p) as z:
        keys = set(z.files)
    if "images" in keys:
        return "npz"
    if any(k.endswith("_images") for k in keys):
        return "medmnist"
    raise DataError(f"{p}: an .npz with neither 'images' (+ masks, labels) nor MedMNIST '{{split}}_images' "
                    f"arrays (it holds {sorted(keys)})")


def load_data(path: str | Path, *, split: str = "test", train_fraction: float = 0.7, split_seed: int = 0,
              resize: int | None = None, fmt: str = "auto", unlabelled: str = "error") -> DataSelection:
    """Load an evaluation/training data set in any format the loaders read, and pick a split.

    * MedMNIST-style ``.npz`` (``train_images`` ...): ``split`` names one of the file's own splits.
    * ``.npz`` with ``images`` (+ ``masks``, ``labels``), a folder (images + ``masks/`` + ``labels.csv``,
      PNG/JPEG/TIFF/DICOM): ``split`` is ``train``/``test``/``all`` of :func:`select_split`.
    * a single image file (PNG/JPEG/TIFF/DICOM): that image, label unknown (decision only, no metrics).

    Args:
        fmt: one of :data:`DATA_FORMATS`; ``auto`` (default) detects it (:func:`detect_format`).
        unlabelled: folders: ``"error"`` (default) when an image has no labels.csv row, ``"skip"`` to leave
            it out (the selection's ``note`` says how many).

    Raises:
        DataError: a missing, unreadable or malformed source (naming the file and the problem).
        UsageError: a split the source does not have, or an unknown ``fmt``.
    """
    p = Path(path)
    if fmt not in DATA_FORMATS:
        raise UsageError(f"data format must be one of {', '.join(DATA_FORMATS)}, got {fmt!r}")
    kind = detect_format(p) if fmt == "auto" else fmt
    if not (p.is_file() or p.is_dir()):
        raise missing_path(p)
    if kind == "folder":
        full = load_folder(p, size=resize, unlabelled=unlabelled)
        part, rule = select_split(full, split, train_fraction=train_fraction, seed=split_seed)
        skipped = count_unlabelled(p, full) if unlabelled == "skip" else 0
        note = f"{skipped} image(s) without a labels.csv row left out (--unlabelled skip)" if skipped else ""
        return DataSelection(part, str(p), split, rule, False, len(full), note)
    if kind == "image":
        img = read_image_file(p)
        one = ImageSet(images=img[None], masks=None, labels=np.array([-1], dtype=np.int64), names=(p.name,))
        return DataSelection(one, str(p), "all", "one image, label unknown", False, 1)
    if kind == "npz":
        full = load_npz(p)
        part, rule = select_split(full, split, train_fraction=train_fraction, seed=split_seed)
        return DataSelection(part, str(p), split, rule, False, len(full))
    splits = load_medmnist_npz(p)
    if split not in splits:
        raise UsageError(f"{p} is a MedMNIST-style file with the splits {', '.join(sorted(splits))}; "
                         f"--split {split!r} is not one of them")
    return DataSelection(splits[split], str(p), split, "the file's own split", True,
                         sum(len(s) for s in splits.values()))
