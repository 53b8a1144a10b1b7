"""``sldp eval``, ``sldp train`` and ``sldp demo`` end to end on tiny phantom data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import sldpack
from sldpack.cli.main import cli, main
from sldpack.nn.distill import DistillConfig, distill
from sldpack.pipelines.inputs import phantom_patch_source
from sldpack.pipelines.sources import ArraySource

PHANTOM = ["--phantom", "10", "--phantom-size", "64", "--phantom-seed", "0"]
TINY = DistillConfig(arch_options={"depth": 2, "width": 8}, steps=2, epochs=1, iterations=3, batch_real=12,
                     lr=0.05, inner_lr=0.05, device="cpu", checkpoint_every=0)


@pytest.fixture(autouse=True)
def _restore_threads() -> object:
    old = torch.get_num_threads()
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def patch_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny distilled I/N/P patch file (the distiller, 3 iterations)."""
    src = phantom_patch_source("n=10,size=64,patch=16,stride=8", "train")
    res = distill(src, TINY)
    path = tmp_path_factory.mktemp("sldp") / "patch.sldp"
    res.write(path)
    return path


def test_eval_uses_the_files_calibrated_delta_unless_delta_is_given(patch_file: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from sldpack.format.container import assemble

    # the same file with a calibrated decision rule added (as --select val-hm on patch data writes it)
    with sldpack.open(patch_file) as f:
        rule = sldpack.DecisionRule(rule="eq9", positive="P", negative="N", ignored=("I",), delta=0.125,
                                    delta_source="calibrated",
                                    calibration=sldpack.Calibration("max_hm", images=4, hm=0.5, iteration=3))
        data = patch_file.read_bytes()
        payload = data[f.payload_offset:]
        calibrated = tmp_path / "calibrated.sldp"
        calibrated.write_bytes(assemble(replace(f.manifest, decision=rule), payload))
    r = CliRunner().invoke(cli, ["eval", str(calibrated), *PHANTOM, "--json", "-q"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["settings"]["delta"] == 0.125 and "decision rule" in doc["delta_source"]
    r = CliRunner().invoke(cli, ["eval", str(calibrated), *PHANTOM, "--json", "-q", "--delta", "0.4"])
    doc = json.loads(r.output)
    assert doc["settings"]["delta"] == 0.4 and doc["delta_source"] == "--delta"
    r = CliRunner().invoke(cli, ["eval", str(patch_file), *PHANTOM, "--json", "-q"])  # no rule: the paper's
    doc = json.loads(r.output)
    assert doc["settings"]["delta"] == 0.4 and "paper" in doc["delta_source"]
    r = CliRunner().invoke(cli, ["eval", str(calibrated), *PHANTOM, "-q"])
    assert "decision     delta 0.125: the file's decision rule (eq9: P/(N+P) >= 0.125" in r.output


def _exit_code(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return int(info.value.code or 0), capsys.readouterr().err


def test_manifest_carries_the_patch_geometry(patch_file: Path) -> None:
    with sldpack.open(patch_file) as f:
        pre = f.manifest.preprocessing
        assert pre is not None
        assert pre.options["patch_size"] == 16
        assert pre.options["patch_stride"] == 8
        assert f.manifest.labels is not None
        assert f.manifest.labels.names == ("I", "N", "P")


def test_eval_table_json_and_per_image_csv(patch_file: Path, tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["eval", str(patch_file), *PHANTOM, "-q"])
    assert r.exit_code == 0, r.output
    assert "patch level" in r.output
    assert "HM" in r.output
    assert "stratified" in r.output  # the split rule is stated
    csv_path = tmp_path / "per_image.csv"
    r = CliRunner().invoke(cli, ["eval", str(patch_file), *PHANTOM, "--json", "--per-image", str(csv_path),
                                 "--delta", "0.5"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["task"] == "patches"
    assert doc["settings"]["patch_size"] == 16  # from the manifest
    assert doc["settings"]["delta"] == 0.5
    assert doc["data"]["split"] == "test"
    assert doc["data"]["images"] == 4  # 10 images, 5 per class: 3 + 3 train, 2 + 2 test
    assert set(doc["image"]) >= {"sensitivity", "specificity", "hm", "accuracy", "auc", "tp", "fn", "tn", "fp"}
    assert set(doc["patch"]["recall"]) == {"I", "N", "P"}
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 4
    assert sum(int(r["num_I"]) + int(r["num_N"]) + int(r["num_P"]) for r in rows) == doc["n_inputs"]
    tp = sum(1 for r in rows if r["true_label"] == "1" and r["decision"] == "1")
    assert tp == doc["image"]["tp"]


def test_eval_on_npz_with_masks_and_other_stride(patch_file: Path, tmp_path: Path) -> None:
    from sldpack.medical import make_phantom

    ph = make_phantom(10, size=64, seed=0)
    npz = tmp_path / "set.npz"
    np.savez(npz, images=ph.images, masks=ph.masks, labels=ph.labels)
    r = CliRunner().invoke(cli, ["eval", str(patch_file), "--data", str(npz), "--json", "--stride", "16"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["settings"]["stride"] == 16
    # same images as --phantom 10 (same split rule, same seed)
    r2 = CliRunner().invoke(cli, ["eval", str(patch_file), *PHANTOM, "--json", "--stride", "16"])
    assert json.loads(r2.output)["image"] == doc["image"]


def test_eval_medmnist_whole_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40).astype(np.uint8)
    x = rng.integers(0, 100, (40, 8, 8)).astype(np.uint8)
    x[y == 1, :, :4] += 120
    npz = tmp_path / "toy.npz"
    np.savez(npz, train_images=x, train_labels=y[:, None], test_images=x[:12], test_labels=y[:12, None])
    res = distill(ArraySource(images=x, labels=y, class_names=("normal", "sick")), TINY)
    sldp = tmp_path / "mm.sldp"
    res.write(sldp)
    r = CliRunner().invoke(cli, ["eval", str(sldp), "--data", str(npz), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["task"] == "images"
    assert doc["n_inputs"] == 12
    assert set(doc["patch"]["recall"]) == {"normal", "sick"}
    assert doc["image"]["tp"] + doc["image"]["fn"] == int(y[:12].sum())


def test_train_per_class_save_then_eval_agrees(tmp_path: Path) -> None:
    model = tmp_path / "m.safetensors"
    r = CliRunner().invoke(cli, ["train", *PHANTOM, "--patch-size", "16", "--per-class", "10", "--steps", "4",
                                 "--batch-size", "12", "--arch-option", "depth=2", "--arch-option", "width=8",
                                 "--save", str(model), "--json", "--threads", "1"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["train_inputs"] == 30  # 10 per class
    assert doc["per_class"] == 10
    assert doc["eval"]["data"]["split"] == "test"
    assert model.stat().st_size == doc["saved_bytes"]
    r = CliRunner().invoke(cli, ["eval", str(model), *PHANTOM, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["image"] == doc["eval"]["image"]
    assert json.loads(r.output)["patch"] == doc["eval"]["patch"]


def test_demo_fast_writes_every_promised_file(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    r = CliRunner().invoke(cli, ["demo", "--fast", "--out", str(out), "--iterations", "3"])
    assert r.exit_code == 0, r.output
    assert "sldp demo summary" in r.output
    assert "HM" in r.output
    for name in ("phantom.png", "patch_grid.png", "patches.png", "distilled.png", "compression.png", "demo.sldp",
                 "model.safetensors", "per_image.csv", "eval.json", "summary.json", "run/checkpoint.pt"):
        assert (out / name).is_file(), name
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    s = json.loads((out / "summary.json").read_text())
    assert s["verify"]["ok"] is True
    assert s["file"]["bytes"] == (out / "demo.sldp").stat().st_size
    assert s["rate"] == pytest.approx(s["file"]["bytes"] / s["checkpoint"]["bytes"])
    assert {"sensitivity", "specificity", "hm"} <= set(s["eval"]["image"])
    # a second run resumes the finished run (nothing left to do) and gives the same file
    before = (out / "demo.sldp").read_bytes()
    r = CliRunner().invoke(cli, ["demo", "--fast", "--out", str(out), "--iterations", "3", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["distill"]["resumed_from"] == 3
    with sldpack.open(out / "demo.sldp") as a:
        assert a.manifest.replay is not None
        assert sldpack.read(before).manifest.replay == a.manifest.replay


def test_demo_refuses_a_folder_with_other_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert CliRunner().invoke(cli, ["demo", "--fast", "--out", str(out), "--iterations", "2", "-q"]).exit_code == 0
    before = (out / "demo.sldp").read_bytes()
    code, err = _exit_code(["demo", "--fast", "--out", str(out), "--iterations", "2", "--width", "4", "-q"], capsys)
    assert code == 2
    assert "other settings" in err
    assert (out / "demo.sldp").read_bytes() == before  # nothing overwritten


def test_bad_inputs_exit_2_with_a_clear_message(patch_file: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _exit_code(["eval", str(patch_file), "--data", str(tmp_path / "nope.npz")], capsys)
    assert code == 2
    assert "nope.npz: no such file" in err
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    code, err = _exit_code(["eval", str(patch_file), "--data", str(bad)], capsys)
    assert code == 2
    assert "not an .npz" in err
    code, err = _exit_code(["eval", str(patch_file), *PHANTOM, "--data", str(bad)], capsys)
    assert code == 2
    assert "exactly one data source" in err
    code, err = _exit_code(["eval", str(patch_file), *PHANTOM, "--split", "validation"], capsys)
    assert code == 2
    assert "split must be one of" in err
    code, err = _exit_code(["eval", str(tmp_path / "missing.sldp"), *PHANTOM], capsys)
    assert code == 2
    assert "missing.sldp" in err
