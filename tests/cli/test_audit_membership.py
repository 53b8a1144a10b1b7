"""``sldp audit --membership``: the membership section beside the image-similarity audit, recorded in the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import sldpack
from sldpack.cli.main import cli, main

pytest.importorskip("torch")

FAST = ["--references", "1", "--train-steps", "10", "--bootstrap", "100", "--threads", "1", "--device", "cpu"]


def _noise(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 8, 8)).astype(np.uint8), (np.arange(n) % 2).astype(np.uint8)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A MedMNIST-layout set (20 train, 48 test images of noise) and a file that memorised its 20 training
    images: its 'distilled' images are the training images with hard labels, unrolled until they fit."""
    d = tmp_path_factory.mktemp("mia")
    xm, ym = _noise(20, 0)
    xt, yt = _noise(48, 1)
    np.savez(d / "data.npz", train_images=xm, train_labels=ym[:, None], test_images=xt, test_labels=yt[:, None])
    np.savez(d / "few.npz", train_images=xm, train_labels=ym[:, None], test_images=xt[:16], test_labels=yt[:16, None])
    x = ((xm / 255.0 - 0.5) / 0.25)[:, None].astype(np.float32)
    m = sldpack.Manifest(arch=sldpack.ArchSpec("convnet@1", 1, 2, (8, 8), options={"depth": 1, "width": 16}),
                         init=sldpack.InitSpec(seed=3), provenance=sldpack.Provenance("test", "2026-11-27T00:00:00Z"),
                         preprocessing=sldpack.Preprocessing((0.5,), (0.25,), (8, 8), 1),
                         distill=sldpack.DistillSpec("sldd", 1, 60, (tuple(range(20)),)))
    sldpack.write(d / "mem.sldp", m, {"images": sldpack.Tensor("images", x),
                                      "labels": sldpack.Tensor("labels", (np.eye(2)[ym] * 10).astype(np.float32)),
                                      "lrs": sldpack.Tensor("lrs", np.full(60, 0.5, np.float32))})
    return {"dir": d, "data": d / "data.npz", "few": d / "few.npz", "file": d / "mem.sldp"}


def test_membership_json_compares_with_a_trained_network_and_flags_a_memorising_file(files: dict[str, Path],
                                                                                     tmp_path: Path) -> None:
    roc = tmp_path / "roc.png"
    r = CliRunner().invoke(cli, ["audit", str(files["file"]), "--data", str(files["data"]), "--membership", *FAST,
                                 "--json", "--sheet", str(tmp_path / "s.png"), "--roc", str(roc)])
    assert r.exit_code == 1, r.output
    doc = json.loads(r.stdout)
    mem = doc["membership"]
    assert doc["verdict"] == "FLAG" and mem["verdict"] == "FLAG" and doc["image_similarity_verdict"] in ("PASS",
                                                                                                         "FLAG")
    assert {(a["attack"], a["target"]) for a in mem["attacks"]} == {
        ("loss", "distilled"), ("lira-offline", "distilled"), ("loss", "trained"), ("lira-offline", "trained")}
    assert any(c.startswith("loss attack: distilled file: AUC") and "normally trained network: AUC" in c
               for c in mem["comparison"])
    assert mem["roc_png"] == str(roc) and roc.stat().st_size > 0
    assert "membership: training 1 reference network" in r.stderr  # progress on stderr


def test_record_binds_the_membership_section_and_inspect_shows_it(files: dict[str, Path], tmp_path: Path) -> None:
    f = tmp_path / "mem.sldp"
    f.write_bytes(files["file"].read_bytes())
    r = CliRunner().invoke(cli, ["audit", str(f), "--data", str(files["data"]), "--membership", *FAST, "--no-sheet",
                                 "--record"])
    assert r.exit_code == 1, r.output
    assert "loss attack: distilled file: AUC" in r.stdout
    with sldpack.open(f) as s:
        audit = s.manifest.provenance.audit
    assert audit is not None and audit.verdict == "FLAG" and audit.membership is not None
    assert audit.membership.verdict == "FLAG"
    report = json.loads(f.with_suffix(".audit.json").read_text())
    assert report["membership"]["verdict"] == "FLAG"
    r = CliRunner().invoke(cli, ["inspect", str(f)])
    assert "membership inference" in r.output and "loss on distilled file: AUC" in r.output
    try:
        import model_signing  # noqa: F401
    except ImportError:
        return
    assert CliRunner().invoke(cli, ["keygen", str(tmp_path / "me.key")]).exit_code == 0
    r = CliRunner().invoke(cli, ["sign", str(f), "--key", str(tmp_path / "me.key")])
    assert r.exit_code == 0, r.output
    assert "recorded membership inference: FLAG (loss on distilled: AUC" in r.output


def test_too_few_nonmembers_is_a_usage_error_and_writes_nothing(files: dict[str, Path], tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "mem.sldp"
    f.write_bytes(files["file"].read_bytes())
    before = f.read_bytes()
    with pytest.raises(SystemExit) as exc:
        main(["audit", str(f), "--data", str(files["few"]), "--membership", *FAST, "--record"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "class 0: 10 member and 4 non-member image(s)" in err and "at least 10 of each per class" in err
    assert f.read_bytes() == before  # nothing recorded
    # the membership sets are checked before anything runs: no sheet, no ROC, no report
    for suffix in (".audit.json", ".roc.png", ".audit.png"):
        assert not f.with_suffix(suffix).exists()


def test_membership_options_need_membership(files: dict[str, Path]) -> None:
    r = CliRunner().invoke(cli, ["audit", str(files["file"]), "--data", str(files["data"]), "--references", "2"])
    assert r.exit_code == 2 and "--references belongs to the membership audit" in r.output
