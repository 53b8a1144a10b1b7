"""Loading data sets (every layout, clear errors) and the split rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sldpack.errors import DataError, UsageError
from sldpack.pipelines.datasets import load_data, phantom_data, select_split


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
