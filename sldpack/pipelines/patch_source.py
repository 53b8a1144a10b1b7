"""The I/N/P patch task: what a patch classifier was trained on (:class:`PatchTask`) and the patch data
source of the distiller and the baseline trainer (:class:`PatchSource`, a
:class:`~sldpack.pipelines.sources.RealSource`).

Numpy only (no torch). The patch geometry (size, stride, thresholds, optional down-sampling) is written
into ``preprocessing.options`` of every file distilled from a :class:`PatchSource` (see
:meth:`PatchTask.to_options`), so ``sldp eval`` cuts the same patches without being told. Nothing
materialises all patches: a source cuts only the patches of a drawn batch.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sldpack.errors import DataError, UsageError
from sldpack.format.manifest import Manifest, Preprocessing
from sldpack.format.provenance import training_data_sha256
from sldpack.medical.loaders import ImageSet
from sldpack.medical.patches import (
    DEFAULT_INSIDE_MIN,
    DEFAULT_OUTSIDE_MAX,
    PATCH_CLASS_NAMES,
    PatchConfig,
    PatchIndex,
    PatchSampler,
    build_patch_index,
)

__all__ = ["PATCH_TASK", "PatchSource", "PatchTask", "is_patch_model", "patch_task_from_manifest"]

PATCH_TASK = "patches_inp"
"""Value of ``preprocessing.options["task"]`` for I/N/P patch classifiers."""

_F32 = NDArray[np.float32]
_I64 = NDArray[np.int64]

# --- patch geometry ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class PatchTask:
    """A patch classification task: the labelling grid (a :class:`~sldpack.medical.patches.PatchConfig`:
    window size, stride, thresholds) plus the network input size, as a file records it in
    ``preprocessing.options`` (:meth:`to_options`).

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
    outside_max: float = DEFAULT_OUTSIDE_MAX
    inside_min: float = DEFAULT_INSIDE_MIN

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
    def from_options(cls, options: Mapping[str, Any]) -> PatchTask | None:
        """Read :meth:`to_options` back; ``None`` when the options describe no patch task."""
        if options.get("task") != PATCH_TASK or "patch_size" not in options:
            return None
        try:
            size = int(options["patch_size"])
            out = int(options.get("patch_out_size", size))
            return cls(size=size, stride=int(options.get("patch_stride", max(1, size // 2))),
                       out_size=None if out == size else out,
                       outside_max=float(options.get("outside_max", DEFAULT_OUTSIDE_MAX)),
                       inside_min=float(options.get("inside_min", DEFAULT_INSIDE_MIN)))
        except (TypeError, ValueError) as exc:
            raise UsageError(f"the file's preprocessing.options describe patches badly: {exc}") from exc


def patch_task_from_manifest(manifest: Manifest) -> PatchTask | None:
    """The patch settings a file was distilled with (``None`` for a whole-image classifier)."""
    pre = manifest.preprocessing
    return None if pre is None else PatchTask.from_options(pre.options)


def is_patch_model(manifest: Manifest) -> bool:
    """True when the file is an I/N/P patch classifier (3 classes and patch options, or labels I/N/P)."""
    if patch_task_from_manifest(manifest) is not None:
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

    def __init__(self, images: NDArray[np.uint8], index: PatchIndex, settings: PatchTask, *,
                 mean: float | None = None, std: float | None = None, stats_sample: int = 4096,
                 stats_seed: int = 0, fingerprint: str | None = None) -> None:
        if len(index) == 0:
            raise DataError("no labelled patches (check the masks, the patch size and the thresholds)")
        if index.size != settings.size:
            raise UsageError(f"the patch index has {index.size} px windows, the settings say {settings.size}")
        self.images = images
        self.index = index
        self.settings = settings
        self.sampler = PatchSampler(images, index, out_size=settings.out_size)
        missing = [PATCH_CLASS_NAMES[c] for c, n in enumerate(self.sampler.counts()) if n == 0]
        if missing:
            raise DataError(f"no {'/'.join(missing)} patches in the training images (need I, N and P: "
                            "normal and diseased images, and windows inside and outside the organ)")
        if mean is None or std is None:
            rng = np.random.default_rng(np.random.SeedSequence([stats_seed, 0x57A7]))
            x, _ = self.sampler.sample(min(stats_sample, max(3, len(index))), rng, balanced=True)
            mean = float(x.astype(np.float64).mean()) if mean is None else mean
            std = float(x.astype(np.float64).std()) if std is None else std
        if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
            raise DataError(f"patch statistics mean {mean}, std {std}: are the images constant?")
        self.mean = float(mean)
        self.std = float(std)
        self._fingerprint = fingerprint
        self._data: ImageSet | None = None

    @classmethod
    def from_image_set(cls, data: ImageSet, settings: PatchTask, *,
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
        src = cls(data.images, index, settings, **kwargs)
        if image_ids is None:  # the patches come from every image of ``data``: it is the training data read
            src._data = data
        return src

    def training_data_sha256(self) -> str | None:
        """Spec 5.3.1 digest of the training images, labels and masks the patches are cut from (``None``
        when the source was built from a part of a set's images or from bare arrays)."""
        if self._data is None:
            return None
        d = self._data
        return training_data_sha256(d.images, d.labels, d.masks)

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
        return self.sampler.counts()

    def normalize(self, patches: _F32) -> _F32:
        """``[B, s, s]`` patches in [0, 1] -> network inputs ``float32 [B, 1, s, s]``."""
        x = (patches.astype(np.float32) - np.float32(self.mean)) / np.float32(self.std)
        out: _F32 = np.ascontiguousarray(x[:, None, :, :], dtype=np.float32)
        return out

    def sample(self, k: int, rng: np.random.Generator, *, balanced: bool = True) -> tuple[_F32, _I64]:
        """``k`` preprocessed patches ``float32 [k, 1, s, s]`` and labels ``int64 [k]`` (0 I, 1 N, 2 P).

        Balanced: ``balanced_counts(k, 3)`` per class, without replacement inside a class unless it is too
        small; otherwise uniform over all patches (the natural class mix). See :class:`PatchSampler`.
        """
        patches, labels = self.sampler.sample(k, rng, balanced=balanced)
        return self.normalize(patches), labels

    def examples(self, per_class: int, seed: int = 0) -> tuple[_F32, _I64, _I64]:
        """``per_class`` raw patches of each class (for pictures): ``(patches [B,s,s] in [0,1], labels,
        image ids)``."""
        pos = self.sampler.examples(per_class, np.random.default_rng(np.random.SeedSequence([seed, 0xE4A])))
        patches, labels = self.sampler.cut(pos)
        return patches, labels, self.index.image[pos].astype(np.int64)
