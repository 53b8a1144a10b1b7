"""``sldp eval --record``: the sender's evaluation, with CIs, into the model card (and out again with ``sldp card``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import sldpack
from sldpack.cli.main import cli
from sldpack.nn.distill import DistillConfig, distill
from sldpack.pipelines.sources import ArraySource


@pytest.fixture
def whole_image_file(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(4)
    y = np.repeat([0, 1], 20)
    x = (rng.integers(0, 120, (40, 8, 8)) + 100 * y[:, None, None]).astype(np.uint8)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    res = distill(ArraySource(x[:, None], y, class_names=("normal", "pneumonia")),
                  DistillConfig(arch_options={"depth": 1, "width": 8}, steps=2, epochs=1, iterations=3, batch_real=12,
                                lr=0.05, device="cpu", checkpoint_every=0))
    torch.set_num_threads(old)
    f = tmp_path / "m.sldp"
    res.write(f)
    data = tmp_path / "test.npz"
    np.savez(data, images=x, labels=y)
    return f, data


def test_eval_record_writes_the_results_into_the_card(whole_image_file: tuple[Path, Path]) -> None:
    f, data = whole_image_file
    for _ in range(2):  # recording twice replaces the entries of the same metric/split/data
        r = CliRunner().invoke(cli, ["eval", str(f), "--data", str(data), "--split", "all", "--record", "-q"])
        assert r.exit_code == 0, r.output
    assert "recorded 4 result(s)" in r.stderr
    with sldpack.open(f) as g:
        g.verify()
        card = g.manifest.card
        assert g.header.version_minor == 1
    assert card is not None
    assert [e.metric for e in card.evaluation] == ["hm", "auc", "sensitivity", "specificity"]
    for e in card.evaluation:
        assert e.n == 40 and e.split.startswith("all") and e.dataset is not None and e.dataset.endswith("test.npz")
        assert e.ci95 is not None and e.ci95[0] <= e.value <= e.ci95[1]
