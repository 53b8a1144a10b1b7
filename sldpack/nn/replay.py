"""Replay: ``.sldp`` file -> theta_opt -> ready ``nn.Module``, and the replay fingerprint.

Replay builds the architecture named by the manifest, draws theta_0 with the portable init, runs the
shared :func:`~sldpack.nn.unroll.unroll` (not differentiated) over the stored images, label parameters
and learning rates, loads the stored batch-norm statistics theta_bn and switches to eval mode
(spec/SLDP-1-replay.md).

The fingerprint pins the result down twice: the SHA-256 of theta_opt in canonical order under a reference
configuration (CPU, float32, a recorded torch thread count), and the logits of theta_opt on probe
inputs drawn from a seed with the portable Philox generator, with a tolerance for other devices/stacks.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import platform
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import Tensor, nn

from sldpack.errors import ReplayMismatchError, UsageError
from sldpack.format.manifest import ArchSpec, InitSpec, Manifest, ReplayFingerprint
from sldpack.nn.config import DEFAULT_PROBE_COUNT, DEFAULT_REFERENCE_THREADS
from sldpack.nn.unroll import Schedule, apply_label_transform, scratch_buffers, set_inner_mode, unroll

__all__ = [
    "DEFAULT_PROBE_COUNT",
    "DEFAULT_REFERENCE_THREADS",
    "FingerprintComparison",
    "ReplayReport",
    "ReplayResult",
    "ReplayStatus",
    "buffer_names",
    "build_module",
    "calibration_replays",
    "canonical_state",
    "check_fingerprint",
    "check_replayable",
    "compare_fingerprint",
    "compute_fingerprint",
    "default_tolerance",
    "deterministic",
    "fingerprint_arrays",
    "load_model",
    "probe_inputs",
    "probe_logits",
    "reference_config",
    "refingerprint",
    "replay",
    "replay_and_verify",
    "replay_arrays",
    "resolve_device",
    "save_safetensors",
    "state_sketch",
    "theta_digest",
    "thread_count",
    "verify_replay",
]

"""Thread count of the reference configuration: 1 can be reproduced on every machine."""
PROBE_STREAM = "sldp.replay.probe"
"""Tensor name fed to the portable Philox generator to derive the probe inputs' stream."""
SKETCH_SIZE = 3
"""Values per tensor in ``replay.state_sketch`` (random-sign projections, spec annex replay section 6)."""
CALIBRATION_FACTOR = 64.0
"""Tolerance = this factor x the largest deviation seen under one-ulp input perturbations (writer rule)."""
STATE_FLOOR_REL = 1e-5
"""Per-tensor tolerance floor, relative to the tensor's RMS (a tensor no perturbation moved, e.g. theta_bn)."""

SourceLike = str | os.PathLike[str] | bytes


# --- devices and determinism -------------------------------------------------------------------------

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
            raise UsageError(f"unknown device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was requested but torch sees no CUDA device")
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(f"device {dev} is not supported (cpu, cuda)")
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


# --- canonical state and digests ------------------------------------------------------------------

def buffer_names(module: nn.Module) -> list[str]:
    """Names of the floating-point buffers (batch-norm running mean/var), in ``named_buffers`` order.

    These are theta_bn: stored as ``bn.<name>`` tensors. Integer buffers (``num_batches_tracked``)
    play no part in eval mode and are not stored.
    """
    return [n for n, b in module.named_buffers() if b.is_floating_point()]


def canonical_state(module: nn.Module) -> list[tuple[str, Tensor]]:
    """theta_opt in canonical order: ``named_parameters`` order, then the float buffers (theta_bn)."""
    out = [(n, p.detach()) for n, p in module.named_parameters()]
    fb = set(buffer_names(module))
    out += [(n, b.detach()) for n, b in module.named_buffers() if n in fb]
    return out


def theta_digest(state: Sequence[tuple[str, Tensor]] | Mapping[str, Tensor]) -> str:
    """SHA-256 (hex) of the concatenated float32 little-endian C-order bytes, in the given order."""
    items = state.items() if isinstance(state, Mapping) else state
    h = hashlib.sha256()
    for _, t in items:
        a = t.detach().to("cpu", torch.float32).contiguous().numpy()
        h.update(a.astype("<f4", copy=False).tobytes())
    return h.hexdigest()


# --- probes ---------------------------------------------------------------------------------------

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


def _sketches(module: nn.Module) -> dict[str, tuple[float, ...]]:
    return {n: state_sketch(t) for n, t in canonical_state(module)}


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
    c, h, w = _input_shape(module)
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


def _input_shape(module: nn.Module) -> tuple[int, int, int]:
    shape = getattr(module, "sldp_input_shape", None)
    if shape is None:
        raise UsageError("module has no sldp_input_shape; build it with sldpack.nn.replay.build_module")
    c, h, w = shape
    return int(c), int(h), int(w)


# --- replay ---------------------------------------------------------------------------------------

def build_module(arch: ArchSpec, init: InitSpec, *,
                 device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, str]]:
    """Build an architecture with theta_0 from the portable init.

    theta_0 is always drawn on the CPU by the portable init and then moved, never by a device RNG.

    Args:
        arch: the manifest's ``arch`` section.
        init: the manifest's ``init`` section (seed, scheme).
        device: where the module lives afterwards.

    Returns:
        ``(module, theta0_digests)``; the module carries ``sldp_input_shape = (C, H, W)``.
    """
    from sldpack.nn.init import init_module_
    from sldpack.nn.zoo import build_from_spec

    # on the CPU with zero parameters; the zoo avoids to_empty (it imports sympy: first build 1.5-5 s)
    module = build_from_spec(arch, device="cpu")
    digests = init_module_(module, init.seed, init.scheme)
    module.sldp_input_shape = (arch.in_channels, arch.image_size[0], arch.image_size[1])  # type: ignore[assignment]
    return module.to(resolve_device(device)), dict(digests)


@dataclass
class ReplayResult:
    """What :func:`replay` produced.

    Attributes:
        module: theta_opt + theta_bn loaded, eval mode.
        theta0_status: ``"match"``, ``"not recorded"`` or ``"mismatch: <names>"`` against
            ``manifest.init.theta0_sha256``.
        manifest: the file's manifest.
        seconds: wall time of build + init + unroll.
        inner_losses: L_i of every inner step.
        theta_bn: ``"loaded"``, ``"none"`` (no batch norm) or ``"absent"`` (see :func:`load_theta`).
    """

    module: nn.Module
    theta0_status: str
    manifest: Manifest
    seconds: float
    inner_losses: list[float] = field(default_factory=list)
    theta_bn: str = "none"


def _read(source: SourceLike | Any) -> tuple[Manifest, dict[str, np.ndarray]]:
    import sldpack

    if isinstance(source, sldpack.SldpFile):
        return source.manifest, source.arrays()
    f = sldpack.read(source if isinstance(source, bytes) else Path(os.fspath(source)))
    try:
        return f.manifest, f.arrays()
    finally:
        f.close()


def check_replayable(manifest: Manifest, shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Check that a manifest + tensor shapes describe a replayable distilled set.

    Raises:
        UsageError: naming the first inconsistency (missing tensor, shape, schedule index, T).
    """
    d = manifest.distill
    if d is None:
        raise UsageError("the manifest has no distill section")
    for need in ("images", "labels", "lrs"):
        if need not in shapes:
            raise UsageError(f"no {need!r} tensor")
    img, lab, lrs = shapes["images"], shapes["labels"], shapes["lrs"]
    a = manifest.arch
    want_img = (a.in_channels, a.image_size[0], a.image_size[1])
    if len(img) != 4 or tuple(img[1:]) != want_img:
        raise UsageError(f"images must be [M, {want_img[0]}, {want_img[1]}, {want_img[2]}], got {list(img)}")
    if tuple(lab) != (img[0], a.num_classes):
        raise UsageError(f"labels must be [{img[0]}, {a.num_classes}], got {list(lab)}")
    if tuple(lrs) != (d.steps * d.epochs,):
        raise UsageError(f"lrs must be [{d.steps * d.epochs}] (steps x epochs), got {list(lrs)}")
    for s, idx in enumerate(d.schedule):
        bad = [i for i in idx if i >= img[0]]
        if bad:
            raise UsageError(f"schedule step {s} names image {bad[0]} but there are {img[0]} images")
    if manifest.labels is not None and len(manifest.labels.names) != a.num_classes:
        raise UsageError(f"{len(manifest.labels.names)} label names for {a.num_classes} classes")


def replay_arrays(manifest: Manifest, arrays: Mapping[str, np.ndarray], *, device: str | torch.device = "cpu",
                  threads: int | None = None) -> ReplayResult:
    """Replay from an already-read manifest and tensors (see :func:`replay`)."""
    t0 = time.perf_counter()
    check_replayable(manifest, {n: tuple(a.shape) for n, a in arrays.items()})
    dist = manifest.distill
    assert dist is not None
    dev = resolve_device(device)
    with deterministic(dev), thread_count(threads if dev.type == "cpu" else None):
        module, digests = build_module(manifest.arch, manifest.init, device=dev)
        theta0_status = _theta0_status(manifest, digests)
        images = torch.from_numpy(np.ascontiguousarray(arrays["images"], dtype=np.float32)).to(dev)
        labels = torch.from_numpy(np.ascontiguousarray(arrays["labels"], dtype=np.float32)).to(dev)
        lrs = torch.from_numpy(np.ascontiguousarray(arrays["lrs"], dtype=np.float32).reshape(-1)).to(dev)
        sched = Schedule(dist.steps, dist.epochs, tuple(tuple(s) for s in dist.schedule))
        targets = apply_label_transform(labels, dist.label_transform)
        set_inner_mode(module)
        params = {n: p.detach() for n, p in module.named_parameters()}
        losses: list[float] = []
        theta = unroll(module, params, scratch_buffers(module), images, targets, lrs, sched,
                       differentiable=False, on_step=lambda i, v: losses.append(float(v)))
        bn_status = load_theta(module, theta, arrays)
    return ReplayResult(module=module, theta0_status=theta0_status, manifest=manifest,
                        seconds=time.perf_counter() - t0, inner_losses=losses, theta_bn=bn_status)


def load_theta(module: nn.Module, theta: Mapping[str, Tensor], arrays: Mapping[str, np.ndarray]) -> str:
    """Copy theta_opt into ``module``, load theta_bn from ``bn.<name>`` arrays, switch to eval mode.

    Returns:
        ``"loaded"``, ``"none"`` (the network has no batch norm) or ``"absent"`` (batch norm, but the
        file carries no theta_bn: the running statistics keep their theta0 values, mean 0 and var 1).

    Raises:
        UsageError: a float buffer has no stored ``bn.`` tensor while the file has some, or shapes differ.
    """
    with torch.no_grad():
        for n, p in module.named_parameters():
            p.copy_(theta[n])
        names = buffer_names(module)
        stored = {k[3:] for k in arrays if k.startswith("bn.")}
        if names and stored:
            missing = [n for n in names if n not in stored]
            if missing:
                raise UsageError(f"theta_bn is incomplete: no tensor bn.{missing[0]}")
        extra = sorted(stored - set(names))
        if extra:
            raise UsageError(f"tensor bn.{extra[0]} names no batch-norm buffer of {type(module).__name__}")
        bufs = dict(module.named_buffers())
        for n in names:
            if n in stored:
                src = np.asarray(arrays[f"bn.{n}"], dtype=np.float32)
                if tuple(src.shape) != tuple(bufs[n].shape):
                    raise UsageError(f"bn.{n} has shape {src.shape}, the network needs {tuple(bufs[n].shape)}")
                bufs[n].copy_(torch.from_numpy(np.ascontiguousarray(src)))
    module.eval()
    return "none" if not names else ("loaded" if stored else "absent")


def _theta0_status(manifest: Manifest, digests: Mapping[str, str]) -> str:
    want = manifest.init.theta0_sha256
    if want is None:
        return "not recorded"
    bad = sorted(n for n in want if digests.get(n) != want[n])
    bad += sorted(n for n in digests if n not in want)
    return "match" if not bad else "mismatch: " + ", ".join(bad[:5]) + (" ..." if len(bad) > 5 else "")


def replay(source: SourceLike | Any, *, device: str | torch.device = "cpu", threads: int | None = None) -> ReplayResult:
    """Re-derive theta_opt from a ``.sldp`` file.

    Args:
        source: a path, the file's bytes, or an open :class:`sldpack.SldpFile`.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        threads: torch CPU thread count during replay (``None``: leave it).

    Returns:
        The replay result; ``result.module`` is ready for inference (eval mode).

    Raises:
        FormatError / DigestError: the file is malformed. UsageError: it cannot be replayed.
    """
    manifest, arrays = _read(source)
    return replay_arrays(manifest, arrays, device=device, threads=threads)


def load_model(source: SourceLike | Any, *, device: str | torch.device = "cpu") -> nn.Module:
    """The Python API: a ready ``torch.nn.Module`` (theta_opt + theta_bn, eval mode) from a ``.sldp`` file."""
    return replay(source, device=device).module


# --- verification ---------------------------------------------------------------------------------

ReplayStatus = Literal["exact", "within_tolerance", "failed", "no_fingerprint"]
"""Outcome of a replay check (see :class:`ReplayReport`)."""


@dataclass(frozen=True)
class ReplayReport:
    """Outcome of :func:`verify_replay`.

    ``status`` is ``"exact"`` (theta_opt digest identical), ``"within_tolerance"`` (digest differs, every
    probe logit within the recorded tolerance; ``max_abs_deviation`` says by how much), ``"failed"``
    (beyond tolerance, wrong shape) or ``"no_fingerprint"`` (the file records none: nothing to check).
    """

    status: ReplayStatus
    expected_sha256: str | None
    actual_sha256: str
    max_abs_deviation: float | None
    tolerance: float | None
    theta0: str
    device: str
    threads: int
    reference_threads: int | None
    seconds: float
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True for ``exact`` and ``within_tolerance``."""
        return self.status in ("exact", "within_tolerance")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"status": self.status, "ok": self.ok, "expected_sha256": self.expected_sha256,
                "actual_sha256": self.actual_sha256, "max_abs_deviation": self.max_abs_deviation,
                "tolerance": self.tolerance, "theta0": self.theta0, "device": self.device,
                "threads": self.threads, "reference_threads": self.reference_threads,
                "seconds": round(self.seconds, 3), "notes": list(self.notes), "summary": self.summary()}

    def summary(self) -> str:
        """One human line."""
        if self.status == "exact":
            text = f"replay exact: theta_opt sha256 {self.actual_sha256[:16]}... matches"
        elif self.status == "within_tolerance":
            text = (f"replay within tolerance: digest differs, max |probe logit deviation| "
                    f"{self.max_abs_deviation:.3g} <= {self.tolerance:.3g}")
        elif self.status == "no_fingerprint":
            text = "replay not checked: the file records no replay fingerprint"
        else:
            dev = "n/a" if self.max_abs_deviation is None else f"{self.max_abs_deviation:.3g}"
            text = f"replay FAILED: max |probe logit deviation| {dev} > tolerance {self.tolerance}"
        text += f" [{self.device}, {self.threads} thread(s), theta0 {self.theta0}, {self.seconds:.1f}s]"
        return text

    def raise_for_status(self) -> None:
        """Raise :class:`~sldpack.errors.ReplayMismatchError` unless ``ok``."""
        if not self.ok:
            raise ReplayMismatchError(self.summary())


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
    """

    status: str
    actual_sha256: str
    max_abs_deviation: float | None
    logit_ratio: float
    worst_tensor: str | None
    worst_ratio: float
    reason: str = ""


def _ratio(dev: float, tol: float) -> float:
    if dev <= tol:
        return dev / tol if tol > 0 else 0.0
    return dev / tol if tol > 0 else math.inf


def compare_fingerprint(module: nn.Module, fp: ReplayFingerprint, *, threads: int) -> FingerprintComparison:
    """Compare a replayed module with a recorded fingerprint, tensor by tensor where the file allows.

    ``exact``: the theta_opt digest is the recorded one. ``within_tolerance``: it is not, but every probe
    logit is finite and within ``tolerance``, and (when the fingerprint has ``state_sketch``) every
    canonical-state tensor's sketch is within its ``state_tolerance``. ``failed`` otherwise.
    """
    c, h, w = _input_shape(module)
    with thread_count(threads if next(module.parameters()).device.type == "cpu" else None):
        digest = theta_digest(canonical_state(module))
        got = probe_logits(module, probe_inputs(fp.probe_seed, fp.probe_count, c, (h, w))).reshape(-1)
        sketch = _sketches(module) if fp.state_sketch is not None else {}
    want = np.asarray(fp.probe_logits, dtype=np.float64)
    if got.shape != want.shape:
        return FingerprintComparison("failed", digest, None, math.inf, None, 0.0,
                                     f"{got.size} probe logits, the file records {want.size}")
    if not np.isfinite(got).all():
        return FingerprintComparison("failed", digest, math.inf, math.inf, None, 0.0, "a probe logit is not finite")
    dev = float(np.max(np.abs(got.astype(np.float64) - want))) if want.size else 0.0
    lratio = _ratio(dev, fp.tolerance)
    worst, wratio, reason = None, 0.0, ""
    if fp.state_sketch is not None and fp.state_tolerance is not None:
        if set(sketch) != set(fp.state_sketch):
            reason = "the network's canonical state names differ from the recorded sketch's"
            wratio = math.inf
        else:
            for name, rec in fp.state_sketch.items():
                mine = sketch[name]
                d = math.inf if len(mine) != len(rec) else max((abs(a - b) for a, b in zip(mine, rec, strict=True)),
                                                               default=0.0)
                r = _ratio(d, fp.state_tolerance[name])
                if r > wratio or worst is None:
                    worst, wratio = name, r
    if digest == fp.theta_opt_sha256:
        return FingerprintComparison("exact", digest, dev, lratio, worst, wratio)
    if lratio > 1:
        reason = reason or f"probe logits deviate by {dev:.3g} > tolerance {fp.tolerance:.3g}"
    elif wratio > 1:
        reason = reason or f"tensor {worst} deviates {wratio:.3g} x its tolerance"
    status = "failed" if reason else "within_tolerance"
    return FingerprintComparison(status, digest, dev, lratio, worst, wratio, reason)


def check_fingerprint(module: nn.Module, fp: ReplayFingerprint, *, threads: int) -> tuple[str, str, float | None]:
    """Compare a replayed module with a recorded fingerprint (see :func:`compare_fingerprint`).

    Returns:
        ``(status, actual_sha256, max_abs_deviation)``; status is exact / within_tolerance / failed.
    """
    cmp = compare_fingerprint(module, fp, threads=threads)
    return cmp.status, cmp.actual_sha256, cmp.max_abs_deviation


def verify_replay(source: SourceLike | Any, *, device: str | torch.device = "cpu",
                  threads: int | None = None) -> ReplayReport:
    """Re-derive theta_opt from the file and compare it with the recorded replay fingerprint.

    On the CPU, replay runs under the fingerprint's recorded thread count unless ``threads`` says
    otherwise, because the digest can depend on it (CPU kernels split reductions by thread).

    Args:
        source: path, bytes or open :class:`sldpack.SldpFile`.
        device: where to replay; the fingerprint's reference is the CPU, other devices are expected to
            land "within tolerance" at best.
        threads: CPU thread count (default: the reference's).

    Returns:
        The report (never raises for a mismatch; call ``report.raise_for_status()`` for that).

    Raises:
        FormatError / DigestError: the file is malformed. UsageError: it cannot be replayed.
    """
    return replay_and_verify(source, device=device, threads=threads)[1]


def _as_status(value: str) -> ReplayStatus:
    for s in get_args(ReplayStatus):
        if value == s:
            return s  # type: ignore[no-any-return]
    raise AssertionError(f"check_fingerprint returned an unknown status {value!r}")


def replay_and_verify(source: SourceLike | Any, *, device: str | torch.device = "cpu",
                      threads: int | None = None) -> tuple[ReplayResult, ReplayReport]:
    """:func:`verify_replay`, also returning the replayed network (``sldp replay`` writes it out).

    Returns:
        ``(the replay, the report)``.
    """
    manifest, arrays = _read(source)
    fp = manifest.replay
    ref_threads = None
    if fp is not None and isinstance(fp.reference.get("threads"), int):
        ref_threads = int(fp.reference["threads"])
    dev = resolve_device(device)
    use_threads = threads if threads is not None else (ref_threads or torch.get_num_threads())
    res = replay_arrays(manifest, arrays, device=dev, threads=use_threads if dev.type == "cpu" else None)
    notes: list[str] = []
    if res.theta_bn == "absent":
        notes.append("the network has batch norm but the file carries no theta_bn: running statistics are "
                     "the theta0 values (mean 0, var 1)")
    if dev.type != "cpu":
        notes.append("the reference configuration is the CPU; a different device is expected to differ in the "
                     "last bits")
    elif ref_threads is not None and use_threads != ref_threads:
        notes.append(f"replayed with {use_threads} threads, the reference used {ref_threads}")
    if fp is not None and fp.reference.get("torch") not in (None, torch.__version__):
        notes.append(f"reference torch {fp.reference.get('torch')}, this torch {torch.__version__}")
    if fp is None:
        digest = theta_digest(canonical_state(res.module))
        return res, ReplayReport(status="no_fingerprint", expected_sha256=None, actual_sha256=digest,
                                 max_abs_deviation=None, tolerance=None, theta0=res.theta0_status,
                                 device=str(dev), threads=use_threads, reference_threads=None,
                                 seconds=res.seconds, notes=tuple(notes))
    status, digest, maxdev = check_fingerprint(res.module, fp, threads=use_threads)
    return res, ReplayReport(status=_as_status(status), expected_sha256=fp.theta_opt_sha256, actual_sha256=digest,
                             max_abs_deviation=maxdev, tolerance=fp.tolerance, theta0=res.theta0_status,
                             device=str(dev), threads=use_threads, reference_threads=ref_threads,
                             seconds=res.seconds, notes=tuple(notes))


# --- checkpoint output ----------------------------------------------------------------------------

def save_safetensors(path: str | os.PathLike[str], state: Mapping[str, Tensor],
                     metadata: Mapping[str, str] | None = None) -> int:
    """Write ``state`` (e.g. ``module.state_dict()``) as a ``.safetensors`` file, atomically.

    Loadable with ``safetensors.torch.load_file`` and then ``module.load_state_dict``; written by the one
    codec (:func:`sldpack.format.safetensors_codec.encode_checkpoint`). ``metadata`` goes into
    ``__metadata__`` (string -> string).

    Returns:
        The number of bytes written.

    Raises:
        UsageError: a tensor dtype safetensors cannot carry here.
    """
    from sldpack.atomic import atomic_write_bytes
    from sldpack.format.safetensors_codec import encode_checkpoint, storage_dtype

    arrays: dict[str, np.ndarray] = {}
    for name, t in state.items():
        if storage_dtype(str(t.dtype)) in (None, "BF16"):
            raise UsageError(f"tensor {name!r}: dtype {t.dtype} cannot be written to safetensors here")
        arrays[name] = t.detach().to("cpu").contiguous().numpy()
    data = encode_checkpoint(arrays, metadata)
    atomic_write_bytes(path, data)
    return len(data)


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
