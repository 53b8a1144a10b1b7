"""Where torch runs and how reproducibly: device resolution, deterministic kernels, the CPU thread count.

Shared by replay, the distiller, normal training and the CLI's ``--device``/``--threads`` handling.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from sldpack.errors import UsageError

__all__ = ["deterministic", "resolve_device", "thread_count"]


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is checked and returned.

    Raises:
        UsageError: CUDA requested but not available, or an unknown device string.
    """
    if isinstance(device, torch.device):
        dev = device
    elif device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except RuntimeError as exc:
            raise UsageError(f"unknown {{device}} {device!r}: {exc}", field="device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("{device} cuda was requested but torch sees no CUDA device", field="device")
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(f"{{device}} {dev} is not supported (cpu, cuda)", field="device")
    return dev


@contextlib.contextmanager
def deterministic(device: torch.device) -> Iterator[None]:
    """Run a block with deterministic kernels and no TF32, restoring the previous settings after.

    On CUDA: cuDNN deterministic and not benchmarking, TF32 off (float32 means float32),
    ``torch.use_deterministic_algorithms(True, warn_only=True)`` and the cuBLAS workspace setting it
    needs. On CPU the kernels are already deterministic for a fixed thread count.
    """
    prev = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    if device.type == "cuda":
        # must be set before the first cuBLAS handle is created; harmless if already set
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        # warn_only: a few CUDA backward kernels (e.g. adaptive_avg_pool2d's, used by ResNet/VGG/GoogLeNet)
        # have no deterministic implementation; they warn instead of aborting the run. The replay
        # fingerprint's reference is the CPU, so GPU runs are judged "within tolerance" anyway.
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        # only when changed: torch.use_deterministic_algorithms imports torch._inductor.config (and with
        # it sympy, ~1 s) on its first call, which a CPU replay has no reason to pay
        if (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled()) != prev[:2]:
            torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])
        torch.backends.cudnn.deterministic = prev[2]
        torch.backends.cudnn.benchmark = prev[3]
        torch.backends.cuda.matmul.allow_tf32 = prev[4]
        torch.backends.cudnn.allow_tf32 = prev[5]


@contextlib.contextmanager
def thread_count(n: int | None) -> Iterator[None]:
    """Run a block with ``torch.set_num_threads(n)`` (``None``: leave it), then restore."""
    old = torch.get_num_threads()
    if n is not None and n != old:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)
