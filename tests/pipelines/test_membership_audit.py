"""The membership audit of a whole file: replay, sets, attacks, comparison (tiny replayable files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

import sldpack
from sldpack.errors import DataError
from sldpack.pipelines.datasets import phantom_data
from sldpack.pipelines.membership import MembershipConfig
from sldpack.pipelines.membership_audit import LabelledImages, membership_audit
from sldpack.pipelines.patch_source import PatchTask

FAST = {"bootstrap": 200, "train_steps": 20, "train_batch": 16, "min_per_class": 5}


def _memorising_file(path: Path, images: np.ndarray, labels: np.ndarray, *, options: dict[str, object] | None = None,
                     size: int = 8, classes: int = 2, mean: float = 0.5, std: float = 0.25,
                     pre_options: dict[str, object] | None = None) -> Path:
    """A file whose 'distilled' images are the training images themselves with hard labels, unrolled
    long enough to fit them: the worst case a membership audit must catch."""
    x = ((images / 255.0 - mean) / std)[:, None].astype(np.float32)
    lab = (np.eye(classes)[labels] * 10).astype(np.float32)
    m = sldpack.Manifest(
        arch=sldpack.ArchSpec("convnet@1", 1, classes, (size, size), options=options or {"depth": 1, "width": 16}),
        init=sldpack.InitSpec(seed=3), provenance=sldpack.Provenance("test", "2026-11-27T00:00:00Z"),
        preprocessing=sldpack.Preprocessing((mean,), (std,), (size, size), 1, options=pre_options or {}),
        distill=sldpack.DistillSpec("sldd", 1, 60, (tuple(range(len(labels))),)))
    sldpack.write(path, m, {"images": sldpack.Tensor("images", x), "labels": sldpack.Tensor("labels", lab),
                            "lrs": sldpack.Tensor("lrs", np.full(60, 0.5, np.float32))})
    return path


def _noise(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 8, 8)).astype(np.uint8), np.arange(n) % 2


def test_a_file_that_memorised_its_training_images_is_flagged_beside_a_trained_network(tmp_path: Path) -> None:
    xm, ym = _noise(20, 0)
    xn, yn = _noise(24, 1)
    f = _memorising_file(tmp_path / "mem.sldp", xm, ym)
    lines: list[str] = []
    rep = membership_audit(f, LabelledImages(xm, ym, name="train"), LabelledImages(xn, yn, name="test"),
                           config=MembershipConfig(references=1, reference_share=0.15, **FAST),  # type: ignore[arg-type]
                           progress=lines.append)
    got = {(a.attack, a.target): a for a in rep.attacks}
    assert set(got) == {("loss", "distilled"), ("lira-offline", "distilled"), ("loss", "trained"),
                        ("lira-offline", "trained")}
    assert got["loss", "distilled"].auc.value > 0.85 and got["loss", "distilled"].auc.low > 0.6
    assert rep.verdict == "FLAG"
    assert any(ln.startswith("loss attack: distilled file: AUC") and "normally trained network: AUC" in ln
               for ln in rep.comparison_lines())
    assert any("reference 1/1" in ln for ln in lines) and any("comparison network" in ln for ln in lines)
    d = rep.to_dict()
    assert d["verdict"] == "FLAG" and d["source"]["per_class"] == {"0": 10, "1": 10}
    assert any("training-data digest" in n for n in d["notes"])


def test_members_among_the_nonmembers_are_refused(tmp_path: Path) -> None:
    xm, ym = _noise(20, 0)
    f = _memorising_file(tmp_path / "mem.sldp", xm, ym)
    xn, yn = _noise(24, 1)
    xn[:3] = xm[:3]
    with pytest.raises(DataError, match=r"^3 non-member image"):
        membership_audit(f, LabelledImages(xm, ym), LabelledImages(xn, yn),
                         config=MembershipConfig(references=0, **FAST), compare=None)  # type: ignore[arg-type]


def test_a_patch_model_is_audited_image_by_image_with_the_files_geometry(tmp_path: Path) -> None:
    data = phantom_data(24, size=64, seed=0).data
    settings = PatchTask(size=16, stride=16)
    members, nonmembers = data.subset(np.arange(12)), data.subset(np.arange(12, 24))
    # a file whose images are a few real patches (enough to replay; no memorisation needed here)
    from sldpack.pipelines.patch_source import PatchSource

    src = PatchSource.from_image_set(members, settings)
    patches, labels, _ = src.examples(2)
    f = _memorising_file(tmp_path / "patch.sldp", np.round(patches * 255).astype(np.uint8), labels, size=16,
                         classes=3, options={"depth": 2, "width": 8}, mean=src.mean, std=src.std,
                         pre_options=settings.to_options())
    cfg = MembershipConfig(references=0, bootstrap=100, min_per_class=3)
    rep = membership_audit(f, LabelledImages.from_image_set(members, "train"),
                           LabelledImages.from_image_set(nonmembers, "test"), config=cfg, compare=None,
                           patches_per_image=8)
    assert rep.level.startswith("image (a patch model")
    (a,) = rep.attacks
    # one score per image, not per patch
    assert a.n_members == a.n_nonmembers == sum(min(int((members.labels == c).sum()),
                                                    int((nonmembers.labels == c).sum())) for c in (0, 1))
