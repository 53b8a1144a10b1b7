"""Replay start-up: building a zoo network allocates directly (no to_empty, no sympy) and gives the same state.

The old path (meta -> ``to_empty`` -> zero -> reset BN) is rebuilt here as the reference: the new build must
give the same parameter objects' names, shapes, dtypes, flags and values, and the same portable theta0.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from sldpack.nn import zoo  # noqa: E402
from sldpack.nn.init import init_module_  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _old_build(arch_id: str, side: int, batchnorm: bool) -> nn.Module:
    """The previous zoo.build: meta module -> to_empty -> zero parameters -> reset BN statistics."""
    m = zoo._build_meta(arch_id, 1, 3, (side, side), batchnorm, None).to_empty(device="cpu")
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.reset_running_stats()
    return m


def _state(m: nn.Module) -> list[tuple[str, str, tuple[int, ...], torch.dtype, bool, bool]]:
    out = []
    for n, p in m.named_parameters():
        out.append(("param", n, tuple(p.shape), p.dtype, p.requires_grad, isinstance(p, nn.Parameter)))
    for n, b in m.named_buffers():
        out.append(("buffer", n, tuple(b.shape), b.dtype, b.requires_grad, isinstance(b, nn.Parameter)))
    return out


@pytest.mark.parametrize("batchnorm", [False, True])
@pytest.mark.parametrize("arch_id", list(zoo.ARCHITECTURES))
def test_direct_build_equals_the_to_empty_path(arch_id: str, batchnorm: bool) -> None:
    side = max(16, zoo.ARCHITECTURES[arch_id].min_image_size[0])
    new = zoo.build(arch_id, in_channels=1, num_classes=3, image_size=(side, side), batchnorm=batchnorm)
    old = _old_build(arch_id, side, batchnorm)
    assert _state(new) == _state(old)
    assert all(not t.is_meta and t.device.type == "cpu" for t in [*new.parameters(), *new.buffers()])
    for (n, a), (_, b) in zip(new.state_dict().items(), old.state_dict().items(), strict=True):
        assert torch.equal(a, b), n
    if batchnorm:
        bn = next(mod for mod in new.modules() if isinstance(mod, nn.BatchNorm2d))
        assert bn.running_var is not None and bool((bn.running_var == 1).all())
    # the portable init is bit-identical on both (same digests and the same bytes)
    if arch_id in ("convnet@1", "lenet@1", "resnet18@1"):
        assert init_module_(new, 7) == init_module_(old, 7)
        for (n, a), (_, b) in zip(new.state_dict().items(), old.state_dict().items(), strict=True):
            assert torch.equal(a, b), n


def test_shared_parameters_stay_shared() -> None:
    with torch.device("meta"):
        a = nn.Linear(4, 4)
        b = nn.Linear(4, 4)
        b.weight = a.weight  # tied
        net = nn.Sequential(a, b)
    zoo._materialize_zero_(net, torch.device("cpu"))
    assert net[0].weight is net[1].weight
    assert len(list(net.parameters())) == 3  # tied weight counted once, two biases
    assert all(not p.is_meta and not bool(p.any()) for p in net.parameters())


_CHILD = r"""
import sys, time
import numpy as np
import sldpack
from sldpack import ArchSpec, DistillSpec, InitSpec, LabelSpec, Manifest, Preprocessing, Provenance, Tensor
from sldpack.nn import zoo
from sldpack.nn.replay import load_model

zoo.build("resnet18@1", in_channels=1, num_classes=3, image_size=(32, 32), batchnorm=True)
assert "sympy" not in sys.modules, "zoo.build imported sympy"
rng = np.random.default_rng(0)
m = Manifest(arch=ArchSpec("convnet@1", 1, 3, (8, 8), batchnorm=True, options={"depth": 1, "width": 4}),
             init=InitSpec(seed=1), provenance=Provenance("test", "2026-01-01T00:00:00Z"),
             distill=DistillSpec("sldd", 2, 1, ((0, 1), (0, 1))), labels=LabelSpec(("I", "N", "P")),
             preprocessing=Preprocessing((0.5,), (0.25,), (8, 8), 1))
data = sldpack.encode(m, {"images": Tensor("images", rng.standard_normal((2, 1, 8, 8)).astype(np.float32)),
                          "labels": Tensor("labels", rng.standard_normal((2, 3)).astype(np.float32)),
                          "lrs": Tensor("lrs", np.full(2, 0.01, np.float32))})
load_model(data)
assert "sympy" not in sys.modules, "load_model imported sympy"
assert "torch._inductor.config" not in sys.modules, "load_model imported torch._inductor"
print("ok")
"""


def test_first_build_and_load_model_import_no_sympy() -> None:
    # the cause of the 1.5-5 s first build: to_empty's empty_like reference and
    # use_deterministic_algorithms both import sympy; a fresh process must not
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *sys.path]))
    proc = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "ok"


def test_zero_build_is_float32_zero() -> None:
    m = zoo.build("convnet@1", in_channels=2, num_classes=5, image_size=(8, 8), batchnorm=True,
                  options={"depth": 1, "width": 3})
    vals = np.concatenate([p.detach().numpy().ravel() for p in m.parameters()])
    assert vals.dtype == np.float32 and vals.size > 0 and not vals.any()
