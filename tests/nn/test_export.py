"""ONNX and TorchScript exports of every zoo architecture agree with the torch module (tiny inputs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sldpack.errors import UsageError
from sldpack.nn.export import (
    EXPORT_RTOL,
    check_logits,
    export_onnx,
    export_torchscript,
    module_logits,
    run_onnx,
    run_torchscript,
)
from sldpack.nn.fingerprint import probe_inputs
from sldpack.nn.init import init_module_
from sldpack.nn.zoo import ARCHITECTURES, build, min_image_size

# the smallest input each network accepts (convnet with a small width): the export is about the graph,
# not about the input size; batch norm on, so theta_bn (eval-mode running statistics) is exported too
_TINY = {"convnet@1": {"depth": 2, "width": 8}}


def _module(arch_id: str) -> tuple[torch.nn.Module, np.ndarray]:
    opts = _TINY.get(arch_id)
    size = min_image_size(arch_id, opts)
    m = build(arch_id, in_channels=1, num_classes=3, image_size=size, batchnorm=True, options=opts)
    init_module_(m, 7, "kaiming_uniform")
    for name, b in m.named_buffers():  # non-trivial running statistics, so eval-mode BN is really checked
        if name.endswith("running_mean"):
            b.copy_(torch.linspace(-0.1, 0.1, b.numel()))
        elif name.endswith("running_var"):
            b.copy_(torch.linspace(0.5, 1.5, b.numel()))
    m.eval()
    return m, probe_inputs(3, 4, 1, size)


@pytest.mark.parametrize("arch_id", sorted(ARCHITECTURES))
def test_torchscript_export_agrees(arch_id: str, tmp_path: Path) -> None:
    m, x = _module(arch_id)
    ref = module_logits(m, x)
    p = tmp_path / "m.pt"
    export_torchscript(m, p, x[:2])
    check = check_logits(ref, run_torchscript(p, x))  # 4 inputs through a graph traced on 2: batch is free
    assert check.ok, check.summary()
    assert check.max_abs_diff <= EXPORT_RTOL * check.scale


_SLOW = ("alexnet@1", "vgg16@1", "vgg19@1")  # the torch.export exporter: 20-30 s each on a 2-core machine


@pytest.mark.parametrize("arch_id", [pytest.param(a, marks=pytest.mark.slow) if a in _SLOW else a
                                     for a in sorted(ARCHITECTURES)])
def test_onnx_export_agrees(arch_id: str, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    m, x = _module(arch_id)
    ref = module_logits(m, x)
    p = tmp_path / "m.onnx"
    exporter = export_onnx(m, p, x[:2])
    # AlexNet/VGG pool adaptively to 6x6/7x7 from 1x1 at these sizes: only the torch.export exporter can say that
    assert exporter == ("dynamo" if arch_id.split("@")[0] in ("alexnet", "vgg16", "vgg19") else "torchscript")
    got = run_onnx(p, x)
    check = check_logits(ref, got)
    assert check.ok, check.summary()
    assert got.shape == (4, 3)


def test_check_logits_catches_a_difference_and_a_shape_mismatch() -> None:
    ref = np.array([[10.0, -2.0, 0.5]], dtype=np.float32)
    assert check_logits(ref, ref).max_abs_diff == 0.0
    near = ref + np.float32(5e-4)  # relative 5e-5 of the scale 10
    assert check_logits(ref, near).ok
    far = ref.copy()
    far[0, 1] += 0.01  # relative 1e-3
    c = check_logits(ref, far)
    assert not c.ok
    assert c.relative == pytest.approx(1e-3, rel=1e-3)
    assert not check_logits(ref, ref[:, :2]).ok
    nan = ref.copy()
    nan[0, 0] = np.nan
    assert not check_logits(ref, nan).ok


def test_onnx_without_the_extra_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    m, x = _module("convnet@1")
    with pytest.raises(UsageError, match=r"sldpack\[export\]"):
        export_onnx(m, tmp_path / "m.onnx", x[:2])
    assert not (tmp_path / "m.onnx").exists()
