"""Membership attacks on tiny synthetic networks where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sldpack.format.manifest import ArchSpec
from sldpack.nn.membership import (
    Signals,
    example_signals,
    lira_offline_scores,
    loss_attack_scores,
    train_references,
)
from sldpack.pipelines.membership import evaluate_attack
from sldpack.pipelines.sources import ArraySource


def _noise(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random images with random labels: only memorising them can fit them."""
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (n, 1, 8, 8)).astype(np.float32), rng.integers(0, 2, n)


def _fit(x: np.ndarray, y: np.ndarray, steps: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 2))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    for _ in range(steps):
        loss = nn.functional.cross_entropy(net(xt), yt)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    return net.eval()


def test_a_network_that_memorised_its_eight_training_images_is_caught() -> None:
    xm, ym = _noise(8, 0)
    xn, yn = _noise(8, 1)
    net = _fit(xm, ym, 300, 0)
    sm, sn = example_signals(net, xm, ym), example_signals(net, xn, yn)
    assert sm.loss.max() < 1e-3  # trained to (near) zero loss
    res = evaluate_attack("loss", "distilled", loss_attack_scores(sm), loss_attack_scores(sn), bootstrap=500)
    assert res.auc.value > 0.9
    assert res.auc.low > 0.5  # the CI excludes chance
    assert res.tpr[0.01].value > 0.0


def test_a_network_that_saw_neither_set_gives_chance() -> None:
    xt, yt = _noise(8, 2)
    net = _fit(xt, yt, 300, 0)
    xm, ym = _noise(60, 3)  # "members" the network never saw
    xn, yn = _noise(60, 4)
    res = evaluate_attack("loss", "distilled", loss_attack_scores(example_signals(net, xm, ym)),
                          loss_attack_scores(example_signals(net, xn, yn)), bootstrap=500)
    assert abs(res.auc.value - 0.5) < 0.15
    assert res.auc.low < 0.5 < res.auc.high


def test_phi_is_the_logit_of_the_true_class_probability_and_stays_finite() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        net[1].weight.zero_()
        net[1].bias.copy_(torch.tensor([0.0, 1.0, 60.0]))
    s = example_signals(net, np.zeros((2, 1, 2, 2), np.float32), np.array([1, 2]))
    p1 = np.exp(1.0) / (1 + np.exp(1.0) + np.exp(60.0))
    assert s.phi[0] == pytest.approx(np.log(p1 / (1 - p1)), rel=1e-9)
    assert np.isfinite(s.phi[1]) and s.phi[1] == pytest.approx(60.0 - np.log(1 + np.exp(1.0)), rel=1e-9)
    assert s.loss[0] == pytest.approx(-np.log(p1), rel=1e-9)


def test_lira_offline_calibrates_each_example_by_its_references() -> None:
    # example 0 is "hard" (low phi everywhere), example 1 "easy": raw phi would rank 1 first, the
    # calibrated score ranks by how much more the target fits it than the references do
    target = Signals(loss=np.zeros(2), phi=np.array([0.0, 5.0]))
    refs = [Signals(loss=np.zeros(2), phi=np.array([-4.0 + d, 5.0 + d])) for d in (-0.5, 0.5)]
    z = lira_offline_scores(target, refs)
    assert z[0] > z[1]
    assert z[1] == pytest.approx(0.0)


def test_references_with_a_memorising_target_catch_it_and_never_see_members() -> None:
    xm, ym = _noise(8, 5)
    xn, yn = _noise(8, 6)
    target = _fit(xm, ym, 300, 1)
    xr, yr = _noise(40, 7)
    src = ArraySource(images=xr[:, 0] * 0.1 + 0.5, labels=yr, mean=(0.5,), std=(0.1,))
    arch = ArchSpec(id="convnet@1", in_channels=1, num_classes=2, image_size=(8, 8), batchnorm=False,
                    options={"depth": 1, "width": 8})
    seen: list[tuple[int, int]] = []
    refs = train_references(arch, src, 2, steps=20, batch_size=16, seed=0,
                            progress=lambda r, n, s, t: seen.append((r, s)))
    assert len(refs) == 2 and seen[-1] == (1, 20)
    ref_m = [example_signals(r, xm, ym) for r in refs]
    ref_n = [example_signals(r, xn, yn) for r in refs]
    both = [Signals(np.r_[a.loss, b.loss], np.r_[a.phi, b.phi]) for a, b in zip(ref_m, ref_n, strict=True)]
    tm, tn = example_signals(target, xm, ym), example_signals(target, xn, yn)
    z = lira_offline_scores(Signals(np.r_[tm.loss, tn.loss], np.r_[tm.phi, tn.phi]), both)
    res = evaluate_attack("lira-offline", "distilled", z[:8], z[8:], bootstrap=300)
    assert res.auc.value > 0.9 and res.auc.low > 0.5
