"""One data vocabulary: every data-reading command takes the same data and runtime options (names, defaults,
help), and each of them reads the same small images/masks/labels ``.npz`` with the same flags."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from sldpack.cli.main import cli, main
from sldpack.cli.options import option_flag
from sldpack.medical.phantom import make_phantom
from sldpack.pipelines.datasets import select_split
from sldpack.pipelines.inputs import DataSpec, RuntimeSpec

DATA_COMMANDS = ("distill", "train", "eval", "audit", "demo")
N_IMAGES = 12
# the same data flags on every command: patches of 16 px at stride 8, shrunk to 8 px
DATA = ["--patch-size", "16", "--stride", "8", "--out-size", "8", "--train-fraction", "0.5", "--split-seed", "3"]
TINY_DISTILL = ["--arch-option", "depth=1", "--arch-option", "width=4", "--steps", "1", "--epochs", "1",
                "--iterations", "2", "-K", "6", "--checkpoint-every", "0", "--threads", "1"]


@pytest.fixture(autouse=True)
def _restore_threads() -> Any:
    old = torch.get_num_threads()
    yield
    torch.set_num_threads(old)


def _command(name: str) -> click.Command:
    cmd = cli.get_command(click.Context(cli), name)
    assert cmd is not None
    return cmd


def _options(cmd: click.Command) -> dict[str, click.Option]:
    return {p.name: p for p in cmd.params if isinstance(p, click.Option) and p.name is not None}


@pytest.mark.parametrize("spec", [DataSpec, RuntimeSpec])
@pytest.mark.parametrize("name", DATA_COMMANDS)
def test_every_data_command_has_the_same_options(name: str, spec: type[Any]) -> None:
    opts = _options(_command(name))
    for f in dataclasses.fields(spec):
        assert f.name in opts, f"sldp {name} lacks {option_flag(f.name)}"
        o = opts[f.name]
        assert o.opts == [option_flag(f.name)], o.opts
        assert o.default == f.default, (name, f.name)
        assert o.help == f.metadata["help"], (name, f.name)


def test_source_is_documented_with_an_example() -> None:
    r = CliRunner().invoke(cli, ["distill", "--help"])
    assert r.exit_code == 0
    assert "--source NAME[:ARG]" in r.output
    assert "phantom:n=60" in r.output


@pytest.fixture(scope="module")
def npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny images/masks/labels npz (the layout of montgomery_512.npz), 12 phantom X-rays of 48 px."""
    s = make_phantom(N_IMAGES, size=48, seed=5).to_image_set()
    path = tmp_path_factory.mktemp("data") / "xray.npz"
    np.savez(path, images=s.images, masks=s.masks, labels=s.labels)
    return path


@pytest.fixture(scope="module")
def distilled(npz: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    r = CliRunner().invoke(cli, ["distill", "--data", str(npz), *DATA, *TINY_DISTILL, "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    return out / "distilled.sldp"


def _expected_split_sizes() -> tuple[int, int]:
    s = make_phantom(N_IMAGES, size=48, seed=5).to_image_set()
    tr, _ = select_split(s, "train", train_fraction=0.5, seed=3)
    te, _ = select_split(s, "test", train_fraction=0.5, seed=3)
    return len(tr), len(te)


@pytest.mark.parametrize("name", DATA_COMMANDS)
def test_every_data_command_reads_the_same_npz(name: str, npz: Path, distilled: Path, tmp_path: Path) -> None:
    n_train, n_test = _expected_split_sizes()
    runner = CliRunner()
    if name == "distill":
        r = runner.invoke(cli, ["distill", "--data", str(npz), *DATA, *TINY_DISTILL, "--out", str(tmp_path / "r")])
        assert r.exit_code == 0, r.output
        # what was read, before the run: images per split and the I/N/P patch counts of each split
        assert f"data: {npz}, {N_IMAGES} images" in r.output
        assert f"train  {n_train} images" in r.output and f"test   {n_test} images" in r.output
        assert r.output.count("patches 16 px stride 8: I ") == 2
        assert (tmp_path / "r" / "distilled.sldp").is_file()
    elif name == "train":
        r = runner.invoke(cli, ["train", "--data", str(npz), *DATA, "--steps", "2", "--batch-size", "6",
                                "--arch-option", "depth=1", "--arch-option", "width=4", "--threads", "1", "--json"])
        assert r.exit_code == 0, r.output
        doc = json.loads(r.output[r.output.index("{"):])
        assert doc["data"]["source"] == str(npz) and doc["data"]["images"] == n_train
        assert doc["eval"]["data"]["images"] == n_test
        assert doc["arch"]["image_size"] == [8, 8]  # --out-size reached the network
    elif name == "eval":
        r = runner.invoke(cli, ["eval", str(distilled), "--data", str(npz), *DATA, "--threads", "1", "--json", "-q"])
        assert r.exit_code == 0, r.output
        doc = json.loads(r.output)
        assert doc["data"]["source"] == str(npz) and doc["data"]["images"] == n_test
        assert doc["settings"]["patch_size"] == 16 and doc["settings"]["stride"] == 8
    elif name == "audit":
        r = runner.invoke(cli, ["audit", str(distilled), "--data", str(npz), "--split", "train", "--train-fraction",
                                "0.5", "--split-seed", "3", "--stride", "8", "--json", "--no-sheet"])
        assert r.exit_code in (0, 1), r.output
        doc = json.loads(r.output)
        # 48 px images, 8 px windows (the distilled size) at stride 8: 6 x 6 windows per train image
        assert doc["n_real"] == n_train * 36
        assert doc["source"]["data"] == str(npz)
    else:
        r = runner.invoke(cli, ["demo", "--fast", "--data", str(npz), *DATA, "--iterations", "2", "--out",
                                str(tmp_path / "demo"), "--json", "-q"])
        assert r.exit_code == 0, r.output
        doc = json.loads(r.output)
        assert doc["data"]["train_images"] == n_train and doc["data"]["test_images"] == n_test
        assert doc["patches"]["size"] == 16 and doc["config"]["out_size"] == 8


def _exit(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return int(info.value.code or 0), capsys.readouterr().err


def test_patch_options_on_data_without_masks_is_a_usage_error(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mnist.npz"
    rng = np.random.default_rng(0)
    np.savez(path, train_images=rng.integers(0, 256, (8, 12, 12), dtype=np.uint8), train_labels=np.arange(8) % 2)
    code, err = _exit(["distill", "--data", str(path), "--patch-size", "8", "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert "no organ masks" in err


@pytest.mark.parametrize("name", ["distill", "train", "eval"])
def test_threads_below_one_is_rejected_everywhere(name: str, npz: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    args = {"distill": ["distill", "--out", str(tmp_path / "o")], "train": ["train"],
            "eval": ["eval", str(tmp_path / "none.sldp")]}[name]
    code, err = _exit([*args, "--data", str(npz), "--threads", "0"], capsys)
    assert code == 2
    assert "--threads" in err


def test_an_internal_error_exits_3_with_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import sldpack.pipelines.selection as selection

    def boom(*_a: Any, **_k: Any) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(selection, "open_for_selection", boom)  # distill opens its data through it
    monkeypatch.delenv("SLDP_TRACEBACK", raising=False)
    code, err = _exit(["distill", "--phantom", "4", "--out", str(tmp_path / "unused")], capsys)
    assert code == 3
    assert err.strip().splitlines() == [err.strip()] and "SLDP_TRACEBACK=1" in err and "ZeroDivisionError" in err
    monkeypatch.setenv("SLDP_TRACEBACK", "1")
    code, err = _exit(["distill", "--phantom", "4", "--out", str(tmp_path / "unused")], capsys)
    assert code == 3
    assert not (tmp_path / "unused").exists()  # the error came before anything was written
    assert "Traceback (most recent call last)" in err
