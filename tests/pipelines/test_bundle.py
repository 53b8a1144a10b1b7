"""The MONAI bundle export: loaded back with monai.bundle.ConfigParser, same decisions as ``sldp eval``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sldpack.nn.distill import DistillConfig, distill
from sldpack.pipelines.datasets import phantom_data
from sldpack.pipelines.inputs import phantom_patch_source
from sldpack.pipelines.sources import ArraySource

monai_bundle = pytest.importorskip("monai.bundle")

TINY = DistillConfig(arch_options={"depth": 2, "width": 8}, steps=2, epochs=1, iterations=3, batch_real=12, lr=0.05,
                     inner_lr=0.05, device="cpu", checkpoint_every=0)


@pytest.fixture(scope="module")
def patch_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo-like I/N/P patch file: phantom X-rays, 16 px patches, stride 8."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    res = distill(phantom_patch_source("n=10,size=64,patch=16,stride=8", "train"), TINY)
    torch.set_num_threads(old)
    path = tmp_path_factory.mktemp("bundle") / "demo.sldp"
    res.write(path)
    return path


def _parser(bundle: Path) -> object:
    parser = monai_bundle.ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser.read_meta(str(bundle / "configs" / "metadata.json"))
    parser["bundle_root"] = str(bundle)
    return parser


def test_bundle_decides_the_test_images_like_sldp_eval(patch_file: Path, tmp_path: Path) -> None:
    from sldpack.nn.replay import replay
    from sldpack.pipelines.evaluate import evaluate
    from sldpack.pipelines.export import export_file

    out = tmp_path / "bundle"
    res = export_file(patch_file, "monai-bundle", out)
    assert res.check["ok"] and res.check["max_abs_logit_diff"] == 0.0
    assert set(res.files) == {"LICENSE", "configs/inference.json", "configs/metadata.json", "docs/README.md",
                              "models/model.pt"}
    meta = json.loads((out / "configs" / "metadata.json").read_text())
    assert meta["network_data_format"]["inputs"]["image"]["num_channels"] == 1
    assert meta["network_data_format"]["outputs"]["pred"]["network_outputs"] == {"0": "I", "1": "N", "2": "P"}
    assert meta["decision_rule"].startswith("eq9: P/(N+P) >= 0.4")
    assert (out / "docs" / "README.md").read_text().startswith("---\n")

    decide = _parser(out).get_parsed_content("decision")  # type: ignore[attr-defined]
    test = phantom_data(10, 64, 0, split="test", train_fraction=0.7, split_seed=0).data
    rep = replay(patch_file)
    ev = evaluate(rep.module, rep.manifest, test, windows="all")
    assert ev.detection is not None
    for i in range(len(test)):
        got = decide(test.images[i])
        want = ev.detection.images[i]
        assert (got["counts"]["I"], got["counts"]["N"], got["counts"]["P"]) == (want.num_i, want.num_n, want.num_p)
        assert got["decision"] == want.decision and got["score"] == pytest.approx(want.score, abs=0)
    # MONAI's LoadImage gives float pixel values: whole numbers 0..255 are read exactly
    assert decide(torch.from_numpy(test.images[0].astype(np.float32)))["decision"] == ev.detection.images[0].decision


def test_whole_image_bundle_and_refusals(tmp_path: Path) -> None:
    from sldpack.errors import UsageError
    from sldpack.pipelines.evaluate import evaluate
    from sldpack.pipelines.export import export_file

    rng = np.random.default_rng(2)
    x = rng.integers(0, 255, (40, 1, 8, 8)).astype(np.uint8)
    y = rng.integers(0, 2, 40)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    res = distill(ArraySource(x, y, class_names=("normal", "pneumonia")), TINY)
    torch.set_num_threads(old)
    f = tmp_path / "whole.sldp"
    res.write(f)
    out = tmp_path / "b"
    export_file(f, "monai-bundle", out)
    parser = _parser(out)
    decide = parser.get_parsed_content("decision")  # type: ignore[attr-defined]
    from sldpack.medical.imageset import ImageSet
    from sldpack.nn.replay import replay

    data = ImageSet(x[:6, 0], None, y[:6].astype(np.int64), tuple(f"i{i}" for i in range(6)))
    rep = replay(f)
    ev = evaluate(rep.module, rep.manifest, data)
    for i, row in enumerate(ev.per_image):
        got = decide(x[i, 0])
        assert got["decision"] == int(row["predicted"] == 1)
        assert got["score"] == pytest.approx(row["p_pneumonia"], rel=1e-6)
    with pytest.raises(UsageError, match="not an empty folder"):
        export_file(f, "monai-bundle", out)
