"""The data vocabulary as a library: layout detection, patch-setting precedence, plug-ins built on the same
spec, and what ``describe_data`` says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sldpack.errors import DataError, UsageError
from sldpack.medical.phantom import make_phantom
from sldpack.pipelines.datasets import detect_format, load_data
from sldpack.pipelines.inputs import DataSpec, describe_data, open_source
from sldpack.pipelines.patch_source import PatchSource, PatchTask
from sldpack.pipelines.sources import ArraySource, resolve_source


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    s = make_phantom(10, size=48, seed=1).to_image_set()
    np.savez(tmp_path / "xray.npz", images=s.images, masks=s.masks, labels=s.labels)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "mnist.npz", train_images=rng.integers(0, 256, (8, 12, 12), dtype=np.uint8),
             train_labels=np.arange(8) % 2, test_images=rng.integers(0, 256, (4, 12, 12), dtype=np.uint8),
             test_labels=np.arange(4) % 2)
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    (tmp_path / "notes.txt").write_text("x")
    return {"xray": tmp_path / "xray.npz", "mnist": tmp_path / "mnist.npz", "other": tmp_path / "other.npz",
            "txt": tmp_path / "notes.txt", "dir": tmp_path}


def test_detect_format(files: dict[str, Path]) -> None:
    assert detect_format(files["xray"]) == "npz"
    assert detect_format(files["mnist"]) == "medmnist"
    assert detect_format(files["dir"]) == "folder"
    for bad in ("other", "txt"):
        with pytest.raises(DataError):
            detect_format(files[bad])
    with pytest.raises(DataError, match="no such file"):
        detect_format(files["dir"] / "missing.npz")
    with pytest.raises(UsageError, match="data format"):
        load_data(files["xray"], fmt="zarr")


def test_patch_task_precedence() -> None:
    base = PatchTask(size=64, stride=16, out_size=32, outside_max=0.02, inside_min=0.9)
    assert DataSpec().patch_task(base) == base  # the file's geometry when nothing is given
    assert DataSpec(stride=8).patch_task(base) == PatchTask(64, 8, 32, 0.02, 0.9)
    # a new size resets the size-dependent parts (stride half of it, no shrinking) but keeps thresholds
    assert DataSpec(patch_size=20).patch_task(base) == PatchTask(20, 10, None, 0.02, 0.9)
    assert DataSpec().patch_task() == PatchTask(32, 16)
    assert DataSpec().patch_task(default_size=None) is None


def test_one_source_and_what_kind(files: dict[str, Path]) -> None:
    with pytest.raises(UsageError, match="exactly one"):
        open_source(DataSpec(), "train")
    with pytest.raises(UsageError, match="exactly one"):
        open_source(DataSpec(data=str(files["xray"]), phantom=4), "train")
    patches = open_source(DataSpec(data=str(files["xray"]), patch_size=16, stride=8), "train")
    assert isinstance(patches.source, PatchSource) and patches.settings == PatchTask(16, 8)
    whole = open_source(DataSpec(data=str(files["mnist"])), "test")
    assert isinstance(whole.source, ArraySource) and len(whole.source) == 4
    with pytest.raises(UsageError, match="no organ masks"):
        open_source(DataSpec(data=str(files["mnist"]), stride=4), "train")


def test_plugins_are_the_same_spec(files: dict[str, Path]) -> None:
    a = resolve_source(f"patches:{files['xray']},patch=16,stride=8,out=8", "train")
    b = open_source(DataSpec(data=str(files["xray"]), patch_size=16, stride=8, out_size=8), "train").source
    assert a.fingerprint == b.fingerprint and a.preprocessing == b.preprocessing
    c = resolve_source("phantom:n=8,size=32,patch=8,seed=2", "test")
    d = open_source(DataSpec(phantom=8, phantom_size=32, phantom_seed=2, split_seed=2, patch_size=8), "test").source
    assert c.fingerprint == d.fingerprint
    with pytest.raises(UsageError, match="not a number"):
        resolve_source("phantom:n=8,inside_min=high", "train")


def test_describe_data(files: dict[str, Path]) -> None:
    spec = DataSpec(data=str(files["xray"]), patch_size=16, stride=8)
    lines = describe_data(spec)
    assert lines[0].startswith(f"data: {files['xray']}, 10 images")
    assert [ln.split()[0] for ln in lines[1:]] == ["train", "test"]
    assert all("I " in ln and "/ N " in ln and "/ P " in ln for ln in lines[1:])
    n_train = int(lines[1].split()[1])
    assert n_train + int(lines[2].split()[1]) == 10
    med = describe_data(DataSpec(data=str(files["mnist"])))
    assert "MedMNIST" in med[0] and med[1].split()[:2] == ["train", "8"] and "0: 4, 1: 4" in med[1]


def test_one_key_value_parser() -> None:
    from sldpack.cli.common import parse_key_values as cli_parser
    from sldpack.pipelines.inputs import parse_key_values

    assert cli_parser is parse_key_values
    assert parse_key_values(["width=64", "norm=batch"], option="--arch-option") == {"width": 64, "norm": "batch"}
    assert parse_key_values(["a.npz", "patch=8"], option="x", first_key="path", convert_ints=False) == {
        "path": "a.npz", "patch": "8"}
    with pytest.raises(UsageError, match="--arch-option wants KEY=VALUE"):
        parse_key_values(["width"], option="--arch-option")
    with pytest.raises(UsageError, match="KEY=VALUE"):
        parse_key_values(["a.npz", "oops"], option="x", first_key="path")
