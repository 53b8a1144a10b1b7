"""Write a replayed network in the forms other tools load (ONNX, TorchScript), and check each one.

An export is only reported as done after it has been loaded back by its own runtime (ONNX by
``onnxruntime``, TorchScript by ``torch.jit.load``) and its logits on probe inputs agree with the torch
module it came from: ``max |logit difference| <= rtol * max(1, max |reference logit|)`` (default rtol
:data:`EXPORT_RTOL`). The caller writes to a temporary path and keeps it only when :func:`check_logits`
passes (``sldpack.pipelines.export`` does), so a failed check never leaves a half-trusted file behind.

Two ONNX exporters exist in torch: the TorchScript-based one (``dynamo=False``: fast, available in every
supported torch, but unable to express an adaptive average pool whose output size does not divide its
input, which AlexNet and VGG have at small inputs) and the ``torch.export`` one (``dynamo=True``: needs
``onnxscript``, handles every zoo network, 10-30x slower). :func:`export_onnx` tries the first and falls back to
the second, and says which one wrote the file.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sldpack.errors import UsageError

__all__ = [
    "EXPORT_RTOL",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "ExportCheck",
    "check_logits",
    "export_onnx",
    "export_torchscript",
    "module_logits",
    "run_onnx",
    "run_torchscript",
]

EXPORT_RTOL = 1e-4
"""Largest accepted ``max |logit difference| / max(1, max |reference logit|)`` between an export and the replay."""
INPUT_NAME = "input"
"""Name of the exported graph's input: float32 ``[batch, C, H, W]``, already normalised (the file's mean/std)."""
OUTPUT_NAME = "logits"
"""Name of the exported graph's output: float32 ``[batch, num_classes]``."""


@dataclass(frozen=True)
class ExportCheck:
    """An export's logits against the torch module's on the same probe inputs.

    Attributes:
        max_abs_diff: largest absolute logit difference.
        scale: ``max(1, max |reference logit|)``.
        rtol: the accepted relative difference.
        probes: number of probe inputs.
    """

    max_abs_diff: float
    scale: float
    rtol: float
    probes: int

    @property
    def relative(self) -> float:
        """``max_abs_diff / scale``."""
        return self.max_abs_diff / self.scale

    @property
    def ok(self) -> bool:
        """True when the relative difference is within ``rtol`` (and finite)."""
        return bool(np.isfinite(self.max_abs_diff)) and self.relative <= self.rtol

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"max_abs_logit_diff": self.max_abs_diff, "scale": self.scale, "relative": self.relative,
                "rtol": self.rtol, "probes": self.probes, "ok": self.ok}

    def summary(self) -> str:
        """One human line."""
        verdict = "ok" if self.ok else "FAILED"
        return (f"max |logit difference| {self.max_abs_diff:.3g} over {self.probes} probe inputs "
                f"(relative {self.relative:.3g}, limit {self.rtol:g}): {verdict}")


def check_logits(reference: np.ndarray, got: np.ndarray, *, rtol: float = EXPORT_RTOL) -> ExportCheck:
    """Compare an export's logits with the reference; a shape mismatch is an infinite difference."""
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(got, dtype=np.float64)
    scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
    if ref.shape != out.shape:
        return ExportCheck(max_abs_diff=float("inf"), scale=scale, rtol=rtol, probes=int(ref.shape[0]))
    diff = float(np.max(np.abs(ref - out))) if ref.size else 0.0
    if not np.isfinite(out).all():
        diff = float("inf")
    return ExportCheck(max_abs_diff=diff, scale=scale, rtol=rtol, probes=int(ref.shape[0]))


def module_logits(module: nn.Module, inputs: np.ndarray) -> np.ndarray:
    """float32 logits of ``module`` (eval mode, on the CPU) for ``inputs`` ``[N, C, H, W]``."""
    with torch.no_grad():
        out = module(torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)))
    return np.asarray(out.detach().to("cpu", torch.float32).numpy(), dtype=np.float32)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # torch.jit and the TorchScript ONNX exporter warn that they are deprecated (and print tracer
    # warnings); the export is still what the receiver asked for, and the check below decides
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _cpu_eval(module: nn.Module) -> nn.Module:
    module = module.to("cpu")
    module.eval()
    return module


def _need(name: str, extra: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise UsageError(f"this export needs {name} (pip install 'sldpack[{extra}]'): {exc}") from None


def export_onnx(module: nn.Module, path: str | os.PathLike[str], example: np.ndarray, *,
                opset: int = 17) -> str:
    """Write ``module`` (eval mode) as an ONNX model with a dynamic batch axis.

    Args:
        module: the network; it is moved to the CPU and put in eval mode.
        path: the ``.onnx`` file to write (the caller makes it final only after a check).
        example: float32 ``[N, C, H, W]`` example inputs (N >= 2, so the batch axis is not fixed to 1).
        opset: the ONNX opset of the TorchScript-based exporter.

    Returns:
        ``"torchscript"`` or ``"dynamo"``: the exporter that wrote the file.

    Raises:
        UsageError: neither exporter can express the network (the message names the operator), or the
            ``export`` extra is missing.
    """
    _need("onnx", "export")
    m = _cpu_eval(module)
    x = torch.from_numpy(np.ascontiguousarray(example, dtype=np.float32))
    p = Path(path)
    first: Exception | None = None
    try:
        with _quiet(), contextlib.redirect_stdout(io.StringIO()):
            torch.onnx.export(m, (x,), str(p), dynamo=False, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                              opset_version=opset, do_constant_folding=True)
        return "torchscript"
    except Exception as exc:  # e.g. torch.onnx.errors.SymbolicValueError (adaptive pool); the fallback may work
        first = exc
        with contextlib.suppress(OSError):
            p.unlink()
    _need("onnxscript", "export")
    try:
        batch = torch.export.Dim("batch", min=1)
        with _quiet(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            torch.onnx.export(m, (x,), str(p), dynamo=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_shapes=({0: batch},), external_data=False, report=False, verbose=False)
        return "dynamo"
    except Exception as exc:
        with contextlib.suppress(OSError):
            p.unlink()
        raise UsageError(f"ONNX cannot express this network: {type(first).__name__}: {_first_line(first)}; "
                         f"torch.export exporter: {type(exc).__name__}: {_first_line(exc)}") from None


def _first_line(exc: BaseException | None) -> str:
    return "" if exc is None else (str(exc).strip().splitlines() or [""])[0][:300]


def run_onnx(path: str | os.PathLike[str], inputs: np.ndarray) -> np.ndarray:
    """Logits of the ONNX model at ``path`` under ``onnxruntime`` (CPU) for ``inputs``."""
    ort = _need("onnxruntime", "export")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())  # the same CPU budget as torch here
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    out = sess.run(None, {name: np.ascontiguousarray(inputs, dtype=np.float32)})[0]
    return np.asarray(out, dtype=np.float32)


def export_torchscript(module: nn.Module, path: str | os.PathLike[str], example: np.ndarray) -> None:
    """Write ``module`` (eval mode) as TorchScript (``torch.jit.trace``; zoo networks have no data-dependent
    control flow, so tracing records them exactly)."""
    m = _cpu_eval(module)
    x = torch.from_numpy(np.ascontiguousarray(example, dtype=np.float32))
    jit: Any = torch.jit  # partly unannotated
    with _quiet(), torch.no_grad():
        traced = jit.trace(m, x, check_trace=False)
        jit.save(traced, str(path))


def run_torchscript(path: str | os.PathLike[str], inputs: np.ndarray) -> np.ndarray:
    """Logits of the TorchScript file at ``path``, reloaded with ``torch.jit.load``, for ``inputs``."""
    jit: Any = torch.jit
    with _quiet():
        loaded = jit.load(str(path), map_location="cpu")
    loaded.eval()
    with torch.no_grad():
        out = loaded(torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)))
    return np.asarray(out.detach().to("cpu", torch.float32).numpy(), dtype=np.float32)
