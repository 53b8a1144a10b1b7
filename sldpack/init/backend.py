"""Which implementation computes theta0 values: the numpy reference or the optional C kernel.

Both produce the same bits (spec annex SLDP-1-init.md; the tests compare them on the conformance
vectors and on random tensors). The C kernel (``sldpack.init._kernels``, built by ``pip install``
when a C compiler is present) is several times faster; without it everything runs on numpy.

Selection, first match wins: an explicit ``backend=`` argument; the environment variable
``SLDP_INIT_BACKEND`` (``numpy`` or ``c``); the C kernel when it is built; numpy.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Final

import numpy as np
import numpy.typing as npt

from sldpack.errors import UsageError
from sldpack.init.philox import Stream

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "c_fill",
    "c_kernel",
    "c_kernel_available",
    "default_backend",
    "known_answer_check",
    "register_self_check",
    "resolve_backend",
]

BACKENDS: Final = ("numpy", "c")
ENV_VAR: Final = "SLDP_INIT_BACKEND"

# Random123's third known-answer row (annex section 2): a cheap check that the built kernel's
# integer arithmetic is Philox4x32-10.
_KAT_IN: Final = (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344, 0xA4093822, 0x299F31D0)
_KAT_OUT: Final = (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)

_UNSET: Final = object()
_kernel: object = _UNSET  # the checked module, None when absent or failing its check


# The numpy reference lives in schemes.py, which dispatches to this module; so the reference check of a
# built kernel is handed in by schemes (dependency inversion instead of an import cycle). Importing any
# sldpack.init module runs sldpack/init/__init__.py, which imports schemes, so it is set before first use.
SelfCheck = Callable[[ModuleType], "str | None"]
_self_check: SelfCheck | None = None


def register_self_check(check: SelfCheck) -> None:
    """Install the check a built kernel must pass before it is used (``check(module) -> why not | None``)."""
    global _self_check
    _self_check = check


def known_answer_check(mod: ModuleType) -> str | None:
    """Why ``mod`` is not Philox4x32-10 (Random123's third known-answer row), or ``None``."""
    if tuple(mod.philox4x32_10(*_KAT_IN)) != _KAT_OUT:
        return "Philox4x32-10 known-answer row differs"
    return None


def c_kernel() -> ModuleType | None:
    """The compiled kernel module, or ``None`` when it is not built (or fails its self-check).

    The first call imports it and compares a small sample with the numpy reference; a kernel that
    disagrees (a miscompiled build) is never used, and a ``RuntimeWarning`` says so.
    """
    global _kernel
    if _kernel is _UNSET:
        try:
            _kernels = importlib.import_module("sldpack.init._kernels")
        except ImportError:
            _kernel = None
        else:
            if _self_check is None:  # pragma: no cover - sldpack.init/__init__ imports schemes first
                raise RuntimeError("sldpack.init.schemes did not register the kernel self-check")
            why = _self_check(_kernels)
            if why is not None:
                warnings.warn(f"sldpack.init._kernels is not used: {why}; rebuild it with `pip install -e .`",
                              RuntimeWarning, stacklevel=2)
            _kernel = None if why is not None else _kernels
    return _kernel if isinstance(_kernel, ModuleType) else None


def c_kernel_available() -> bool:
    """Whether the C kernel is built and passes its self-check."""
    return c_kernel() is not None


def default_backend() -> str:
    """The backend used when none is named: ``$SLDP_INIT_BACKEND``, else ``"c"`` if built, else ``"numpy"``.

    Raises:
        UsageError: if the environment variable names an unknown backend, or ``c`` when it is not built.
    """
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return resolve_backend(env)
    return "c" if c_kernel_available() else "numpy"


def resolve_backend(backend: str | None = None) -> str:
    """Validate a backend name; ``None`` means :func:`default_backend`.

    Args:
        backend: ``"numpy"`` (the reference), ``"c"`` (the compiled kernel) or ``None``.

    Returns:
        ``"numpy"`` or ``"c"``.

    Raises:
        UsageError: for an unknown name, or ``"c"`` when the kernel is not built.
    """
    if backend is None:
        return default_backend()
    if backend not in BACKENDS:
        raise UsageError(f"unknown init backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if backend == "c" and not c_kernel_available():
        raise UsageError("the C init kernel sldpack.init._kernels is not built (a C compiler is needed at "
                         "`pip install -e .`); use backend='numpy' or unset " + ENV_VAR)
    return backend


def c_fill(
    out: npt.NDArray[np.float32],
    transform: str,
    stream: Stream,
    start: int,
    scale: float,
    module: ModuleType | None = None,
) -> None:
    """Fill ``out`` with values ``start ..`` of a uniform or normal tensor using the C kernel.

    Args:
        out: 1-D C-contiguous float32 array (releases the GIL while filling it).
        transform: ``"uniform"`` (``scale`` = the float32 bound) or ``"normal"`` (``scale`` = sigma).
        stream: the tensor's stream.
        start: index of the first value (any, not only multiples of 4).
        scale: bound or sigma.
        module: the kernel module (default: :func:`c_kernel`).

    Raises:
        UsageError: if the kernel is not built or ``transform`` is not random.
    """
    mod = module if module is not None else c_kernel()
    if mod is None:
        raise UsageError("the C init kernel is not available")
    if transform == "normal":
        mod.fill_normal(out, stream.key0, stream.key1, stream.ctr2, stream.ctr3, start, scale)
    elif transform == "uniform":
        mod.fill_uniform(out, stream.key0, stream.key1, stream.ctr2, stream.ctr3, start, scale)
    else:
        raise UsageError(f"the C kernel has no {transform!r} transform")
