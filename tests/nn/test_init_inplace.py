"""The torch path writes theta0 straight into CPU float32 tensors (theta0_arrays(out=...), init_module_)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sldpack.errors import UsageError
from sldpack.init import init_parameters
from sldpack.nn.init import init_module_, theta0_arrays

PARAMS = [("c.weight", (4, 3, 3, 3)), ("c.bias", (4,)), ("bn.weight", (4,)), ("bn.running_var", (4,)),
          ("bn.num_batches_tracked", ()), ("fc.weight", (5, 37))]


def test_out_arrays_are_filled_in_place() -> None:
    ref = init_parameters(8, "kaiming_normal", PARAMS)
    out: dict[str, np.ndarray] = {"c.weight": np.full((4, 3, 3, 3), 9.0, np.float32),
                                  "bn.num_batches_tracked": np.array(5, np.int64)}
    got = theta0_arrays(PARAMS, 8, "kaiming_normal", out=out, workers=2)
    assert got["c.weight"] is out["c.weight"]
    assert got["bn.num_batches_tracked"] is out["bn.num_batches_tracked"]
    assert int(out["bn.num_batches_tracked"]) == 0
    assert list(got) == [n for n, _ in PARAMS]
    for name, arr in ref.items():
        assert arr.dtype == got[name].dtype
        assert arr.tobytes() == got[name].tobytes(), name


@pytest.mark.parametrize(
    "bad",
    [np.empty((4, 3, 3, 3), np.float64), np.empty((4, 27), np.float32), np.empty((3, 3, 3, 4), np.float32).T,
     np.empty(3, np.float32)],
)
def test_bad_out_arrays_are_refused_before_anything_is_written(bad: np.ndarray) -> None:
    first = np.full((4, 3, 3, 3), 9.0, np.float32)
    with pytest.raises(UsageError):
        theta0_arrays([("a.weight", (4, 3, 3, 3)), ("b.weight", (4, 3, 3, 3))], 1,
                      out={"a.weight": first, "b.weight": bad})
    assert np.all(first == 9.0)
    ro = np.empty((4, 3, 3, 3), np.float32)
    ro.flags.writeable = False
    with pytest.raises(UsageError):
        theta0_arrays([("a.weight", (4, 3, 3, 3))], 1, out={"a.weight": ro})


def test_init_module_writes_cpu_float32_tensors_in_place() -> None:
    m = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    ptrs = {n: t.data_ptr() for n, t in m.state_dict().items()}
    init_module_(m, 4, "xavier_uniform")
    state = m.state_dict()
    assert {n: t.data_ptr() for n, t in state.items()} == ptrs
    ref = init_parameters(4, "xavier_uniform", [(n, tuple(t.shape)) for n, t in state.items()])
    for name, arr in ref.items():
        assert state[name].numpy().tobytes() == arr.tobytes(), name


def test_in_place_write_is_seen_by_autograd() -> None:
    # like copy_, the in-place write must invalidate graphs that saved the old weight
    m = nn.Linear(3, 2)
    y = (m.weight * m.weight).sum()
    init_module_(m, 1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()  # type: ignore[no-untyped-call]


def test_non_contiguous_parameter_gets_a_copy() -> None:
    m = nn.Linear(4, 3)
    m.weight = nn.Parameter(torch.empty(4, 3).t())  # (3, 4), not contiguous
    init_module_(m, 6)
    ref = init_parameters(6, "xavier_normal", [("weight", (3, 4)), ("bias", (3,))])
    assert m.weight.detach().contiguous().numpy().tobytes() == ref["weight"].tobytes()
