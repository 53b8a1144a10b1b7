"""Torch-free medical-imaging pipeline: phantom data, loaders, I/N/P patches, Eq. (9) detection, metrics,
and PNG montages.

Everything here needs numpy and Pillow only (``pydicom`` for DICOM, imported when a DICOM file is read), so
applications can use it without torch. Typical use::

    import numpy as np
    from sldpack.medical import make_phantom, PatchConfig, index_image_set, PatchSampler

    data = make_phantom(40, size=256, seed=0).to_image_set()
    index = index_image_set(data, PatchConfig(size=32, stride=16))
    sampler = PatchSampler(data.images, index)
    rng = np.random.default_rng(0)
    patches, labels = sampler.sample(64, rng)     # float32 [64, 32, 32] in [0, 1], int64 0/1/2 (I/N/P)
"""

from __future__ import annotations

from sldpack.medical.detection import (
    DEFAULT_DELTA,
    DetectionResults,
    ImageResult,
    count_patch_classes,
    decide,
    detect_images,
    image_scores,
)
from sldpack.medical.loaders import (
    ImageSet,
    apply_window,
    load_folder,
    load_images,
    load_medmnist_npz,
    load_npz,
    read_dicom,
    read_image_file,
    split_indices,
)
from sldpack.medical.metrics import (
    BinaryMetrics,
    PatchMetrics,
    binary_metrics,
    confusion_matrix,
    harmonic_mean,
    patch_metrics,
    roc_auc,
)
from sldpack.medical.montage import draw_patch_boxes, montage_image, outline_mask, save_montage
from sldpack.medical.patches import (
    PATCH_CLASS_NAMES,
    PATCH_I,
    PATCH_N,
    PATCH_P,
    PatchChunk,
    PatchConfig,
    PatchIndex,
    PatchSampler,
    area_resize,
    build_patch_index,
    cut_patches,
    grid_positions,
    index_image_set,
    integral_image,
    iter_image_patches,
    label_patch_grid,
    organ_fraction,
)
from sldpack.medical.phantom import PhantomSet, make_phantom

__all__ = [
    "DEFAULT_DELTA",
    "PATCH_CLASS_NAMES",
    "PATCH_I",
    "PATCH_N",
    "PATCH_P",
    "BinaryMetrics",
    "DetectionResults",
    "ImageResult",
    "ImageSet",
    "PatchChunk",
    "PatchConfig",
    "PatchIndex",
    "PatchMetrics",
    "PatchSampler",
    "PhantomSet",
    "apply_window",
    "area_resize",
    "binary_metrics",
    "build_patch_index",
    "confusion_matrix",
    "count_patch_classes",
    "cut_patches",
    "decide",
    "detect_images",
    "draw_patch_boxes",
    "grid_positions",
    "harmonic_mean",
    "image_scores",
    "index_image_set",
    "integral_image",
    "iter_image_patches",
    "label_patch_grid",
    "load_folder",
    "load_images",
    "load_medmnist_npz",
    "load_npz",
    "make_phantom",
    "montage_image",
    "organ_fraction",
    "outline_mask",
    "patch_metrics",
    "read_dicom",
    "read_image_file",
    "roc_auc",
    "save_montage",
    "split_indices",
]
