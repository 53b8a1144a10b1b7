"""Evaluation of patch classifiers (patch level + Eq. 9) and whole-image classifiers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sldpack.errors import DataError
from sldpack.format.manifest import Preprocessing
from sldpack.medical.loaders import ImageSet
from sldpack.pipelines.evaluate import evaluate, evaluate_patches, evaluate_whole_images
from sldpack.pipelines.patch_source import PatchSource, PatchTask


class _Oracle(nn.Module):
    """Classifies a patch by its mean intensity (nearest of the three organ levels): the right answer."""

    def __init__(self, mean: float, std: float, levels: np.ndarray) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.mean, self.std, self.levels = mean, std, levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = x.mean(dim=(1, 2, 3)) * self.std + self.mean
        centers = torch.tensor(self.levels, dtype=x.dtype)
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


def test_oracle_gets_everything_right_at_patch_and_image_level(toy_patch_set: ImageSet,
                                                               toy_levels: np.ndarray) -> None:
    data = toy_patch_set
    settings = PatchTask(size=8, stride=4)
    src = PatchSource.from_image_set(data, settings)
    oracle = _Oracle(src.mean, src.std, toy_levels)
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


def test_constant_model_counts_and_eq9(toy_patch_set: ImageSet) -> None:
    data = toy_patch_set
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


def test_evaluate_without_masks_uses_the_whole_grid_and_no_patch_metrics(toy_patch_set: ImageSet) -> None:
    d = toy_patch_set
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
