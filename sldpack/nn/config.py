"""The distiller's settings: one torch-free definition that the CLI reads its option defaults from.

Torch-free on purpose: ``sldp distill --help`` and the option table are built from these defaults without
importing torch (the engine modules that use them do).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from sldpack.errors import UsageError
from sldpack.format.constants import COMPRESSIONS

__all__ = [
    "DEFAULT_PROBE_COUNT",
    "DEFAULT_REFERENCE_THREADS",
    "SELECT_RULES",
    "UNROLL_MODES",
    "DistillConfig",
    "SelectRule",
    "UnrollMode",
]

DEFAULT_PROBE_COUNT = 4
"""Probe inputs of the replay fingerprint."""
DEFAULT_REFERENCE_THREADS = 1
"""Thread count of the reference configuration: 1 can be reproduced on every machine."""

UnrollMode = Literal["graph", "recompute"]
UNROLL_MODES: tuple[UnrollMode, ...] = ("graph", "recompute")

SelectRule = Literal["auto", "best", "last", "val-hm", "val-acc"]
SELECT_RULES: tuple[SelectRule, ...] = ("auto", "best", "last", "val-hm", "val-acc")
"""``select`` values; ``val-*`` need a ``scorer`` passed to ``distill`` (held-out data lives above the engine);
``auto`` is ``val-*`` when a scorer is given, else ``best``."""


def _cli(help_text: str | None, **extra: Any) -> dict[str, Any]:
    """Field metadata from which ``sldpack.cli.options.spec_option`` builds the setting's ``sldp distill``
    option (help text, range, choices, flag; the type and default come from the field itself)."""
    return {"help": help_text, **extra}


MAX_RATE = 100.0
"""The largest learning rate a setting takes: far above any that trains, far below one that overflows."""
MAX_LABEL_INIT = 100.0
"""The largest |initial label logit|: softmax of +-100 is exactly one-hot in float32 already."""
_RATE: dict[str, Any] = {"min": 0.0, "min_open": True, "max": MAX_RATE}
"""A learning rate: a finite float in (0, MAX_RATE]."""


@dataclass(frozen=True)
class DistillConfig:
    """Every knob of a distillation run (recorded in ``run.json`` and the manifest's ``distill.options``).

    Attributes:
        arch: architecture id (``convnet@1``, ``resnet18@1``, ...).
        arch_options: construction options (e.g. ``{"depth": 3, "width": 128}`` for ConvNet).
        batchnorm: build the batch-norm variant.
        mode: ``"sldd"`` (learned soft labels, softmax transform) or ``"dd"`` (fixed one-hot labels).
        images_per_class: distilled images per class (per step with ``schedule="per-step"``).
        schedule: ``"all"`` (every step sees all M images) or ``"per-step"`` (each step its own images).
        steps, epochs: inner steps per epoch and passes; T = steps * epochs learning rates.
        iterations: outer iterations (Adam steps).
        batch_real: K, real images per outer iteration (64: +0.014 and +0.034 HM over 32 on two sets of
            PneumoniaMNIST seeds, ``examples/study/README.md``; twice the outer loop's work).
        lr: Adam learning rate of the images.
        lr_labels: Adam learning rate of the label parameters (default: ``lr``).
        lr_lrs: Adam learning rate of the per-step learning rates (default: ``lr / 10``; ``lr`` won on the
            ablation's seeds and lost on three fresh ones, ``examples/study/README.md``).
        inner_lr: initial value of every per-step learning rate.
        label_init: initial label logit of the true class (SLDD; others start at 0).
        image_init: ``"real"`` (class-balanced real images) or ``"noise"`` (standard normal).
        balanced: class-balanced real batches.
        seed: seed of theta_0 (portable init) and of every other random choice of the run.
        init_scheme: theta_0 scheme of the portable init.
        bn_batches, bn_batch_size: real data forwarded to measure theta_bn (batch-norm archs).
        bn_class_mix: class mix of those batches: ``"natural"`` (the data's own) or ``"balanced"`` (equal
            counts per class, the mix of the balanced real batches and of the distilled set). Recorded as
            ``distill.options.theta_bn.class_mix``.
        probe_count: probe inputs of the replay fingerprint.
        fingerprint_threads: CPU thread count of the fingerprint's reference configuration.
        select: which iterate becomes the file: ``"auto"`` (default: the held-out rule of the scorer given
            to :func:`distill`, else ``"best"``; ``sldp distill`` and ``sldp study`` give one, ``val-hm``
            for two-class image labels, ``val-acc`` otherwise), ``"best"`` (lowest moving average of the
            outer training loss, a guard against the late collapses unrolled optimisation is prone to) or
            ``"last"``. ``"val-hm"``/``"val-acc"``: every ``select_every`` iterations (and at the last) the
            iterate's network is scored by the ``scorer`` given to :func:`distill` (image-level HM or patch
            accuracy on held-out images); the best-scoring iterate is written. The file records the rule that
            was applied, never ``auto``.
        ema: weight of the newest loss in that moving average (a plain mean over the first 1/ema
            losses; iterates are candidates from the ceil(1/ema)-th loss on).
        select_every: iterations between validation candidates (``val-*`` only).
        checkpoint_every: iterations between checkpoints (0: only at the end).
        log_every: iterations between log lines.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        compression: payload compression of the ``.sldp`` (``"none"``, ``"zstd"``).
        unroll: how the hypergradient is computed (:mod:`sldpack.nn.hypergrad`): ``"graph"`` keeps the
            whole unrolled graph (fastest), ``"recompute"`` keeps only theta_t per step and rebuilds one
            step's graph at a time walking backwards (far less memory). Same file either way (to float
            rounding); not recorded in the manifest.
        unroll_checkpoint: recompute mode: keep every k-th theta_t only (memory T/k + k thetas instead of T).
        shard_images: with several processes and the recompute unroll, split every inner step's images
            across them too (architectures without batch norm; each step needs >= one image per process).
        train_images: ``False`` keeps the images as initialised (with ``image_init="real"``: real training
            images, byte for byte); only the labels (``sldd``) and the step sizes learn. With ``mode="dd"``
            only the step sizes a~ learn: the ``random(k)`` baseline of ``sldp study`` (k real images per
            class, replayed with hard labels and learned step sizes). Recorded in the manifest only when
            ``False``.
    """

    arch: str = field(default="convnet@1", metadata=_cli("Architecture id from the zoo."))
    arch_options: Mapping[str, Any] = field(default_factory=dict)
    batchnorm: bool = field(default=False, metadata=_cli("Batch-norm variant."))
    mode: Literal["sldd", "dd"] = field(default="sldd", metadata=_cli(
        "sldd: learn soft labels; dd: fixed one-hot labels."))
    images_per_class: int = field(default=1, metadata=_cli(
        "Distilled images per class (per step with --schedule per-step).", short="-M", min=1))
    schedule: Literal["all", "per-step"] = field(default="all", metadata=_cli(
        "all: every step sees all images; per-step: each step its own images."))
    steps: int = field(default=10, metadata=_cli("Inner steps per epoch.", min=1))
    epochs: int = field(default=1, metadata=_cli("Passes over the steps (T = steps x epochs).", min=1))
    iterations: int = field(default=300, metadata=_cli("Outer iterations (Adam steps).", min=1))
    batch_real: int = field(default=64, metadata=_cli("Real images per outer iteration.", short="-K", min=1))
    lr: float = field(default=0.01, metadata=_cli("Adam learning rate of the images.", **_RATE))
    lr_labels: float | None = field(default=None, metadata=_cli(
        "Adam learning rate of the labels [default: --lr].", flag="--label-lr", **_RATE))
    lr_lrs: float | None = field(default=None, metadata=_cli(
        "Adam learning rate of the step sizes [default: --lr/10].", flag="--lrs-lr", **_RATE))
    inner_lr: float = field(default=0.1, metadata=_cli("Initial per-step learning rate.", **_RATE))
    label_init: float = field(default=2.0, metadata=_cli("Initial label logit of the true class (sldd).",
                                                         min=-MAX_LABEL_INIT, max=MAX_LABEL_INIT))
    image_init: str = field(default="real", metadata=_cli(
        "Start from real images or from noise.", choices=("real", "noise")))
    balanced: bool = field(default=True, metadata=_cli("Class-balanced real batches."))
    seed: int = field(default=0, metadata=_cli("Seed of theta0 and of the run.", min=0))
    init_scheme: str = "xavier_normal"
    bn_batches: int = field(default=16, metadata=_cli(
        "Real batches forwarded to measure theta_bn (batch-norm archs).", min=1))
    bn_batch_size: int = 128
    bn_class_mix: Literal["natural", "balanced"] = field(default="natural", metadata=_cli(
        "Class mix of those batches: the data's own, or equal counts per class (the mix the inner steps see)."))
    probe_count: int = DEFAULT_PROBE_COUNT
    fingerprint_threads: int = DEFAULT_REFERENCE_THREADS
    select: SelectRule = field(default="auto", metadata=_cli(
        "Which iterate is written: the best on held-out training images by image-level HM (val-hm) or "
        "patch/class accuracy (val-acc); best (lowest moving-average training loss); last; auto: val-hm "
        "(val-acc for more than two image classes), or best where nothing can be held out (--nproc, --source)."))
    ema: float = 0.1
    select_every: int = field(default=25, metadata=_cli("val-*: iterations between scored candidates.", min=1))
    checkpoint_every: int = field(default=50, metadata=_cli("Iterations between crash-safe checkpoints.", min=0))
    log_every: int = 1
    device: str = "auto"
    compression: str = field(default="none", metadata=_cli(None, choices=COMPRESSIONS))
    unroll: UnrollMode = field(default="graph", metadata=_cli(
        "graph: keep the whole unrolled graph (fastest); recompute: keep theta per step and rebuild one step's "
        "graph at a time (far less memory at large images). Same file either way."))
    unroll_checkpoint: int = field(default=1, metadata=_cli(
        "With --unroll recompute: keep only every K-th theta (memory T/K + K thetas).", min=1, metavar="K"))
    shard_images: bool = field(default=False, metadata=_cli(
        "With --nproc/torchrun and --unroll recompute: split each inner step's images across the processes too "
        "(architectures without batch norm).", negatable=False))
    train_images: bool = field(default=True, metadata=_cli(
        "Learn the images (--no-train-images: keep the initial real images; with --mode dd only the step sizes "
        "learn, the random(k) baseline)."))

    def validate(self) -> None:
        """Reject contradictory or out-of-range settings.

        Raises:
            UsageError: naming the offending setting.
        """
        if self.mode not in ("sldd", "dd"):
            raise UsageError(f"mode must be 'sldd' or 'dd', got {self.mode!r}")
        if self.schedule not in ("all", "per-step"):
            raise UsageError(f"schedule must be 'all' or 'per-step', got {self.schedule!r}")
        if self.select not in SELECT_RULES:
            raise UsageError(f"select must be one of {', '.join(SELECT_RULES)}, got {self.select!r}")
        if self.unroll not in UNROLL_MODES:
            raise UsageError(f"unroll must be one of {UNROLL_MODES}, got {self.unroll!r}")
        if self.shard_images and (self.unroll != "recompute" or self.batchnorm):
            raise UsageError("shard_images needs unroll='recompute' and an architecture without batch norm")
        if self.unroll_checkpoint < 1:
            raise UsageError(f"unroll_checkpoint must be >= 1, got {self.unroll_checkpoint}")
        if not 0.0 < self.ema <= 1.0:
            raise UsageError(f"ema must lie in (0, 1], got {self.ema}")
        if self.bn_class_mix not in ("natural", "balanced"):
            raise UsageError(f"bn_class_mix must be 'natural' or 'balanced', got {self.bn_class_mix!r}")
        if self.image_init not in ("real", "noise"):
            raise UsageError(f"image_init must be 'real' or 'noise', got {self.image_init!r}")
        for name in ("images_per_class", "steps", "epochs", "batch_real", "bn_batches", "bn_batch_size",
                     "probe_count", "fingerprint_threads", "log_every", "select_every"):
            if int(getattr(self, name)) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.iterations < 0 or self.checkpoint_every < 0:
            raise UsageError("iterations and checkpoint_every must be >= 0")
        for name in ("lr", "inner_lr", "label_init"):
            if not math.isfinite(float(getattr(self, name))):
                raise UsageError(f"{name} must be finite")
        if self.lr <= 0:
            raise UsageError(f"lr must be > 0, got {self.lr}")
        for name in ("lr", "inner_lr", "lr_labels", "lr_lrs"):
            v = getattr(self, name)
            if v is not None and not 0.0 < float(v) <= MAX_RATE:
                raise UsageError(f"{name} must lie in (0, {MAX_RATE:g}], got {v}")
        if not abs(float(self.label_init)) <= MAX_LABEL_INIT:
            raise UsageError(f"label_init must lie in [-{MAX_LABEL_INIT:g}, {MAX_LABEL_INIT:g}], got {self.label_init}")
        if self.compression not in COMPRESSIONS:
            raise UsageError(f"compression must be one of {COMPRESSIONS}")

    def to_obj(self) -> dict[str, Any]:
        """JSON/msgpack-ready form."""
        d = asdict(self)
        d["arch_options"] = dict(self.arch_options)
        return d

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> DistillConfig:
        """Inverse of :meth:`to_obj`; unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in obj.items() if k in names})
