"""benchmarks/bench_paper_scale.py: its peer computes the same hypergradient as sldpack (float64), and a tiny
side-by-side run prints the project / peer ratios (so the comparison it reports is of equal work)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F

from sldpack.nn.hypergrad import hypergradient
from sldpack.nn.unroll import apply_label_transform, make_schedule, scratch_buffers, set_inner_mode
from sldpack.nn.zoo import build

REPO = Path(__file__).resolve().parents[2]
DT = torch.float64


def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_paper_scale", REPO / "benchmarks" / "bench_paper_scale.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("mode", ["graph", "recompute"])
def test_peer_hypergradient_equals_sldpack_float64(mode: str) -> None:
    net = build("convnet@1", in_channels=1, num_classes=3, image_size=(8, 8), batchnorm=True,
                options={"depth": 2, "width": 4}).to(DT)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=DT))
    set_inner_mode(net)
    theta0 = {n: p.detach().clone() for n, p in net.named_parameters()}
    x = torch.randn(4, 1, 8, 8, generator=g, dtype=DT)
    y = torch.randn(4, 3, generator=g, dtype=DT, requires_grad=True)
    a = torch.tensor([0.05, 0.03, 0.04], dtype=DT)
    xr, yr = torch.randn(5, 1, 8, 8, generator=g, dtype=DT), torch.tensor([0, 1, 2, 0, 1])

    def outer(theta: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(torch.func.functional_call(net, (dict(theta), scratch_buffers(net)), (xr,)), yr)

    targets = apply_label_transform(y, "softmax")
    ours = hypergradient(net, theta0, scratch_buffers(net), x, targets, a,
                         make_schedule("all", num_images=4, steps=3, epochs=1), outer, mode=mode)  # type: ignore[arg-type]
    (ours_y,) = torch.autograd.grad(targets, [y], grad_outputs=[ours.targets])
    loss, gx, gy, ga = bench().peer_hypergradient(net, list(theta0.values()), x, y, a, xr, yr, mode)
    assert float(loss) == pytest.approx(float(ours.loss), rel=1e-12)
    for o, p in ((ours.images, gx), (ours_y, gy), (ours.lrs, ga)):
        assert float(p.abs().max()) > 1e-8
        assert float((o - p).abs().max() / p.abs().max()) < 1e-10


def test_side_by_side_run_prints_ratios(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_paper_scale.py"), "--archs", "tiny",
                        "--sizes", "16", "--iters", "2", "--nproc", "1", "--unroll", "recompute", "--peer",
                        "--json", str(out)], capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "sldpack / peer" in r.stdout and "tiny 16 px recompute: CPU time" in r.stdout
    assert "load average" in r.stdout
    import json

    rows = json.loads(out.read_text())
    assert [row["impl"] for row in rows] == ["sldpack", "peer"]
    for row in rows:
        assert row["cpu_s"] > 0 and row["wall_s"] > 0 and row["peak_gib"] > 0
        assert len(row["cpu_laps"]) == 2  # the warm-up is not among the timed iterations


def test_iters_below_two_is_refused() -> None:
    with pytest.raises(SystemExit, match="--iters must be >= 2"):
        bench().main(["--archs", "tiny", "--sizes", "16", "--iters", "1", "--nproc", "1"])
