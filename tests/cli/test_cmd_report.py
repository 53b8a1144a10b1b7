"""CLI tests for ``sldp report`` and ``sldp audit`` (click's CliRunner)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import sldpack
from sldpack.cli.main import cli, main


def _write(path: Path, images: np.ndarray) -> Path:
    m = sldpack.Manifest(arch=sldpack.ArchSpec("convnet@1", 1, 2, (12, 12)), init=sldpack.InitSpec(seed=3),
                         provenance=sldpack.Provenance("test", "2026-11-27T00:00:00Z"),
                         preprocessing=sldpack.Preprocessing((0.5,), (0.25,), (12, 12), 1))
    sldpack.write(path, m, {"images": sldpack.Tensor("images", images.astype(np.float32)),
                            "labels": sldpack.Tensor("labels", np.zeros((images.shape[0], 2), np.float32)),
                            "lrs": sldpack.Tensor("lrs", np.array([0.1, 0.2], np.float32))})
    return path


def _real(n: int = 40, size: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.stack([np.sin(2 * np.pi * (rng.uniform(0.5, 2) * xx + rng.uniform(0.5, 2) * yy) + rng.uniform(0, 6))
                    for _ in range(n)])
    return np.round((out + 1) / 2 * 255).astype(np.uint8)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    real = _real()
    np.savez(tmp_path / "train.npz", train_images=real, train_labels=np.arange(len(real)) % 2)
    rng = np.random.default_rng(1)
    copy = ((real[7] / 255.0 - 0.5) / 0.25)[None, None]
    noise = rng.standard_normal((1, 1, 12, 12))
    return {"data": tmp_path / "train.npz",
            "copy": _write(tmp_path / "copy.sldp", np.concatenate([noise, copy])),
            "noise": _write(tmp_path / "noise.sldp", noise)}


# --- report --------------------------------------------------------------------------------------

def test_report_table_and_json(files: dict[str, Path]) -> None:
    size = files["noise"].stat().st_size
    r = CliRunner().invoke(cli, ["report", str(files["noise"])])
    assert r.exit_code == 0, r.output
    assert f"{size:,}" in r.output and "= file size" in r.output
    for part in ("images", "labels", "lrs", "bn_stats", "manifest", "header", "index"):
        assert part in r.output
    r = CliRunner().invoke(cli, ["report", "--json", str(files["noise"])])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert sum(ln["stored"] for ln in doc["lines"]) == size == doc["file_size"]
    assert doc["roles"]["images"] == 12 * 12 * 4


def test_report_vs_checkpoint_file(files: dict[str, Path], tmp_path: Path) -> None:
    ckpt = tmp_path / "model.bin"
    ckpt.write_bytes(b"\0" * 100_000)
    r = CliRunner().invoke(cli, ["report", "--json", "--vs", str(ckpt), str(files["noise"])])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["checkpoint"]["bytes"] == 100_000
    assert doc["rate"] == pytest.approx(files["noise"].stat().st_size / 100_000)


def test_report_checkpoint_from_zoo(files: dict[str, Path]) -> None:
    pytest.importorskip("torch")
    from sldpack.nn import zoo

    r = CliRunner().invoke(cli, ["report", "--json", str(files["noise"])])
    doc = json.loads(r.output)
    want = zoo.checkpoint_bytes("convnet@1", in_channels=1, num_classes=2, image_size=(12, 12))
    assert doc["checkpoint"]["bytes"] == want and doc["checkpoint"]["source"].startswith("zoo")


def test_report_precision_and_requantize(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "f16.sldp"
    r = CliRunner().invoke(cli, ["report", "--precision", "--zstd-level", "3", "--images-dtype", "float16",
                                 "--out", str(out), "--json", str(files["copy"])])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert {(p["images_dtype"], p["compression"]) for p in doc["precision"]} == {
        (d, c) for d in ("F32", "F16", "BF16") for c in ("none", "zstd")}
    assert doc["requantize"]["images_dtype_to"] == "F16" and doc["requantize"]["size_out"] == out.stat().st_size
    with sldpack.open(out) as f:
        assert f.manifest.tensors["images"].dtype == "F16"
        assert f.manifest.payload is not None and f.manifest.payload.compression == "zstd"


def test_report_usage_errors(files: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["report"]).exit_code == 2
    assert runner.invoke(cli, ["report", "--zoo", str(files["noise"])]).exit_code == 2
    r = runner.invoke(cli, ["report", "--out", str(tmp_path / "o.sldp"), str(files["noise"])])
    assert r.exit_code == 2 and "--out needs" in r.output
    assert runner.invoke(cli, ["report", "--eval-data", str(files["data"]), str(files["noise"])]).exit_code == 2
    assert runner.invoke(cli, ["report", "--images-dtype", "int8", str(files["noise"])]).exit_code == 2


def test_report_bad_file_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.sldp"
    bad.write_bytes(b"not an sldp file at all, not even close........................")
    with pytest.raises(SystemExit) as exc:
        main(["report", str(bad)])
    assert exc.value.code == 2
    assert "E_MAGIC" in capsys.readouterr().err


def test_report_zoo_json() -> None:
    pytest.importorskip("torch")
    r = CliRunner().invoke(cli, ["report", "--zoo", "--json", "--zstd-level", "1"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    rows = {row["arch_id"]: row for row in doc["rows"]}
    assert list(rows) == ["googlenet@1", "resnet18@1", "resnet34@1", "alexnet@1", "vgg16@1", "vgg19@1"]
    assert [row["images"] for row in rows.values()] == [1, 1, 1, 1, 2, 2]
    assert rows["vgg16@1"]["paper"]["memory_star_kib"] == 402.01
    assert rows["googlenet@1"]["paper"] == {"memory_mib": 22.83, "memory_star_kib": 289.14, "rate": 0.01266}
    for row in rows.values():
        assert row["sldp_f16"] < row["sldp_f32"] < row["checkpoint_bytes"]


# --- audit ---------------------------------------------------------------------------------------

AUDIT = ["--real-sample", "40", "--ssim-candidates", "8", "--chunk", "16"]


def test_audit_flags_a_copy_with_exit_1(files: dict[str, Path], tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.png"
    r = CliRunner().invoke(cli, ["audit", str(files["copy"]), "--data", str(files["data"]), "--sheet",
                                 str(sheet), *AUDIT])
    assert r.exit_code == 1, r.output
    assert "FLAG: image 1 is a near copy of train[7]" in r.output
    assert sheet.is_file() and sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_audit_passes_noise_json(files: dict[str, Path]) -> None:
    r = CliRunner().invoke(cli, ["audit", str(files["noise"]), "--data", str(files["data"]), "--json",
                                 "--no-sheet", *AUDIT])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["verdict"] == "PASS" and doc["verdict_line"].startswith("PASS")
    assert doc["images"][0]["flagged"] is False and doc["sheet"] is None
    assert doc["real_real"]["ncc"]["count"] == 40
    # the default sheet is not written with --no-sheet
    assert not files["noise"].with_suffix(".audit.png").exists()


def test_audit_default_sheet_and_errors(files: dict[str, Path], tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["audit", str(files["noise"]), "--data", str(files["data"]), *AUDIT])
    assert r.exit_code == 0, r.output
    assert files["noise"].with_suffix(".audit.png").is_file()
    r = CliRunner().invoke(cli, ["audit", str(files["noise"]), "--data", str(files["data"]), "--sheet", "x.png",
                                 "--no-sheet"])
    assert r.exit_code == 2
    with pytest.raises(SystemExit) as exc:
        main(["audit", str(files["noise"]), "--data", str(files["data"]), "--split", "val"])
    assert exc.value.code == 2  # DataError: no val split


def test_report_eval_data_accuracy_change(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from sldpack.nn.fingerprint import refingerprint

    rng = np.random.default_rng(2)
    arch = sldpack.ArchSpec("convnet@1", 1, 2, (8, 8), options={"depth": 1, "width": 4})
    m = sldpack.Manifest(
        arch=arch, init=sldpack.InitSpec(seed=3), provenance=sldpack.Provenance("test", "2026-01-01T00:00:00Z"),
        distill=sldpack.DistillSpec("sldd", 1, 2, ((0, 1),)), labels=sldpack.LabelSpec(("N", "P")),
        preprocessing=sldpack.Preprocessing((0.5,), (0.25,), (8, 8), 1),
        replay=sldpack.ReplayFingerprint(theta_opt_sha256="0" * 64, probe_seed=1, probe_count=1,
                                         probe_logits=(0.0, 0.0), tolerance=1e-3, reference={"threads": 1}))
    arrays = {"images": rng.standard_normal((2, 1, 8, 8)).astype(np.float32),
              "labels": np.array([[3.0, -3.0], [-3.0, 3.0]], np.float32),
              "lrs": np.array([0.1, 0.1], np.float32)}
    m = dataclasses.replace(m, replay=refingerprint(m, arrays))
    src = tmp_path / "m.sldp"
    sldpack.write(src, m, {k: sldpack.Tensor(r, arrays[k]) for k, r in
                           (("images", "images"), ("labels", "labels"), ("lrs", "lrs"))})
    np.savez(tmp_path / "eval.npz", test_images=rng.integers(0, 256, (30, 16, 16), dtype=np.uint8),
             test_labels=rng.integers(0, 2, (30, 1)))
    r = CliRunner().invoke(cli, ["report", "--json", "--images-dtype", "bfloat16", "--eval-data",
                                 str(tmp_path / "eval.npz"), str(src)])
    assert r.exit_code == 0, r.output
    ev = json.loads(r.output)["eval"]
    assert ev["done"] and ev["n"] == 30 and ev["split"] == "test"
    assert 0.0 <= ev["accuracy_before"] <= 1.0 and 0.0 <= ev["accuracy_after"] <= 1.0
    assert ev["change"] == pytest.approx(ev["accuracy_after"] - ev["accuracy_before"])
    r = CliRunner().invoke(cli, ["report", "--images-dtype", "bfloat16", "--eval-data",
                                 str(tmp_path / "eval.npz"), str(src)])
    assert r.exit_code == 0, r.output
    assert "accuracy on" in r.output and "(not written: no --out)" in r.output
