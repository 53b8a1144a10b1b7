"""Real-data sources: preprocessing, class-balanced sampling, npz loading, plug-in resolution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sldpack.errors import DataError, UsageError
from sldpack.pipelines.sources import (
    ArraySource,
    RealSource,
    balanced_counts,
    load_npz,
    register_source,
    resolve_source,
)


def test_balanced_counts() -> None:
    assert balanced_counts(7, 3) == [3, 2, 2]
    assert balanced_counts(2, 3) == [1, 1, 0]
    assert sum(balanced_counts(64, 5)) == 64


def test_array_source_preprocessing_and_sampling() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 5, 6, 3)).astype(np.uint8)  # channels last
    y = np.array([0] * 25 + [1] * 5)
    src = ArraySource(x, y, channels_last=True)
    assert isinstance(src, RealSource)
    assert src.channels == 3
    assert src.image_size == (5, 6)
    assert src.class_count() == [25, 5]
    # (x / 255 - mean) / std per channel, in float32
    mean = np.asarray(src.mean, np.float32)[None, :, None, None]
    std = np.asarray(src.std, np.float32)[None, :, None, None]
    want = (x.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255) - mean) / std
    np.testing.assert_array_equal(src.inputs, want.astype(np.float32))
    np.testing.assert_allclose(src.inputs.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    xb, yb = src.sample(10, np.random.default_rng(1))
    assert xb.shape == (10, 3, 5, 6)
    assert xb.dtype == np.float32
    assert np.bincount(yb).tolist() == [5, 5]  # balanced despite the 25:5 mix
    _, yn = src.sample(300, np.random.default_rng(1), balanced=False)
    assert 0.7 < (yn == 0).mean() < 0.95  # natural mix
    pre = src.preprocessing
    assert pre.channels == 3
    assert pre.image_size == (5, 6)


def test_array_source_errors() -> None:
    with pytest.raises(DataError):
        ArraySource(np.zeros((3, 4)), np.zeros(3, np.int64))
    with pytest.raises(DataError):
        ArraySource(np.zeros((3, 4, 4), np.uint8), np.zeros(2, np.int64))
    with pytest.raises(DataError, match="std"):
        ArraySource(np.zeros((3, 4, 4), np.uint8), np.zeros(3, np.int64))
    src = ArraySource(np.arange(48, dtype=np.uint8).reshape(3, 4, 4), np.zeros(3, np.int64), num_classes=2)
    with pytest.raises(DataError, match="no image"):
        src.sample(4, np.random.default_rng(0))


def test_load_npz_and_registry(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(p, train_images=rng.integers(0, 255, (8, 4, 4)).astype(np.uint8),
             train_labels=np.array([[0], [1]] * 4, np.uint8))
    src = load_npz(p, "train", class_names=("a", "b"))
    assert src.class_names == ("a", "b")
    assert len(src.fingerprint or "") == 64
    with pytest.raises(DataError, match="splits present"):
        load_npz(p, "test")
    register_source("toy", lambda arg, split: load_npz(arg or p, split))
    assert resolve_source("toy", "train").num_classes == 2
    with pytest.raises(UsageError):
        resolve_source("nothing-here")
    with pytest.raises(UsageError):
        resolve_source("no.such.module:factory")


def test_pneumonia_npz(shared_data: Path) -> None:
    train = load_npz(shared_data / "pneumoniamnist_28.npz", "train")
    test = load_npz(shared_data / "pneumoniamnist_28.npz", "test", mean=train.mean, std=train.std)
    assert len(train) == 4708
    assert train.class_count() == [1214, 3494]
    assert test.class_count() == [234, 390]
    assert test.preprocessing.mean == train.preprocessing.mean
    assert train.image_size == (28, 28)


def test_builtin_source_names_resolve() -> None:
    src = resolve_source("phantom:n=12,size=64,patch=16", "train")
    assert src.class_names == ("I", "N", "P")
    assert src.image_size == (16, 16)
    with pytest.raises(UsageError, match="needs a path"):
        resolve_source("patches", "train")
