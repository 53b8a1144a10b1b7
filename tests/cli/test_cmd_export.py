"""``sldp export``: replay -> ONNX / TorchScript / safetensors, checked against the replay; failures leave nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sldpack.cli.main import main
from sldpack.nn.distill import DistillConfig, distill
from sldpack.pipelines.sources import ArraySource


@pytest.fixture(scope="module")
def small_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny batch-norm ConvNet file (3 distillation iterations)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    src = ArraySource(rng.integers(0, 255, (60, 1, 8, 8)).astype(np.uint8), rng.integers(0, 2, 60),
                      class_names=("normal", "pneumonia"))
    cfg = DistillConfig(arch_options={"depth": 2, "width": 8}, batchnorm=True, steps=2, epochs=1, iterations=3,
                        batch_real=12, device="cpu", bn_batches=1, bn_batch_size=12, lr=0.05, checkpoint_every=0)
    res = distill(src, cfg)
    torch.set_num_threads(old)
    path = tmp_path_factory.mktemp("export") / "model.sldp"
    res.write(path)
    return path


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out = capsys.readouterr()
    return int(info.value.code or 0), out.out, out.err


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.parametrize("target", ["onnx", "torchscript", "safetensors"])
def test_export_writes_a_checked_file(small_file: Path, tmp_path: Path, target: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    if target == "onnx":
        pytest.importorskip("onnxruntime")
    before = _sha(small_file)
    out = tmp_path / f"model.{target}"
    code, text, err = _run(["export", str(small_file), "--to", target, "--out", str(out)], capsys)
    assert code == 0, err
    assert "max |logit difference|" in text
    assert "replay: exact" in text
    assert out.is_file() and out.stat().st_size > 0
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary left beside it
    assert _sha(small_file) == before  # the sender's file is never touched
    code, text, _ = _run(["export", str(small_file), "--to", target, "--out", str(tmp_path / "again"), "--json"],
                         capsys)
    doc = json.loads(text)
    assert code == 0
    assert doc["check"]["ok"] is True
    assert doc["check"]["max_abs_logit_diff"] <= 1e-4 * doc["check"]["scale"]


def test_safetensors_export_evaluates_like_the_file(small_file: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from sldpack.nn.fingerprint import probe_inputs
    from sldpack.nn.replay import load_model
    from sldpack.pipelines.models import load_trained_model

    out = tmp_path / "m.safetensors"
    assert _run(["export", str(small_file), "--to", "safetensors", "--out", str(out)], capsys)[0] == 0
    tm = load_trained_model(out)
    assert tm.class_names == ("normal", "pneumonia")
    x = torch.from_numpy(probe_inputs(5, 3, 1, (8, 8)))
    with torch.no_grad():
        assert torch.equal(tm.module(x), load_model(small_file)(x))


def test_failed_check_deletes_the_export_and_exits_1(small_file: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import sldpack.nn.export as ex

    real = ex.run_torchscript
    monkeypatch.setattr(ex, "run_torchscript", lambda p, x: real(p, x) * np.float32(1.01))  # a 1 % drift
    out = tmp_path / "model.pt"
    code, _, err = _run(["export", str(small_file), "--to", "torchscript", "--out", str(out)], capsys)
    assert code == 1
    assert "does not reproduce the replay" in err and "deleted" in err
    assert list(tmp_path.iterdir()) == []


def test_bad_export_requests_exit_2(small_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["export", str(small_file), "--to", "tflite", "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "tflite" in err
    code, _, err = _run(["export", str(small_file), "--to", "onnx", "--out", str(small_file)], capsys)
    assert code == 2 and "is an input" in err
    code, _, err = _run(["export", str(tmp_path / "missing.sldp"), "--to", "onnx", "--out", str(tmp_path / "x")],
                        capsys)
    assert code == 2 and "no such file" in err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    code, _, err = _run(["export", str(small_file), "--to", "onnx", "--out", str(tmp_path / "full")], capsys)
    assert code == 2 and "is a folder" in err
