"""The torch path of the portable init: same bits as the numpy reference, in place, any thread count."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import sldpack.nn.init as tinit
from sldpack.errors import UsageError
from sldpack.init import SCHEMES, generate, init_parameters, tensor_sha256, theta0_digests
from sldpack.nn.init import init_module_, theta0, theta0_arrays

REPO = Path(__file__).resolve().parents[2]
VEC = json.loads((REPO / "spec" / "conformance" / "init" / "vectors.json").read_text("utf-8"))


def small_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 6, 3), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Conv2d(6, 5, 3, bias=False), nn.Flatten(), nn.Linear(5 * 4 * 4, 3),
    )


def entries(m: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    out = [(n, tuple(p.shape)) for n, p in m.named_parameters()]
    return out + [(n, tuple(b.shape)) for n, b in m.named_buffers()]


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_init_module_equals_numpy_reference(scheme: str) -> None:
    m = small_net()
    kw = {"constant": 0.25} if scheme == "constant" else {}
    digests = init_module_(m, 77, scheme, **kw)
    ref = init_parameters(77, scheme, entries(m), **kw)
    state = m.state_dict()
    assert set(state) == set(ref)
    for name, arr in ref.items():
        assert same_bits(state[name].numpy(), arr), name
    assert digests == theta0_digests(77, scheme, entries(m), **kw)
    assert list(digests) == [n for n, _ in m.named_parameters()]
    assert digests["0.weight"] == tensor_sha256(m.get_parameter("0.weight").detach().numpy())
    assert int(m.get_buffer("1.num_batches_tracked")) == 0


def test_vectors_through_the_torch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tinit, "TASK_VALUES", 4 * 1000)  # many tasks per tensor: exercises the split
    for workers in (1, 2):
        for e in VEC["tensors"]:
            kw = {"constant": e["constant"]} if "constant" in e else {}
            name = e["name"]
            # theta0_arrays applies kind rules; the vectors' names are all rank>=2 *.weight except the
            # fill cases, which are valid as weights too
            if len(e["shape"]) < 2:
                continue
            (arr,) = theta0_arrays([(name, tuple(e["shape"]))], e["seed"], e["scheme"], workers=workers,
                                   **kw).values()
            assert tensor_sha256(arr) == e["sha256"], (name, e["scheme"], workers)
            if e["values_f32"] is not None:
                got = [f"{int(w):08x}" for w in np.ascontiguousarray(arr).reshape(-1).view("<u4")]
                assert got == e["values_f32"]
    (model,) = VEC["models"]
    params = [(n, tuple(s)) for n, s in model["params"]]
    arrays = theta0_arrays(params, model["seed"], model["scheme"], workers=2)
    assert {n: tensor_sha256(arrays[n]) for n in model["theta0_sha256"]} == model["theta0_sha256"]


def test_thread_counts_give_identical_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tinit, "TASK_VALUES", 4 * 512)
    old = torch.get_num_threads()
    try:
        digests = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            digests.append(init_module_(small_net(), 5, "xavier_normal"))
        assert digests[0] == digests[1]
    finally:
        torch.set_num_threads(old)


def test_digests_are_identical_in_a_fresh_process() -> None:
    code = (
        "import json, torch\n"
        "from torch import nn\n"
        "from sldpack.nn.init import init_module_\n"
        "torch.set_num_threads(2)\n"
        "m = nn.Sequential(nn.Conv2d(1, 6, 3), nn.BatchNorm2d(6), nn.ReLU(),\n"
        "                  nn.Conv2d(6, 5, 3, bias=False), nn.Flatten(), nn.Linear(5 * 4 * 4, 3))\n"
        "print(json.dumps(init_module_(m, 31337, 'kaiming_normal')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO)
    assert json.loads(out.stdout) == init_module_(small_net(), 31337, "kaiming_normal")


def test_theta0_leaves_module_untouched_and_matches_init() -> None:
    m = small_net()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    t = theta0(m, 9, "xavier_uniform")
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k])
    init_module_(m, 9, "xavier_uniform")
    state = m.state_dict()
    assert set(t) == set(state)
    for k, v in t.items():
        assert v.device.type == "cpu"
        assert torch.equal(v, state[k])
    assert t["1.num_batches_tracked"].dtype == torch.int64


def test_float64_module_gets_the_float32_values() -> None:
    m = small_net().double()
    digests = init_module_(m, 3)
    ref = generate(3, "5.weight", (3, 80), "xavier_normal")
    assert np.array_equal(m.get_parameter("5.weight").detach().numpy(), ref.astype(np.float64))
    assert digests["5.weight"] == tensor_sha256(ref)


def test_unknown_parameter_is_refused_before_anything_changes() -> None:
    m = small_net()
    m.register_parameter("alpha", nn.Parameter(torch.full((2,), 7.0)))
    alpha = m.get_parameter("alpha")
    w = m.get_parameter("0.weight").detach().clone()
    with pytest.raises(UsageError):
        init_module_(m, 1)
    assert torch.equal(m.get_parameter("0.weight").detach(), w)
    assert torch.equal(alpha.detach(), torch.full((2,), 7.0))
    with pytest.raises(UsageError):
        init_module_(small_net(), 1, "orthogonal")
    with pytest.raises(UsageError):
        init_module_(small_net(), -5)


def test_requires_grad_and_autograd_still_work() -> None:
    m = small_net()
    init_module_(m, 2)
    assert all(p.requires_grad for p in m.parameters())
    loss = m(torch.zeros(2, 1, 8, 8)).sum()
    loss.backward()
    assert m.get_parameter("5.bias").grad is not None


def test_zoo_network_matches_its_spec_list() -> None:
    zoo = pytest.importorskip("sldpack.nn.zoo")
    kw = {"in_channels": 1, "num_classes": 3, "image_size": (28, 28), "batchnorm": True}
    m = zoo.build("convnet@1", **kw)
    digests = init_module_(m, 1234)
    params = list(zoo.param_shapes("convnet@1", **kw)) + list(zoo.buffer_shapes("convnet@1", **kw))
    assert digests == theta0_digests(1234, "xavier_normal", params)


def test_fans_and_gains_are_pytorchs() -> None:
    from sldpack.init.schemes import KAIMING_GAIN, fans

    for shape in [(3, 5), (64, 1, 7, 7), (16, 8, 3, 3), (4, 2, 1, 1), (6, 3, 2, 2, 2)]:
        assert fans(shape) == torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert torch.nn.init.calculate_gain("relu") == KAIMING_GAIN
    assert torch.nn.init.calculate_gain("leaky_relu", 0) == KAIMING_GAIN
    assert torch.nn.init.calculate_gain("linear") == 1.0  # the Xavier gain used
