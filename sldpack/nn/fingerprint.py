"""The replay fingerprint: compute it for a replayed network, compare a replay with a recorded one.

The fingerprint pins the result down twice: the SHA-256 of theta_opt in canonical order under a reference
configuration (CPU, float32, a recorded torch thread count), and the logits of theta_opt on probe
inputs drawn from a seed with the portable Philox generator, with a tolerance for other devices/stacks;
per-tensor state sketches with calibrated tolerances say which tensor moved (spec annex replay, section 6).
"""

from __future__ import annotations

import contextlib
import math
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from sldpack.errors import UsageError
from sldpack.format.manifest import Manifest, ReplayFingerprint
from sldpack.nn.config import DEFAULT_PROBE_COUNT, DEFAULT_REFERENCE_THREADS
from sldpack.nn.device import thread_count
from sldpack.nn.network import canonical_state, input_shape, theta_digest
from sldpack.nn.replay import replay_arrays

__all__ = [
    "CALIBRATION_FACTOR",
    "PROBE_STREAM",
    "SKETCH_SIZE",
    "STATE_FLOOR_REL",
    "ComparisonStatus",
    "FingerprintComparison",
    "calibration_replays",
    "compare_fingerprint",
    "compute_fingerprint",
    "default_tolerance",
    "fingerprint_arrays",
    "probe_inputs",
    "probe_logits",
    "reference_config",
    "refingerprint",
    "state_sketch",
]

PROBE_STREAM = "sldp.replay.probe"
"""Tensor name fed to the portable Philox generator to derive the probe inputs' stream."""
SKETCH_SIZE = 3
"""Values per tensor in ``replay.state_sketch`` (random-sign projections, spec annex replay section 6)."""
CALIBRATION_FACTOR = 64.0
"""Tolerance = this factor x the largest deviation seen under one-ulp input perturbations (writer rule)."""
STATE_FLOOR_REL = 1e-5
"""Per-tensor tolerance floor, relative to the tensor's RMS (a tensor no perturbation moved, e.g. theta_bn)."""


def probe_inputs(seed: int, count: int, channels: int, image_size: tuple[int, int]) -> np.ndarray:
    """Probe inputs ``float32 [count, C, H, W]``, uniform on [-2, 2), from the portable Philox stream.

    Word ``i`` of the stream ``(seed, "sldp.replay.probe")`` (init annex: stream derivation) gives
    ``u_i = (w_i >> 8) * 2^-24`` and the C-order element ``i`` is ``4 u_i - 2``. Every step is exact in
    float32, so the probes are bit-identical on every platform and any difference in the probe logits
    comes from the network, not from the probes.
    """
    from sldpack.init.philox import stream_words

    shape = (count, channels, image_size[0], image_size[1])
    n = count * channels * image_size[0] * image_size[1]
    w = stream_words(seed, PROBE_STREAM, 0, n)
    u = (w >> np.uint32(8)).astype(np.float32) * np.float32(2.0**-24)  # exact: 24-bit integer x 2^-24
    return (np.float32(4.0) * u - np.float32(2.0)).astype(np.float32).reshape(shape)


def probe_logits(module: nn.Module, inputs: np.ndarray) -> np.ndarray:
    """Logits ``float32 [count, K]`` of ``module`` (in whatever mode it is) on ``inputs``."""
    dev = next(module.parameters()).device
    with torch.no_grad():
        out = module(torch.from_numpy(np.ascontiguousarray(inputs)).to(dev))
    return np.asarray(out.detach().to("cpu", torch.float32).numpy(), dtype=np.float32)


def default_tolerance(logits: np.ndarray) -> float:
    """Tolerance on probe logits for other devices/stacks: ``1e-3 * max(1, max |logit|)``."""
    scale = float(np.max(np.abs(logits))) if logits.size else 0.0
    return 1e-3 * max(1.0, scale)


def reference_config(threads: int) -> dict[str, Any]:
    """Describe the configuration a fingerprint is computed under (stored in ``replay.reference``)."""
    cap = ""
    with contextlib.suppress(Exception):
        cap = str(torch.backends.cpu.get_cpu_capability())
    return {"device": "cpu", "dtype": "float32", "threads": int(threads), "torch": torch.__version__,
            "cpu_capability": cap, "machine": platform.machine(), "system": platform.system()}


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser, elementwise on uint32 (wrapping arithmetic)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    out: np.ndarray = h ^ (h >> np.uint32(16))
    return out


def state_sketch(values: Tensor | np.ndarray, k: int = SKETCH_SIZE) -> tuple[float, ...]:
    """``k`` random-sign projections of a tensor, scaled to its RMS (spec annex replay, section 6).

    ``s_j = (sum_i r_ji * v_i) / sqrt(n)`` in binary64 over the C-order binary32 values ``v``, with
    ``r_ji = +1`` if bit 31 of ``fmix32((i + j * 0x9E3779B9) mod 2^32)`` is 0, else ``-1``. Each ``s_j`` has
    the tensor's RMS as its typical size, and a change ``d`` of the values moves it by about ``rms(d)``.
    """
    a = values.detach().to("cpu", torch.float32).contiguous().numpy() if isinstance(values, Tensor) else values
    v = np.asarray(a, dtype=np.float64).reshape(-1)
    n = v.size
    if n == 0:
        return (0.0,) * k
    idx = np.arange(n, dtype=np.uint64)
    out = []
    for j in range(k):
        h = _fmix32(((idx + np.uint64(j * 0x9E3779B9)) & np.uint64(0xFFFFFFFF)).astype(np.uint32))
        signs = 1.0 - 2.0 * (h >> np.uint32(31)).astype(np.float64)
        out.append(float(np.dot(signs, v)) / math.sqrt(n))
    return tuple(out)


def _sketches(module: nn.Module, sizes: Mapping[str, int] | None = None) -> dict[str, tuple[float, ...]]:
    # a file may record any k (1..64) per tensor (spec 5.9): compare like with like, k = the recorded length
    sizes = sizes or {}
    return {n: state_sketch(t, sizes.get(n, SKETCH_SIZE)) for n, t in canonical_state(module)}


def _rms(t: Tensor) -> float:
    v = t.detach().to("cpu", torch.float64)
    return float(v.pow(2).mean().sqrt()) if v.numel() else 0.0


def compute_fingerprint(module: nn.Module, *, probe_seed: int, probe_count: int = DEFAULT_PROBE_COUNT,
                        threads: int, tolerance: float | None = None,
                        calibration: Sequence[nn.Module] = ()) -> ReplayFingerprint:
    """Fingerprint of a replayed module (eval mode, on CPU, computed under ``threads`` threads).

    Args:
        module: the replayed network.
        probe_seed, probe_count: the probe inputs.
        threads: the CPU thread count of the reference configuration.
        tolerance: the probe-logit tolerance to store (``None``: by the rule below).
        calibration: replays of the same file under one-ulp input perturbations
            (:func:`calibration_replays`). Tolerances are ``CALIBRATION_FACTOR`` x the largest deviation
            they show, floored at ``1e-3 * max(1, max |logit|)`` for the logits and ``STATE_FLOOR_REL`` x
            RMS per tensor. Without calibration only the floors apply, which fits well-conditioned files only.
    """
    c, h, w = input_shape(module)
    probes = probe_inputs(probe_seed, probe_count, c, (h, w))
    with thread_count(threads):
        state = canonical_state(module)
        digest = theta_digest(state)
        logits = probe_logits(module, probes)
        sketch = _sketches(module)
        cal_logits = [probe_logits(m, probes) for m in calibration]
        cal_sketch = [_sketches(m) for m in calibration]
    logit_dev = max((float(np.max(np.abs(cl.astype(np.float64) - logits))) if logits.size else 0.0
                     for cl in cal_logits), default=0.0)
    tol = max(default_tolerance(logits), CALIBRATION_FACTOR * logit_dev) if tolerance is None else float(tolerance)
    state_tol = {}
    for name, t in state:
        dev = max((max((abs(a - b) for a, b in zip(cs[name], sketch[name], strict=True)), default=0.0)
                   for cs in cal_sketch), default=0.0)
        state_tol[name] = max(CALIBRATION_FACTOR * dev, STATE_FLOOR_REL * _rms(t))
    return ReplayFingerprint(
        theta_opt_sha256=digest, probe_seed=probe_seed, probe_count=probe_count,
        probe_logits=tuple(float(v) for v in logits.reshape(-1)), tolerance=tol,
        reference={**reference_config(threads), "calibration": len(calibration)},
        state_sketch=sketch, state_tolerance=state_tol)


def _nudge(a: np.ndarray, salt: int) -> np.ndarray:
    """Every element one ulp up or down, the direction from a hash of (index, salt): rounding-like noise.

    Random signs matter: a uniform nudge (all up) is a scaling, which batch norm and softmax largely cancel,
    so it would underestimate how far real rounding differences travel.
    """
    f = np.ascontiguousarray(a, dtype=np.float32).reshape(-1)
    idx = np.arange(f.size, dtype=np.uint64)
    h = _fmix32(((idx + np.uint64(salt * 0x9E3779B9)) & np.uint64(0xFFFFFFFF)).astype(np.uint32))
    target = np.where(h >> np.uint32(31) == 0, np.float32(np.inf), np.float32(-np.inf)).astype(np.float32)
    return np.nextafter(f, target).astype(np.float32).reshape(np.shape(a))


def calibration_replays(manifest: Manifest, arrays: Mapping[str, np.ndarray], *, threads: int) -> list[nn.Module]:
    """Three replays with every image, label parameter and learning rate moved one ulp up or down, in
    pseudo-random directions (three different draws). They show how far rounding-level differences
    (another thread count, SIMD level or device) move this file's theta_opt and logits (spec annex
    replay, section 6)."""
    variants = [{**arrays, **{k: _nudge(arrays[k], 3 * v + i) for i, k in enumerate(("images", "labels", "lrs"))}}
                for v in range(1, 4)]
    return [replay_arrays(manifest, v, device="cpu", threads=threads).module for v in variants]


def fingerprint_arrays(manifest: Manifest, arrays: Mapping[str, np.ndarray], *, probe_seed: int,
                       probe_count: int = DEFAULT_PROBE_COUNT, threads: int = DEFAULT_REFERENCE_THREADS,
                       calibrate: bool = True) -> ReplayFingerprint:
    """The writer's fingerprint of a manifest + stored tensor values: replay on the CPU under ``threads``
    threads (never the distiller's own theta), plus the calibration replays (unless ``calibrate=False``)."""
    res = replay_arrays(manifest, arrays, device="cpu", threads=threads)
    cal = calibration_replays(manifest, arrays, threads=threads) if calibrate else []
    return compute_fingerprint(res.module, probe_seed=probe_seed, probe_count=probe_count, threads=threads,
                               calibration=cal)


ComparisonStatus = Literal["exact", "within_tolerance", "failed"]
"""Outcome of :func:`compare_fingerprint`."""


@dataclass(frozen=True)
class FingerprintComparison:
    """A replayed module against a recorded fingerprint (spec annex replay, section 7).

    Attributes:
        status: ``exact``, ``within_tolerance`` or ``failed``.
        actual_sha256: theta_opt digest of the replay.
        max_abs_deviation: largest probe-logit deviation (``None``: logit count differs).
        logit_ratio: ``max_abs_deviation / tolerance`` (> 1 fails).
        worst_tensor: the canonical-state tensor with the largest sketch deviation / its tolerance.
        worst_ratio: that ratio (> 1 fails); 0 when the fingerprint has no state sketch.
        reason: why it failed, empty otherwise.
        failures: every failing check, each ``{"check": "probe_logits" | "state_sketch", "tensor": name,
            "deviation": float | None, "tolerance": float | None}`` (``None``: not a finite number to show).
    """

    status: ComparisonStatus
    actual_sha256: str
    max_abs_deviation: float | None
    logit_ratio: float
    worst_tensor: str | None
    worst_ratio: float
    reason: str = ""
    failures: tuple[dict[str, Any], ...] = ()


def _failure(check: str, tensor: str | None, dev: float | None, tol: float | None) -> dict[str, Any]:
    finite = dev is not None and math.isfinite(dev)
    return {"check": check, "tensor": tensor, "deviation": dev if finite else None, "tolerance": tol}


def _ratio(dev: float, tol: float) -> float:
    # > 1 exactly when dev > tol ("within" includes equality, spec annex replay section 7): for positive
    # binary64 x > y the rounded x / y is > 1: x / y > 1 + 2^-53, past the midpoint between 1 and the next double
    if dev <= tol:
        return dev / tol if tol > 0 else 0.0
    return dev / tol if tol > 0 else math.inf


def compare_fingerprint(module: nn.Module, fp: ReplayFingerprint, *, threads: int) -> FingerprintComparison:
    """Compare a replayed module with a recorded fingerprint, tensor by tensor where the file allows.

    ``exact``: the theta_opt digest is the recorded one. ``within_tolerance``: it is not, but every probe
    logit is finite and within ``tolerance``, and (when the fingerprint has ``state_sketch``) every
    canonical-state tensor's sketch is within its ``state_tolerance``. ``failed`` otherwise.
    """
    c, h, w = input_shape(module)
    with thread_count(threads if next(module.parameters()).device.type == "cpu" else None):
        digest = theta_digest(canonical_state(module))
        got = probe_logits(module, probe_inputs(fp.probe_seed, fp.probe_count, c, (h, w))).reshape(-1)
        sketch = _sketches(module, {n: len(v) for n, v in fp.state_sketch.items()}) \
            if fp.state_sketch is not None else {}
    want = np.asarray(fp.probe_logits, dtype=np.float64)
    if got.shape != want.shape:
        return FingerprintComparison("failed", digest, None, math.inf, None, 0.0,
                                     f"{got.size} probe logits, the file records {want.size}",
                                     (_failure("probe_logits", "probe logits", None, fp.tolerance),))
    if not np.isfinite(got).all():
        return FingerprintComparison("failed", digest, math.inf, math.inf, None, 0.0, "a probe logit is not finite",
                                     (_failure("probe_logits", "probe logits", math.inf, fp.tolerance),))
    dev = float(np.max(np.abs(got.astype(np.float64) - want))) if want.size else 0.0
    lratio = _ratio(dev, fp.tolerance)
    worst, wratio, reason = None, 0.0, ""
    failures = [_failure("probe_logits", "probe logits", dev, fp.tolerance)] if lratio > 1 else []
    if fp.state_sketch is not None and fp.state_tolerance is not None:
        if set(sketch) != set(fp.state_sketch):
            reason = "the network's canonical state names differ from the recorded sketch's"
            wratio = math.inf
            failures.append(_failure("state_sketch", None, None, None))
        else:
            for name, rec in fp.state_sketch.items():
                mine = sketch[name]
                devs = [abs(a - b) for a, b in zip(mine, rec, strict=True)] if len(mine) == len(rec) else [math.inf]
                # a NaN deviation is never within tolerance (max() would skip it)
                d = math.inf if not all(map(math.isfinite, devs)) else max(devs, default=0.0)
                r = _ratio(d, fp.state_tolerance[name])
                if r > 1:
                    failures.append(_failure("state_sketch", name, d, fp.state_tolerance[name]))
                if r > wratio or worst is None:
                    worst, wratio = name, r
    if digest == fp.theta_opt_sha256:
        return FingerprintComparison("exact", digest, dev, lratio, worst, wratio)
    if lratio > 1:
        reason = reason or f"probe logits deviate by {dev:.3g} > tolerance {fp.tolerance:.3g}"
    elif wratio > 1:
        reason = reason or f"tensor {worst} deviates {wratio:.3g} x its tolerance"
    status: ComparisonStatus = "failed" if reason else "within_tolerance"
    return FingerprintComparison(status, digest, dev, lratio, worst, wratio, reason,
                                 tuple(failures) if reason else ())


# --- re-fingerprinting stored values (the sharing report's requantize) ------------------------------

def refingerprint(manifest: Manifest, arrays: Mapping[str, np.ndarray]) -> ReplayFingerprint:
    """Replay ``arrays`` (the values as stored) and compute a new fingerprint like the old one.

    Same probe seed and count as the manifest's fingerprint, under its recorded reference thread
    count (CPU), tolerances calibrated by the replay module's rule (spec annex replay, section 6).

    Raises:
        UsageError: the manifest has no fingerprint or cannot be replayed.
    """
    old = manifest.replay
    if old is None:
        raise UsageError("the file has no replay fingerprint to recompute")
    ref = old.reference.get("threads")
    threads = int(ref) if isinstance(ref, int) and ref > 0 else DEFAULT_REFERENCE_THREADS
    return fingerprint_arrays(manifest, arrays, probe_seed=old.probe_seed, probe_count=old.probe_count,
                              threads=threads)
