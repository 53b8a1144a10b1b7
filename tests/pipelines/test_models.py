"""Baseline training and the trained-model checkpoint of ``sldp train --save``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sldpack.errors import DataError
from sldpack.medical.loaders import ImageSet
from sldpack.medical.patches import PATCH_CLASS_NAMES
from sldpack.pipelines.models import TrainedModel, load_trained_model, save_trained_model, train_model
from sldpack.pipelines.patch_source import PatchSource, PatchTask


def test_trained_model_checkpoint_round_trip(tmp_path: Path, toy_patch_set: ImageSet) -> None:
    data = toy_patch_set
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
    from sldpack.nn.network import save_safetensors

    save_safetensors(other, model.module.state_dict())
    with pytest.raises(DataError, match="sldp train --save"):
        load_trained_model(other)
