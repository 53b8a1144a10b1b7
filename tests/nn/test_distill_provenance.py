"""The distiller fills the optional provenance fields (spec 5.3) and they survive the written file."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import sldpack
from sldpack.format.provenance import canonical_value, training_data_sha256
from sldpack.nn.distill import DistillConfig, distill
from sldpack.pipelines.sources import ArraySource


def test_distill_records_data_digest_config_and_command_line(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (40, 8, 8)).astype(np.uint8)
    y = np.arange(40) % 2
    cfg = DistillConfig(arch_options={"depth": 1, "width": 4}, steps=1, epochs=1, iterations=1, batch_real=8,
                        device="cpu", checkpoint_every=0, bn_batches=1, bn_batch_size=8)
    res = distill(ArraySource(x, y), cfg, run_dir=tmp_path)
    p = res.manifest.provenance
    assert p.training_data_sha256 == training_data_sha256(x, y)
    assert p.sldpack_version == sldpack.__version__
    # the configuration as applied: select "auto" without held-out data is "best"
    assert p.distill_config == canonical_value({**cfg.to_obj(), "select": "best"})
    assert p.command_line is not None and list(p.command_line[1:]) == sys.argv[1:]
    with sldpack.open(tmp_path / "distilled.sldp") as f:
        assert f.manifest.provenance == p


def test_a_patch_source_records_the_digest_of_its_training_images_labels_and_masks(tmp_path: Path) -> None:
    from sldpack.medical.phantom import make_phantom
    from sldpack.medical.store import open_store, write_store
    from sldpack.pipelines.patch_source import PatchSource, PatchTask

    data = make_phantom(8, size=64, seed=2).to_image_set()
    src = PatchSource.from_image_set(data, PatchTask(size=16, stride=8))
    want = training_data_sha256(data.images, data.labels, data.masks)
    assert src.training_data_sha256() == want
    cfg = DistillConfig(arch_options={"depth": 1, "width": 4}, steps=1, epochs=1, iterations=1, batch_real=6,
                        device="cpu", checkpoint_every=0)
    res = distill(src, cfg, run_dir=tmp_path / "run")
    assert res.manifest.provenance.training_data_sha256 == want
    # the same images on disk (lazy, read block by block) give the same digest
    write_store(data, tmp_path / "store")
    lazy = open_store(tmp_path / "store")
    assert PatchSource.from_image_set(lazy, PatchTask(size=16, stride=8)).training_data_sha256() == want
    # a source cut from a part of the images does not claim the digest of all of them
    assert PatchSource.from_image_set(data, PatchTask(size=16, stride=8),
                                      image_ids=[0, 1, 2, 3, 4, 5]).training_data_sha256() is None
