"""Backend selection of the portable init: numpy reference or compiled kernel, env override, fallback.

These run with or without the compiled extension; the kernel's bits are checked in test_kernels.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import sldpack.init.backend as backend_mod
from sldpack.errors import UsageError
from sldpack.init import BACKENDS, c_kernel_available, default_backend, generate, philox4x32_10
from sldpack.init.backend import ENV_VAR, resolve_backend
from sldpack.init.schemes import fill_into, plan_values

REPO = Path(__file__).resolve().parents[2]


def test_names_and_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert BACKENDS == ("numpy", "c")
    assert default_backend() == ("c" if c_kernel_available() else "numpy")
    assert resolve_backend(None) == default_backend()
    assert resolve_backend("numpy") == "numpy"
    for bad in ("C", "cuda", "", "torch"):
        with pytest.raises(UsageError):
            resolve_backend(bad)


def test_env_var_forces_a_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "numpy")
    assert default_backend() == "numpy"
    monkeypatch.setenv(ENV_VAR, "fortran")
    with pytest.raises(UsageError, match="fortran"):
        default_backend()
    with pytest.raises(UsageError):
        generate(0, "a.weight", (2, 2), "xavier_normal")
    assert generate(0, "a.weight", (2, 2), "xavier_normal", backend="numpy").shape == (2, 2)  # explicit wins
    monkeypatch.setenv(ENV_VAR, "c")
    if c_kernel_available():
        assert default_backend() == "c"
    else:
        with pytest.raises(UsageError, match="not built"):
            default_backend()


def test_without_the_extension_everything_falls_back_to_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(backend_mod, "_kernel", None)  # as if the import had failed
    assert not c_kernel_available()
    assert default_backend() == "numpy"
    with pytest.raises(UsageError, match="not built"):
        resolve_backend("c")
    a = generate(3, "a.weight", (5, 7), "kaiming_normal")
    b = generate(3, "a.weight", (5, 7), "kaiming_normal", backend="numpy")
    assert a.tobytes() == b.tobytes()


def test_a_kernel_failing_its_self_check_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("sldpack.init._kernels")
    fake.philox4x32_10 = lambda *args: (0, 0, 0, 0)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sldpack.init._kernels", fake)
    monkeypatch.setattr(backend_mod, "_kernel", backend_mod._UNSET)
    with pytest.warns(RuntimeWarning, match="known-answer"):
        assert backend_mod.c_kernel() is None
    assert not c_kernel_available()


def test_a_kernel_with_wrong_binary64_values_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    # right Philox, but Box-Muller intermediates that differ (what an FMA-contracted build produces)
    fake = types.ModuleType("sldpack.init._kernels")
    fake.philox4x32_10 = lambda *a: tuple(philox4x32_10(list(a[:4]), list(a[4:])).tolist())  # type: ignore[attr-defined]

    def normal_f64(r: np.ndarray, t: np.ndarray, sigma: float, zc: np.ndarray, zs: np.ndarray) -> None:
        zc[:] = 0.0
        zs[:] = 0.0

    fake.normal_f64 = normal_f64  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sldpack.init._kernels", fake)
    monkeypatch.setattr(backend_mod, "_kernel", backend_mod._UNSET)
    with pytest.warns(RuntimeWarning, match="binary64"):
        assert backend_mod.c_kernel() is None


def test_numpy_reference_accepts_any_start() -> None:
    # the reference serves unaligned ranges too (from their whole Philox blocks)
    plan = plan_values(11, "features.0.weight", (3, 37), "xavier_normal")
    full = np.empty(plan.count, dtype=np.float32)
    fill_into(full, plan, 0, backend="numpy")
    for start, count in [(1, 1), (2, 5), (3, 1), (5, 100), (110, 1), (7, 0)]:
        part = np.empty(count, dtype=np.float32)
        fill_into(part, plan, start, backend="numpy")
        assert part.tobytes() == full[start : start + count].tobytes(), (start, count)


def test_process_with_env_override_gives_the_same_digest() -> None:
    code = ("import sldpack.init as I; print(I.default_backend(), "
            "I.tensor_sha256(I.generate(9, 'fc.weight', (3, 17), 'xavier_uniform')))")
    outs = {}
    for be in ("numpy", *(["c"] if c_kernel_available() else [])):
        env = {**os.environ, ENV_VAR: be}
        res = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO,
                             env=env)
        name, digest = res.stdout.split()
        assert name == be
        outs[be] = digest
    assert len(set(outs.values())) == 1
