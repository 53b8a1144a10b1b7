"""The portable theta0 for torch modules: bit-identical to :mod:`sldpack.init`, in place and threaded.

The values come from :func:`sldpack.init.schemes.fill_into`: the compiled kernel when it is built,
else the numpy reference (both are the spec's operations, no libm, and give the same bits; see
:mod:`sldpack.init.backend`). What this module adds is speed and torch plumbing: every tensor is cut
into block-aligned ranges that ``torch.get_num_threads()`` worker threads fill at once (the kernel
and numpy's loops release the GIL), straight into the module's CPU float32 parameters and BN
buffers, or into float32 arrays copied under ``torch.no_grad`` for other devices and dtypes: values
are always drawn as float32 on the CPU (never by a device RNG).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Final, TypeVar, cast

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from sldpack.errors import UsageError
from sldpack.init.backend import resolve_backend
from sldpack.init.philox import check_seed
from sldpack.init.schemes import (
    BUFFER_KINDS,
    DEFAULT_SCHEME,
    ValuePlan,
    check_scheme,
    fill_into,
    param_kind,
    plan_values,
    scheme_for,
)

__all__ = ["TASK_VALUES", "init_module_", "theta0", "theta0_arrays"]

# Values per worker task: big enough that thread hand-off is noise (about 20 ms of work),
# a multiple of 4 so every task starts on a Philox block.
TASK_VALUES: Final = 1 << 20

_T = TypeVar("_T")
_R = TypeVar("_R")


def _entries(module: nn.Module) -> list[tuple[str, torch.Tensor, bool]]:
    """``(name, tensor, is_param)`` for every parameter, then every BN buffer (canonical names)."""
    out: list[tuple[str, torch.Tensor, bool]] = [(n, p, True) for n, p in module.named_parameters()]
    out += [(n, b, False) for n, b in module.named_buffers() if n.rsplit(".", 1)[-1] in BUFFER_KINDS]
    return out


def _run(fn: Callable[[_T], _R], items: Sequence[_T], workers: int) -> list[_R]:
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))


def _dest(arr: object, name: str, dims: tuple[int, ...], dtype: type[np.generic]) -> npt.NDArray[np.generic]:
    """Check a caller-supplied destination array for entry ``name``."""
    if not isinstance(arr, np.ndarray) or arr.dtype != np.dtype(dtype) or arr.shape != dims:
        raise UsageError(f"out[{name!r}] must be a {np.dtype(dtype).name} array of shape {dims}")
    if not arr.flags.c_contiguous or not arr.flags.writeable:
        raise UsageError(f"out[{name!r}] must be a writable C-contiguous array")
    return arr


def theta0_arrays(
    params: Sequence[tuple[str, Sequence[int]]],
    seed: int,
    scheme: str = DEFAULT_SCHEME,
    *,
    constant: float = 0.0,
    workers: int | None = None,
    backend: str | None = None,
    out: Mapping[str, npt.NDArray[np.generic]] | None = None,
) -> dict[str, npt.NDArray[np.generic]]:
    """theta0 of an ordered ``(name, shape)`` list, like ``sldpack.init.init_parameters`` but threaded.

    Args:
        params: ordered ``(name, shape)`` pairs (parameters and BN buffers).
        seed: integer in ``[0, 2**64)``.
        scheme: one of ``sldpack.init.SCHEMES`` (applies to rank >= 2 weights).
        constant: the value for ``scheme="constant"``.
        workers: threads; ``None`` means ``torch.get_num_threads()``. The bits never depend on it.
        backend: ``"c"``, ``"numpy"`` or ``None`` (the default of ``sldpack.init.backend``); same bits.
        out: optional destinations by name (C-contiguous, writable; float32, or int64 for
            ``num_batches_tracked``; the entry's shape): those entries are written there in place
            instead of into new arrays. Nothing is written unless every entry is valid.

    Returns:
        ``{name: array}`` in the given order (float32; int64 for ``num_batches_tracked``); the
        arrays of ``out`` where given.

    Raises:
        UsageError: for a bad seed, scheme or backend, a duplicate name, an entry no rule covers, or
            an unsuitable ``out`` array.
    """
    check_seed(seed)
    check_scheme(scheme)
    be = resolve_backend(backend)
    nworkers = torch.get_num_threads() if workers is None else int(workers)
    dests = {} if out is None else out
    result: dict[str, npt.NDArray[np.generic]] = {}
    zeroed: list[npt.NDArray[np.generic]] = []
    tasks: list[tuple[npt.NDArray[np.float32], ValuePlan, int]] = []
    for name, shape in params:  # plan and validate everything before writing anything
        if name in result:
            raise UsageError(f"parameter {name!r} is listed twice")
        dims = tuple(shape)
        kind = param_kind(name, dims)
        if kind == "num_batches_tracked":
            if name in dests:
                result[name] = _dest(dests[name], name, dims, np.int64)
                zeroed.append(result[name])
            else:
                result[name] = np.zeros(dims, dtype=np.int64)
            continue
        plan = plan_values(seed, name, dims, scheme_for(kind, scheme), constant=constant)
        if name in dests:
            result[name] = _dest(dests[name], name, dims, np.float32)
            buf = cast(npt.NDArray[np.float32], result[name]).reshape(-1)  # a view: C-contiguous
        else:
            buf = np.empty(plan.count, dtype=np.float32)
            result[name] = buf.reshape(dims)
        for lo in range(0, plan.count, TASK_VALUES):
            tasks.append((buf[lo : lo + TASK_VALUES], plan, lo))

    def work(task: tuple[npt.NDArray[np.float32], ValuePlan, int]) -> None:
        fill_into(*task, backend=be)

    for arr in zeroed:
        arr.fill(0)
    # big tasks first, so the last worker to finish is not stuck with a large one
    tasks.sort(key=lambda t: -t[0].shape[0])
    _run(work, tasks, nworkers)
    return result


def _sha256_f32(arr: npt.NDArray[np.generic]) -> str:
    a = np.ascontiguousarray(arr, dtype="<f4")
    return hashlib.sha256(a.reshape(-1).data).hexdigest()  # releases the GIL


def init_module_(
    module: nn.Module, seed: int, scheme: str = DEFAULT_SCHEME, *, constant: float = 0.0
) -> dict[str, str]:
    """Initialise every parameter and BN buffer of ``module`` in place with the portable theta0.

    Names are the module's own (``named_parameters()`` / ``named_buffers()``), which are the
    canonical names of the architecture annex. Kinds follow the init annex: rank >= 2 ``*.weight``
    gets ``scheme``, rank-1 ``*.bias`` zeros, rank-1 ``*.weight`` ones, ``running_mean`` zeros,
    ``running_var`` ones, ``num_batches_tracked`` 0. Other buffers are left untouched.

    Args:
        module: any ``nn.Module`` (any device, floating dtype; values are drawn as float32).
        seed: integer in ``[0, 2**64)``.
        scheme: one of ``sldpack.init.SCHEMES``; default ``xavier_normal``.
        constant: the value for ``scheme="constant"``.

    Returns:
        ``{parameter name: SHA-256 of its float32 little-endian bytes}`` in ``named_parameters()``
        order: the manifest's ``init.theta0_sha256``.

    Raises:
        UsageError: for a bad seed or scheme, or a parameter no rule covers (nothing is modified then).
    """
    entries = _entries(module)
    # CPU float32 (int64 for the batch counters) contiguous tensors are written in place through
    # numpy views: no second buffer, no copy. Others (devices, dtypes) get a float32 copy.
    inplace: dict[str, npt.NDArray[np.generic]] = {}
    for name, tensor, _ in entries:
        leaf = name.rsplit(".", 1)[-1]
        want = torch.int64 if leaf == "num_batches_tracked" else torch.float32
        on_cpu = tensor.device.type == "cpu" and tensor.layout == torch.strided
        if on_cpu and tensor.dtype == want and tensor.is_contiguous():
            inplace[name] = tensor.detach().numpy()
    params = [(n, tuple(t.shape)) for n, t, _ in entries]
    values = theta0_arrays(params, seed, scheme, constant=constant, out=inplace)
    with torch.no_grad():
        for name, tensor, _ in entries:
            if name in inplace:  # written behind autograd's back: bump the version, as copy_ would
                torch.autograd.graph.increment_version(tensor)
            else:
                tensor.copy_(torch.from_numpy(values[name]))
    param_names = [n for n, _, is_param in entries if is_param]
    digests = _run(lambda n: _sha256_f32(values[n]), param_names, torch.get_num_threads())
    return dict(zip(param_names, digests, strict=True))


def theta0(
    module: nn.Module, seed: int, scheme: str = DEFAULT_SCHEME, *, constant: float = 0.0
) -> dict[str, torch.Tensor]:
    """The portable theta0 of ``module`` as new CPU tensors, without touching the module.

    Args:
        module: the network (only names and shapes are read).
        seed: integer in ``[0, 2**64)``.
        scheme: one of ``sldpack.init.SCHEMES``.
        constant: the value for ``scheme="constant"``.

    Returns:
        ``{name: tensor}``: parameters (float32) in ``named_parameters()`` order, then BN buffers
        (``num_batches_tracked`` as int64), ready for ``module.load_state_dict(..., strict=False)``.

    Raises:
        UsageError: as :func:`init_module_`.
    """
    entries = _entries(module)
    values = theta0_arrays([(n, tuple(t.shape)) for n, t, _ in entries], seed, scheme, constant=constant)
    return {name: torch.from_numpy(arr) for name, arr in values.items()}
