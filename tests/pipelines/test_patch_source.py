"""The I/N/P patch task (PatchTask) and the patch data source (PatchSource)."""

from __future__ import annotations

import numpy as np
import pytest

from sldpack.errors import DataError, UsageError
from sldpack.medical.loaders import ImageSet
from sldpack.medical.patches import PATCH_CLASS_NAMES
from sldpack.pipelines.patch_source import PATCH_TASK, PatchSource, PatchTask
from sldpack.pipelines.sources import RealSource, resolve_source


def test_patch_task_round_trip_through_options() -> None:
    s = PatchTask(size=64, stride=32, out_size=32, outside_max=0.02, inside_min=0.9)
    opts = s.to_options()
    assert opts["task"] == PATCH_TASK
    assert opts["patch_out_size"] == 32
    assert PatchTask.from_options(opts) == s
    assert PatchTask.from_options({"scale": 255.0}) is None
    with pytest.raises(UsageError):
        PatchTask(size=16, stride=8, out_size=32)


def test_patch_source_is_a_real_source_with_balanced_deterministic_batches(toy_patch_set: ImageSet,
                                                                          toy_levels: np.ndarray) -> None:
    data = toy_patch_set
    src = PatchSource.from_image_set(data, PatchTask(size=8, stride=8))
    assert isinstance(src, RealSource)
    # per image: 2 rows x 4 columns of windows; left 2 columns organ (N or P), right 2 outside (I)
    assert src.counts() == [16, 8, 8]
    x, y = src.sample(30, np.random.default_rng(1))
    assert x.shape == (30, 1, 8, 8)
    assert x.dtype == np.float32
    assert np.bincount(y, minlength=3).tolist() == [10, 10, 10]
    x2, y2 = src.sample(30, np.random.default_rng(1))
    assert np.array_equal(x, x2)
    assert np.array_equal(y, y2)
    # the labels are right: each patch is constant at its class's level
    raw = x[:, 0].mean(axis=(1, 2)) * src.std + src.mean
    assert np.allclose(raw, toy_levels[y], atol=1e-5)
    pre = src.preprocessing
    assert pre.options["patch_size"] == 8
    assert pre.image_size == (8, 8)
    assert pre.mean == (src.mean,)


def test_patch_source_needs_every_class(toy_patch_set: ImageSet) -> None:
    data = toy_patch_set.subset([0, 2])  # normal images only: no P patches
    with pytest.raises(DataError, match="no P patches"):
        PatchSource.from_image_set(data, PatchTask(size=8, stride=8))


def test_patch_source_out_size_and_per_class_subset(toy_patch_set: ImageSet) -> None:
    data = toy_patch_set
    src = PatchSource.from_image_set(data, PatchTask(size=8, stride=4, out_size=4), per_class=3)
    assert src.counts() == [3, 3, 3]
    assert src.image_size == (4, 4)
    x, _ = src.sample(6, np.random.default_rng(0))
    assert x.shape == (6, 1, 4, 4)


def test_plugin_source_for_sldp_distill() -> None:
    src = resolve_source("sldpack.pipelines.inputs:phantom_patch_source:n=8,size=32,patch=8,stride=8", "train")
    assert isinstance(src, PatchSource)
    assert src.class_names == PATCH_CLASS_NAMES
    assert src.preprocessing.options["patch_stride"] == 8
    with pytest.raises(UsageError, match="unknown source option"):
        resolve_source("sldpack.pipelines.inputs:phantom_patch_source:n=8,colour=red", "train")
