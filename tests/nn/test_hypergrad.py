"""Recompute-mode hypergradients equal graph-mode ones (float64, ~1e-12 relative)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
import torch
from torch import nn

from sldpack.errors import UsageError
from sldpack.nn.hypergrad import Hypergrad, ImageShard, hypergradient
from sldpack.nn.unroll import apply_label_transform, make_schedule, scratch_buffers, set_inner_mode
from sldpack.nn.zoo import build

DT = torch.float64
# float64 rounding of two summation orders of the same math: far below any real discrepancy
REL_TOL = 1e-12


def tiny_net(*, batchnorm: bool, seed: int = 0) -> nn.Module:
    net = build("convnet@1", in_channels=1, num_classes=3, image_size=(8, 8), batchnorm=batchnorm,
                options={"depth": 2, "width": 4})
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return net.to(DT)


def problem(net: nn.Module, kind: str, steps: int, epochs: int) -> tuple[Any, ...]:
    """theta0, distilled x/y/a, a real batch of 10 and the schedule: the same seeded inputs for every test."""
    set_inner_mode(net)
    theta0 = {n: p.detach().clone() for n, p in net.named_parameters()}
    m = 6
    g = torch.Generator().manual_seed(7)
    x = torch.randn(m, 1, 8, 8, generator=g, dtype=DT)
    y = torch.randn(m, 3, generator=g, dtype=DT)
    a = (0.02 + 0.05 * torch.rand(steps * epochs, generator=g)).to(DT)
    xr = torch.randn(10, 1, 8, 8, generator=g, dtype=DT)
    yr = torch.randint(0, 3, (10,), generator=g)
    return theta0, x, y, a, xr, yr, make_schedule(kind, num_images=m, steps=steps, epochs=epochs)


def run(net: nn.Module, kind: str, steps: int, epochs: int, mode: str, k: int = 1) -> Hypergrad:
    theta0, x, y, a, xr, yr, sched = problem(net, kind, steps, epochs)
    bufs = scratch_buffers(net)

    def outer(theta: Mapping[str, torch.Tensor]) -> torch.Tensor:
        logits = torch.func.functional_call(net, (dict(theta), bufs), (xr,))
        return torch.nn.functional.cross_entropy(logits, yr)

    return hypergradient(net, theta0, bufs, x, apply_label_transform(y, "softmax"), a, sched, outer,
                         mode=mode, checkpoint_every=k)  # type: ignore[arg-type]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("batchnorm", [False, True])
@pytest.mark.parametrize(("kind", "steps", "epochs"), [("all", 3, 1), ("per-step", 3, 2), ("all", 2, 3)])
@pytest.mark.parametrize("k", [1, 2, 4])
def test_recompute_equals_graph_float64(batchnorm: bool, kind: str, steps: int, epochs: int, k: int) -> None:
    net = tiny_net(batchnorm=batchnorm)
    ref = run(net, kind, steps, epochs, "graph")
    got = run(net, kind, steps, epochs, "recompute", k)
    assert float(ref.loss) == pytest.approx(float(got.loss), rel=REL_TOL)
    for name in ("images", "targets", "lrs"):
        r, o = getattr(ref, name), getattr(got, name)
        assert r.shape == o.shape
        assert float(r.abs().max()) > 1e-6, f"{name}: the graph gradient is ~0, the comparison would be vacuous"
        assert rel(o, r) <= REL_TOL, f"{name}: relative deviation {rel(o, r):.3g}"


def test_per_step_images_get_gradient_only_from_their_steps() -> None:
    # with steps=3, epochs=1 and the per-step schedule, every image is used by exactly one step: a bug
    # that attributes a step's gradient to the wrong block would still pass a norm check but not this
    net = tiny_net(batchnorm=True)
    ref = run(net, "per-step", 3, 1, "graph")
    got = run(net, "per-step", 3, 1, "recompute", 1)
    for blk in range(3):
        sl = slice(2 * blk, 2 * blk + 2)
        assert rel(got.images[sl], ref.images[sl]) <= REL_TOL


def test_bad_arguments() -> None:
    net = tiny_net(batchnorm=False)
    with pytest.raises(UsageError, match="unroll mode"):
        run(net, "all", 2, 1, "bogus")
    with pytest.raises(UsageError, match="checkpoint"):
        run(net, "all", 2, 1, "recompute", 0)


@pytest.mark.parametrize(("k", "no_graph_steps"), [(1, 9), (3, 9 + 4), (4, 9 + 3 + 3), (9, 9)])
def test_checkpointing_recomputes_only_what_it_dropped(monkeypatch: pytest.MonkeyPatch, k: int,
                                                       no_graph_steps: int) -> None:
    # T = 9: the forward walk takes 9 steps without a graph; with every k-th theta kept, each segment but the
    # last (kept whole) recomputes its k-1 inner thetas (k = T: one segment, nothing to recompute); the
    # backward walk rebuilds each of the 9 steps once
    import sldpack.nn.hypergrad as hg

    calls = {True: 0, False: 0}
    real_step, real_grad = hg.inner_step, hg.inner_grad

    def counting_step(*args: object, differentiable: bool, **kw: object) -> object:
        calls[differentiable] += 1
        return real_step(*args, differentiable=differentiable, **kw)  # type: ignore[arg-type]

    def counting_grad(*args: object, create_graph: bool, **kw: object) -> object:
        calls[create_graph] += 1
        return real_grad(*args, create_graph=create_graph, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(hg, "inner_step", counting_step)
    monkeypatch.setattr(hg, "inner_grad", counting_grad)
    net = tiny_net(batchnorm=False)
    got = run(net, "all", 9, 1, "recompute", k)
    assert calls == {False: no_graph_steps, True: 9}
    ref = run(net, "all", 9, 1, "graph")
    assert rel(got.images, ref.images) <= REL_TOL


class _ThreadGroup:
    """An in-process stand-in for torch.distributed: ranks are threads, all_reduce sums in rank order."""

    def __init__(self, n: int) -> None:
        import threading

        self.n = n
        self.barrier = threading.Barrier(n, timeout=60)
        self.slots: list[torch.Tensor | None] = [None] * n

    def all_reduce(self, rank: int) -> Callable[[Sequence[torch.Tensor]], list[torch.Tensor]]:
        def reduce(ts: Sequence[torch.Tensor]) -> list[torch.Tensor]:
            self.slots[rank] = torch.cat([t.reshape(-1) for t in ts])
            self.barrier.wait()
            total = self.slots[0]
            assert total is not None
            for r in range(1, self.n):
                other = self.slots[r]
                assert other is not None
                total = total + other
            self.barrier.wait()
            out, pos = [], 0
            for t in ts:
                out.append(total[pos:pos + t.numel()].view_as(t))
                pos += t.numel()
            return out
        return reduce


@pytest.mark.parametrize(("kind", "steps", "epochs", "k"), [("all", 3, 1, 1), ("per-step", 3, 2, 2), ("all", 2, 2, 3)])
def test_sharded_images_equal_one_process_float64(kind: str, steps: int, epochs: int, k: int) -> None:
    import copy
    import threading

    world = 2
    net = tiny_net(batchnorm=False)
    ref = run(net, kind, steps, epochs, "graph")
    # the same inputs as run(); each rank gets its own share of the real batch
    theta0, x, y, a, xr, yr, sched = problem(net, kind, steps, epochs)
    group = _ThreadGroup(world)
    results: list[Hypergrad | BaseException | None] = [None] * world

    def rank_main(rank: int) -> None:
        try:
            mod = copy.deepcopy(net)  # functional_call swaps a module's parameters: one module per thread
            bufs = scratch_buffers(mod)
            lo, hi = (0, 5) if rank == 0 else (5, 10)

            def outer(theta: Mapping[str, torch.Tensor]) -> torch.Tensor:
                logits = torch.func.functional_call(mod, (dict(theta), bufs), (xr[lo:hi],))
                return torch.nn.functional.cross_entropy(logits, yr[lo:hi], reduction="sum") / 10

            results[rank] = hypergradient(mod, theta0, bufs, x, apply_label_transform(y, "softmax"), a, sched,
                                          outer, mode="recompute", checkpoint_every=k,
                                          shard=ImageShard(rank, world, group.all_reduce(rank)))
        except BaseException as exc:  # surfaced below; a dead thread would otherwise hang the barrier
            results[rank] = exc
            group.barrier.abort()

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for r in results:
        assert isinstance(r, Hypergrad), r
        assert float(r.loss) == pytest.approx(float(ref.loss), rel=REL_TOL)
        for name in ("images", "targets", "lrs"):
            assert rel(getattr(r, name), getattr(ref, name)) <= REL_TOL, name


def test_sharding_rejects_batch_norm_and_graph_mode() -> None:
    net = tiny_net(batchnorm=True)
    shard = ImageShard(0, 1, lambda ts: list(ts))
    set_inner_mode(net)
    theta0 = {n: p.detach().clone() for n, p in net.named_parameters()}
    x, y, a = torch.randn(2, 1, 8, 8, dtype=DT), torch.rand(2, 3, dtype=DT), torch.full((1,), 0.1, dtype=DT)
    sched = make_schedule("all", num_images=2, steps=1, epochs=1)
    with pytest.raises(UsageError, match="batch norm"):
        hypergradient(net, theta0, scratch_buffers(net), x, y, a, sched, lambda t: sum(v.sum() for v in t.values()),
                      mode="recompute", shard=shard)
    with pytest.raises(UsageError, match="recompute"):
        hypergradient(net, theta0, scratch_buffers(net), x, y, a, sched, lambda t: sum(v.sum() for v in t.values()),
                      mode="graph", shard=shard)
