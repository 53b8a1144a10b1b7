"""Patch source, evaluation (patch level + Eq. 9), data selection and trained-model checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from sldpack.errors import DataError, UsageError
from sldpack.format.manifest import Preprocessing
from sldpack.medical.loaders import ImageSet
from sldpack.medical.patches import PATCH_CLASS_NAMES
from sldpack.pipelines.medical import (
    PATCH_TASK,
    PatchSource,
    PatchTask,
    TrainedModel,
    evaluate,
    evaluate_patches,
    evaluate_whole_images,
    load_data,
    load_trained_model,
    phantom_data,
    save_trained_model,
    select_split,
    train_model,
)
from sldpack.pipelines.sources import RealSource, resolve_source

# organ intensities of the constructed set: outside 20, normal organ 120, diseased organ 220
_LEVELS = np.array([20.0, 120.0, 220.0]) / 255.0


def _toy_set() -> ImageSet:
    """4 images 16x32: organ = left 16 columns; images 1 and 3 diseased (brighter organ)."""
    n, h, w = 4, 16, 32
    images = np.full((n, h, w), 20, dtype=np.uint8)
    masks = np.zeros((n, h, w), dtype=np.uint8)
    labels = np.array([0, 1, 0, 1], dtype=np.int64)
    for i in range(n):
        masks[i, :, :16] = 1
        images[i, :, :16] = 220 if labels[i] else 120
    return ImageSet(images=images, masks=masks, labels=labels, names=tuple(f"img{i}" for i in range(n)))


class _Oracle(nn.Module):
    """Classifies a patch by its mean intensity (nearest of the three organ levels): the right answer."""

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.mean, self.std = mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = x.mean(dim=(1, 2, 3)) * self.std + self.mean
        centers = torch.tensor(_LEVELS, dtype=x.dtype)
        return -((raw[:, None] - centers[None, :]) ** 2) * 1e4 * self.scale


class _Constant(nn.Module):
    """Always predicts class ``c``."""

    def __init__(self, c: int, k: int = 3) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(k))
        with torch.no_grad():
            self.bias[c] = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(x.shape[0], -1)


def test_patch_task_round_trip_through_options() -> None:
    s = PatchTask(size=64, stride=32, out_size=32, outside_max=0.02, inside_min=0.9)
    opts = s.to_options()
    assert opts["task"] == PATCH_TASK
    assert opts["patch_out_size"] == 32
    assert PatchTask.from_options(opts) == s
    assert PatchTask.from_options({"scale": 255.0}) is None
    with pytest.raises(UsageError):
        PatchTask(size=16, stride=8, out_size=32)


def test_patch_source_is_a_real_source_with_balanced_deterministic_batches() -> None:
    data = _toy_set()
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
    assert np.allclose(raw, _LEVELS[y], atol=1e-5)
    pre = src.preprocessing
    assert pre.options["patch_size"] == 8
    assert pre.image_size == (8, 8)
    assert pre.mean == (src.mean,)


def test_patch_source_needs_every_class() -> None:
    data = _toy_set().subset([0, 2])  # normal images only: no P patches
    with pytest.raises(DataError, match="no P patches"):
        PatchSource.from_image_set(data, PatchTask(size=8, stride=8))


def test_patch_source_out_size_and_per_class_subset() -> None:
    data = _toy_set()
    src = PatchSource.from_image_set(data, PatchTask(size=8, stride=4, out_size=4), per_class=3)
    assert src.counts() == [3, 3, 3]
    assert src.image_size == (4, 4)
    x, _ = src.sample(6, np.random.default_rng(0))
    assert x.shape == (6, 1, 4, 4)


def test_oracle_gets_everything_right_at_patch_and_image_level() -> None:
    data = _toy_set()
    settings = PatchTask(size=8, stride=4)
    src = PatchSource.from_image_set(data, settings)
    oracle = _Oracle(src.mean, src.std)
    ev = evaluate_patches(oracle, data, settings, mean=src.mean, std=src.std, windows="labelled")
    assert ev.patch is not None
    assert ev.patch.accuracy == 1.0
    assert ev.image is not None
    assert (ev.image.sensitivity, ev.image.specificity, ev.image.hm, ev.image.auc) == (1.0, 1.0, 1.0, 1.0)
    assert ev.detection is not None
    assert ev.detection.decisions.tolist() == [0, 1, 0, 1]
    # windows straddling the organ edge (columns 12..19) are discarded in "labelled" mode only
    ev_all = evaluate_patches(oracle, data, settings, mean=src.mean, std=src.std, windows="all")
    assert ev_all.n_inputs == 4 * 3 * 7 > ev.n_inputs == ev.n_labelled
    assert ev_all.patch is not None
    assert ev_all.patch.accuracy == 1.0
    # chunking changes nothing
    ev1 = evaluate_patches(oracle, data, settings, mean=src.mean, std=src.std, chunk=1)
    assert ev1.per_image == ev.per_image


def test_constant_model_counts_and_eq9() -> None:
    data = _toy_set()
    settings = PatchTask(size=8, stride=8)
    always_p = _Constant(2)
    ev = evaluate_patches(always_p, data, settings, mean=0.5, std=0.2)
    assert ev.patch is not None
    assert ev.patch.recall == (0.0, 0.0, 1.0)
    assert ev.image is not None
    assert (ev.image.sensitivity, ev.image.specificity) == (1.0, 0.0)
    assert [r["num_P"] for r in ev.per_image] == [8, 8, 8, 8]
    always_i = _Constant(0)
    ev = evaluate_patches(always_i, data, settings, mean=0.5, std=0.2)
    assert ev.detection is not None
    assert ev.detection.scores.tolist() == [0.0] * 4  # N + P = 0 -> score 0 -> negative
    header = ev.to_csv_text().splitlines()[0]
    assert header == "name,true_label,num_I,num_N,num_P,score,decision"


def test_evaluate_without_masks_uses_the_whole_grid_and_no_patch_metrics() -> None:
    d = _toy_set()
    data = ImageSet(images=d.images, masks=None, labels=d.labels, names=d.names)
    ev = evaluate_patches(_Constant(2), data, PatchTask(8, 8), mean=0.5, std=0.2)
    assert ev.settings["windows"] == "all"
    assert ev.patch is None
    assert ev.n_inputs == 4 * 8
    with pytest.raises(DataError, match="masks"):
        evaluate_patches(_Constant(2), data, PatchTask(8, 8), mean=0.5, std=0.2, windows="labelled")


def test_whole_image_task() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (6, 8, 8)).astype(np.uint8)
    data = ImageSet(images=images, masks=None, labels=np.array([0, 1, 0, 1, 1, 1]),
                    names=tuple(f"t{i}" for i in range(6)))
    ev = evaluate_whole_images(_Constant(1, k=2), data, mean=(0.5,), std=(0.25,), class_names=("neg", "pos"),
                               input_size=(4, 4))
    assert ev.task == "images"
    assert ev.settings["resized"] is True
    assert ev.image is not None
    assert (ev.image.tp, ev.image.fp) == (4, 2)
    assert ev.patch is not None
    assert ev.patch.recall == (0.0, 1.0)
    assert ev.to_csv_text().splitlines()[0] == "name,true_label,predicted,p_neg,p_pos"
    # through the dispatcher: a manifest-less preprocessing without patch options is the whole-image task
    pre = Preprocessing(mean=(0.5,), std=(0.25,), image_size=(8, 8), channels=1, options={"scale": 255.0})
    ev2 = evaluate(_Constant(1, k=2), pre, data, class_names=("neg", "pos"))
    assert ev2.image == ev.image


def test_select_split_is_a_stratified_partition() -> None:
    full = phantom_data(20, 32, seed=3).data
    tr, rule = select_split(full, "train", train_fraction=0.7, seed=1)
    te, _ = select_split(full, "test", train_fraction=0.7, seed=1)
    assert "stratified" in rule
    assert set(tr.names).isdisjoint(te.names)
    assert set(tr.names) | set(te.names) == set(full.names)
    assert (len(tr), len(te)) == (14, 6)
    assert int(te.labels.sum()) == 3  # 10 diseased of 20 -> 3 of the 6 test images
    assert select_split(full, "test", train_fraction=0.7, seed=1)[0].names == te.names
    with pytest.raises(UsageError):
        select_split(full, "validation")


def test_load_data_formats_and_errors(tmp_path: Path) -> None:
    ph = phantom_data(6, 32, seed=0).data
    npz = tmp_path / "set.npz"
    np.savez(npz, images=ph.images, masks=ph.masks, labels=ph.labels)
    sel = load_data(npz, split="all")
    assert len(sel.data) == 6
    assert sel.data.masks is not None
    mm = tmp_path / "mnist.npz"
    np.savez(mm, train_images=ph.images, train_labels=ph.labels[:, None], test_images=ph.images[:2],
             test_labels=ph.labels[:2, None])
    sel = load_data(mm, split="test")
    assert sel.medmnist
    assert len(sel.data) == 2
    with pytest.raises(UsageError, match="splits"):
        load_data(mm, split="val")
    png = tmp_path / "one.png"
    Image.fromarray(ph.images[0]).save(png)
    one = load_data(png)
    assert one.data.labels.tolist() == [-1]
    with pytest.raises(DataError, match="no such file"):
        load_data(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"not an \.npz"):
        load_data(bad)


def test_plugin_source_for_sldp_distill() -> None:
    src = resolve_source("sldpack.pipelines.medical:phantom_patch_source:n=8,size=32,patch=8,stride=8", "train")
    assert isinstance(src, PatchSource)
    assert src.class_names == PATCH_CLASS_NAMES
    assert src.preprocessing.options["patch_stride"] == 8
    with pytest.raises(UsageError, match="unknown source option"):
        resolve_source("sldpack.pipelines.medical:phantom_patch_source:n=8,colour=red", "train")


def test_trained_model_checkpoint_round_trip(tmp_path: Path) -> None:
    data = _toy_set()
    src = PatchSource.from_image_set(data, PatchTask(size=8, stride=8))
    model = train_model(src, arch_options={"depth": 1, "width": 4}, steps=3, batch_size=6, seed=0)
    assert isinstance(model, TrainedModel)
    path = tmp_path / "m.safetensors"
    nbytes = save_trained_model(path, model)
    assert path.stat().st_size == nbytes
    back = load_trained_model(path)
    assert back.arch == model.arch
    assert back.preprocessing == model.preprocessing
    assert back.class_names == PATCH_CLASS_NAMES
    x, _ = src.sample(6, np.random.default_rng(0))
    with torch.no_grad():
        a = model.module(torch.from_numpy(x))
        b = back.module(torch.from_numpy(x))
    assert torch.equal(a, b)
    other = tmp_path / "plain.safetensors"
    from sldpack.nn.replay import save_safetensors

    save_safetensors(other, model.module.state_dict())
    with pytest.raises(DataError, match="sldp train --save"):
        load_trained_model(other)
