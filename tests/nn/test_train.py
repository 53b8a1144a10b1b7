"""``sldpack.nn.train``: normal training resumes from its checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import sldpack
from sldpack.errors import DataError, UsageError
from sldpack.nn.network import build_module
from sldpack.nn.train import train_normal


class KilledError(Exception):
    pass


def _sampler(k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, 2, k)
    x = rng.normal(size=(k, 1, 8, 8)).astype(np.float32) + y[:, None, None, None].astype(np.float32)
    return x, y


def _module() -> torch.nn.Module:
    module, _ = build_module(sldpack.ArchSpec("convnet@1", 1, 2, (8, 8), False, {"depth": 2, "width": 8}),
                             sldpack.InitSpec(seed=1))
    return module


def _killed_run(ckpt: Path, *, steps: int, every: int, kill_at: int) -> None:
    """Train with a checkpoint and stop (an exception: what a kill leaves behind) after step ``kill_at``."""
    def kill(step: int, _steps: int, _loss: float) -> None:
        if step == kill_at:
            raise KilledError

    with pytest.raises(KilledError):
        train_normal(_module(), _sampler, steps=steps, batch_size=8, lr=1e-2, seed=4, checkpoint=ckpt,
                     checkpoint_every=every, progress=kill)


def test_a_killed_training_resumes_from_its_checkpoint_to_the_same_network(tmp_path: Path) -> None:
    whole = train_normal(_module(), _sampler, steps=25, batch_size=8, lr=1e-2, seed=4)
    ckpt = tmp_path / "train.pt"
    _killed_run(ckpt, steps=25, every=5, kill_at=17)
    assert torch.load(ckpt, weights_only=True)["step"] == 15
    steps_run: list[int] = []
    resumed = train_normal(_module(), _sampler, steps=25, batch_size=8, lr=1e-2, seed=4, checkpoint=ckpt,
                           checkpoint_every=5, progress=lambda s, _n, _l: steps_run.append(s))
    assert steps_run == list(range(16, 26))  # only the steps after the checkpoint ran again
    # same machine, same process, same operations: the resumed network is the uninterrupted one
    for (n, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), n


def test_a_checkpoint_of_other_settings_or_a_damaged_one_is_refused(tmp_path: Path) -> None:
    ckpt = tmp_path / "train.pt"
    _killed_run(ckpt, steps=10, every=2, kill_at=3)
    with pytest.raises(UsageError, match="other settings"):
        train_normal(_module(), _sampler, steps=10, batch_size=8, lr=2e-2, seed=4, checkpoint=ckpt)
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=str(ckpt.name)):
        train_normal(_module(), _sampler, steps=10, batch_size=8, lr=1e-2, seed=4, checkpoint=ckpt)
    with pytest.raises(UsageError, match="checkpoint_every"):
        train_normal(_module(), _sampler, steps=10, checkpoint_every=0)
