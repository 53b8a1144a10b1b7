"""The distiller: learn distilled images, soft labels and per-step learning rates (SLDD; DD baseline).

One outer iteration (seed paper, Algorithms 1 and 2): draw theta_0 from the seed (fixed: the file stores
the seed, so every iteration starts from the same theta_0); run the T inner SGD steps of
:func:`~sldpack.nn.unroll.unroll` on the distilled data keeping the graph; evaluate the cross-entropy of
theta_T on a class-balanced real batch of K images; back-propagate through the whole unroll to the images
x~, the label parameters y~ and the learning rates a~; take one Adam step on them.

After the last iteration theta_opt is re-derived without a graph and theta_bn measured on real data
(:mod:`sldpack.nn.materialize`), the replay fingerprint is computed by replaying the result on the CPU under
the reference configuration (:mod:`sldpack.nn.fingerprint`), and everything is written to the run directory:
``checkpoint.pt`` (crash-safe, every N iterations; :mod:`sldpack.nn.resume`), ``log.jsonl`` and
``montage.png`` (:mod:`sldpack.nn.runlog`), ``final/manifest.json`` + ``final/tensors.npz`` (the documented
``sldp pack`` input; :mod:`sldpack.nn.packing`) and ``distilled.sldp``. Which iterate is written is
:mod:`sldpack.nn.iterates`.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

import sldpack
from sldpack.atomic import atomic_write_bytes
from sldpack.budget import check_allocation
from sldpack.errors import DataError, UsageError
from sldpack.format.manifest import (
    ArchSpec,
    DistillSpec,
    InitSpec,
    LabelSpec,
    Manifest,
    Provenance,
)
from sldpack.format.provenance import run_provenance
from sldpack.nn.config import SELECT_RULES, DistillConfig, SelectRule
from sldpack.nn.device import deterministic, resolve_device
from sldpack.nn.distributed import DistContext, shard_bounds
from sldpack.nn.distributed import session as distributed_session
from sldpack.nn.fingerprint import fingerprint_arrays
from sldpack.nn.hypergrad import ImageShard, hypergradient
from sldpack.nn.iterates import IterateSelection
from sldpack.nn.materialize import materialize
from sldpack.nn.network import buffer_names, build_module
from sldpack.nn.packing import write_pack_input
from sldpack.nn.replay import replay_arrays
from sldpack.nn.resume import check_resume_config, load_checkpoint, save_checkpoint
from sldpack.nn.runlog import RunLog, save_montage, utc_now
from sldpack.nn.source import RealSource
from sldpack.nn.unroll import (
    Schedule,
    apply_label_transform,
    make_schedule,
    scratch_buffers,
    set_inner_mode,
)

__all__ = [
    "DistillConfig",
    "DistillResult",
    "Phase",
    "Progress",
    "Scorer",
    "check_run",
    "distill",
]

# config fields that say how the run is computed, not what: left out of the manifest's distill.options
# bn_class_mix is recorded where it belongs, as theta_bn.class_mix
_NOT_RECORDED = frozenset({"device", "unroll", "unroll_checkpoint", "shard_images", "bn_class_mix"})
Scorer = Callable[[nn.Module], float]
"""Scores a candidate network (theta_opt + theta_bn of one iterate, eval mode) on held-out data; higher wins.

A scorer may also have a ``decision(module, iteration)`` method: called once on the written iterate's
network, its :class:`~sldpack.format.decision.DecisionRule` (or ``None``) becomes the manifest's
``decision`` (e.g. Eq. (9)'s delta chosen on the same held-out images, :mod:`sldpack.pipelines.selection`).
"""


@dataclass(frozen=True)
class Progress:
    """One progress report: iterations done, total, outer loss, seconds elapsed and estimated remaining."""

    iteration: int
    total: int
    loss: float
    elapsed: float
    eta: float


@dataclass
class DistillResult:
    """What :func:`distill` produced.

    Attributes:
        manifest: complete except for the tensor table/payload (filled by the writer).
        tensors: name -> :class:`sldpack.Tensor` (``images``, ``labels``, ``lrs``, ``bn.*``).
        module: theta_opt + theta_bn on the distill device, eval mode.
        losses: outer loss of every iteration of this call.
        sldp_path: where the ``.sldp`` was written (``None`` without a run directory).
        resumed_from: iteration the run resumed from (0 for a fresh run).
    """

    manifest: Manifest
    tensors: dict[str, sldpack.Tensor]
    module: nn.Module
    losses: list[float]
    sldp_path: Path | None = None
    resumed_from: int = 0

    def write(self, path: str | Path) -> Manifest:
        """Write the ``.sldp`` file (atomic) and return the stored manifest."""
        comp = str(self.manifest.distill.options.get("compression", "none")) if self.manifest.distill else "none"
        return sldpack.write(path, self.manifest, self.tensors, compression=comp)


# --- helpers --------------------------------------------------------------------------------------

def _arch_spec(cfg: DistillConfig, source: RealSource) -> ArchSpec:
    return ArchSpec(id=cfg.arch, in_channels=source.channels, num_classes=source.num_classes,
                    image_size=tuple(source.image_size), batchnorm=cfg.batchnorm,  # type: ignore[arg-type]
                    options=dict(cfg.arch_options))


def _layout(cfg: DistillConfig, k: int) -> tuple[int, np.ndarray]:
    """Number of images M and the class of each distilled image (step-major, then class-major)."""
    blocks = cfg.steps if cfg.schedule == "per-step" else 1
    cls = np.array([c for _ in range(blocks) for c in range(k) for _ in range(cfg.images_per_class)],
                   dtype=np.int64)
    return int(cls.size), cls


def _initial_images(cfg: DistillConfig, source: RealSource, classes: np.ndarray) -> np.ndarray:
    c, (h, w) = source.channels, source.image_size
    rng = np.random.default_rng([cfg.seed, 2])
    if cfg.image_init == "noise":
        return rng.standard_normal((classes.size, c, h, w)).astype(np.float32)
    k = source.num_classes
    per_class = np.bincount(classes, minlength=k)
    x, y = source.sample(int(per_class.max()) * k, rng, balanced=True)
    out = np.empty((classes.size, c, h, w), dtype=np.float32)
    for cls in range(k):
        pool = x[y == cls]
        if pool.shape[0] < per_class[cls]:
            raise DataError(f"the data source gave {pool.shape[0]} images of class {cls}, need {per_class[cls]}")
        out[classes == cls] = pool[:per_class[cls]]
    return out


def _initial_labels(cfg: DistillConfig, classes: np.ndarray, k: int) -> np.ndarray:
    onehot: np.ndarray = np.eye(k, dtype=np.float32)[classes]
    return onehot if cfg.mode == "dd" else (onehot * np.float32(cfg.label_init)).astype(np.float32)


# --- the outer loop -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Phase:
    """One phase after the last iteration (theta_opt, theta_bn, fingerprint, writing): its name, a short
    description, and ``seconds`` (``None`` when the phase starts, its duration when it is done)."""

    name: str
    detail: str
    seconds: float | None = None


@dataclass
class _RunState:
    """Everything one run carries from iteration to iteration (built by :func:`_start_or_resume`)."""

    cfg: DistillConfig
    source: RealSource
    dev: torch.device
    dist: DistContext
    rd: Path | None
    ckpt_path: Path | None
    log: RunLog
    arch: ArchSpec
    init: InitSpec
    sched: Schedule
    m_images: int
    module: nn.Module
    theta0: dict[str, Tensor]
    theta0_digests: dict[str, str]
    transform: str
    images: Tensor
    labels: Tensor
    lrs: Tensor
    opt: torch.optim.Optimizer
    rng: np.random.Generator
    best: IterateSelection
    start: int
    elapsed0: float
    prev: tuple[Tensor, Tensor, Tensor]
    losses: list[float] = field(default_factory=list)
    t_start: float = 0.0
    scorer: Scorer | None = None  # select="val-*": scores candidate iterates on held-out data
    selection: dict[str, Any] = field(default_factory=dict)  # how the written iterate was chosen


def _start_or_resume(source: RealSource, cfg: DistillConfig, rd: Path | None, resume: bool, dev: torch.device,
                     dist: DistContext, log: RunLog) -> _RunState:
    """Build the module and theta_0, then either fresh distilled data or the checkpoint's state."""
    k = source.num_classes
    arch = _arch_spec(cfg, source)
    init = InitSpec(seed=cfg.seed, scheme=cfg.init_scheme)
    m_images, classes = _layout(cfg, k)
    sched: Schedule = make_schedule(cfg.schedule, num_images=m_images, steps=cfg.steps, epochs=cfg.epochs)
    ckpt_path = rd / "checkpoint.pt" if rd is not None else None
    module, theta0_digests = build_module(arch, init, device=dev)
    theta0 = {n: p.detach().clone() for n, p in module.named_parameters()}
    start = 0
    elapsed0 = 0.0
    rng = np.random.default_rng([cfg.seed, 1])
    best = IterateSelection()
    st: dict[str, Any] = {}
    if resume:
        # rank 0 reads the checkpoint and hands it to the others: no shared file system needed
        st = dist.broadcast_object(load_checkpoint(ckpt_path) if dist.is_main and ckpt_path is not None else None)
        check_resume_config(DistillConfig.from_obj(json.loads(st["config"])), cfg)
        start = int(st["iteration"])
        log.drop_after(start)  # the loss lines after the checkpoint are about to be written again
        elapsed0 = float(st["elapsed"])
        x0, y0, a0 = st["images"], st["labels"], st["lrs"]
        rng.bit_generator.state = json.loads(st["rng"])
        best = IterateSelection.from_state(st["best"])
    else:
        x0 = torch.from_numpy(_initial_images(cfg, source, classes))
        y0 = torch.from_numpy(_initial_labels(cfg, classes, k))
        a0 = torch.full((sched.total,), float(cfg.inner_lr), dtype=torch.float32)
    images = x0.to(dev, torch.float32).clone().requires_grad_(cfg.train_images)
    labels = y0.to(dev, torch.float32).clone().requires_grad_(cfg.mode == "sldd")
    lrs = a0.to(dev, torch.float32).clone().requires_grad_(True)
    groups: list[dict[str, Any]] = ([{"params": [images], "lr": cfg.lr}] if cfg.train_images else []) + [
        {"params": [lrs], "lr": cfg.lr_lrs if cfg.lr_lrs is not None else cfg.lr / 10}]
    if cfg.mode == "sldd":
        groups.append({"params": [labels], "lr": cfg.lr_labels if cfg.lr_labels is not None else cfg.lr})
    opt = torch.optim.Adam(groups)
    if resume:
        opt.load_state_dict(st["optimizer"])
    if rd is not None and dist.is_main:
        if not resume:
            run_info = {"config": cfg.to_obj(), "created": utc_now(), "arch": arch.to_obj(),
                        "source": {"classes": list(source.class_names), "channels": source.channels,
                                   "image_size": list(source.image_size),
                                   "fingerprint": source.fingerprint},
                        "tool": f"sldpack {sldpack.__version__}", "torch": torch.__version__}
            atomic_write_bytes(rd / "run.json", (json.dumps(run_info, indent=1) + "\n").encode())
        log.write(event="resume" if resume else "start", iteration=start, total=cfg.iterations,
                  device=str(dev), threads=torch.get_num_threads(), images=m_images, steps=sched.total,
                  processes=dist.world_size, unroll=cfg.unroll)
    set_inner_mode(module)
    return _RunState(cfg=cfg, source=source, dev=dev, dist=dist, rd=rd, ckpt_path=ckpt_path, log=log, arch=arch,
                     init=init, sched=sched, m_images=m_images, module=module, theta0=theta0,
                     theta0_digests=theta0_digests, transform="softmax" if cfg.mode == "sldd" else "identity",
                     images=images, labels=labels, lrs=lrs, opt=opt, rng=rng, best=best, start=start,
                     elapsed0=elapsed0, prev=(images.detach().clone(), labels.detach().clone(),
                                              lrs.detach().clone()))


def _real_batch(s: _RunState) -> tuple[Tensor, Tensor]:
    """This rank's share of the iteration's real batch. Every rank draws the whole global batch from the
    shared stream (so the stream, and a checkpoint of it, do not depend on the world size) and keeps its
    contiguous share."""
    xr_np, yr_np = s.source.sample(s.cfg.batch_real, s.rng, balanced=s.cfg.balanced)
    lo, hi = shard_bounds(s.cfg.batch_real, s.dist.rank, s.dist.world_size)
    xr = torch.from_numpy(np.ascontiguousarray(xr_np[lo:hi], dtype=np.float32)).to(s.dev)
    yr = torch.from_numpy(np.asarray(yr_np[lo:hi], dtype=np.int64)).to(s.dev)
    return xr, yr


def _outer_step(s: _RunState, it: int, progress: Callable[[Progress], None] | None) -> float:
    """One outer iteration: real batch, hypergradient (graph or recompute), all-reduce, Adam step, log,
    checkpoint. Returns the (global) outer loss."""
    cfg = s.cfg
    xr, yr = _real_batch(s)
    bufs = scratch_buffers(s.module)
    k_global = cfg.batch_real

    def outer(theta: Mapping[str, Tensor]) -> Tensor:
        logits = functional_call(s.module, (dict(theta), bufs), (xr,), tie_weights=False, strict=True)
        if not s.dist.active:
            return torch.nn.functional.cross_entropy(logits, yr)
        # the share's sum over the global K: the ranks' losses (and gradients) add up to the global mean
        return torch.nn.functional.cross_entropy(logits, yr, reduction="sum") / k_global

    with torch.enable_grad():
        targets = apply_label_transform(s.labels, s.transform)
    shard = (ImageShard(s.dist.rank, s.dist.world_size, s.dist.all_reduce_sum)
             if cfg.shard_images and s.dist.active else None)
    hg = hypergradient(s.module, s.theta0, bufs, s.images, targets, s.lrs, s.sched, outer, mode=cfg.unroll,
                       checkpoint_every=cfg.unroll_checkpoint, shard=shard)
    if shard is None:  # every rank has the whole hypergradient of its real share: sum them
        loss_t, gx, gp, ga = s.dist.all_reduce_sum([hg.loss.reshape(1).to(hg.images.dtype), hg.images,
                                                    hg.targets, hg.lrs])
    else:  # already summed inside the sharded walk
        loss_t, gx, gp, ga = hg.loss.reshape(1), hg.images, hg.targets, hg.lrs
    grads: list[Tensor] = [gx, ga]  # gx is all-reduced even when the images are frozen: the same collectives
    if cfg.mode == "sldd":
        # chain rule through the label transform, once per iteration (not once per inner step)
        (gy,) = torch.autograd.grad(targets, [s.labels], grad_outputs=[gp])
        grads.append(gy)
    lv = float(loss_t[0])
    if not math.isfinite(lv) or not all(bool(torch.isfinite(g).all()) for g in grads):
        kept = s.ckpt_path is not None and s.ckpt_path.is_file()
        raise UsageError(f"distillation diverged at iteration {it + 1} (loss {lv}); start again with "
                         "a lower {inner_lr} or {lr}" + (f" ({s.ckpt_path} holds the state of the last "
                                                         "checkpoint)" if kept else ""), field=("inner_lr", "lr"))
    learn = [s.images, s.lrs] + ([s.labels] if cfg.mode == "sldd" else [])
    for p, g in zip(learn, grads, strict=True):
        if p.requires_grad:  # frozen images (train_images=False) get no gradient and no Adam step
            p.grad = g.detach().clone()
    s.opt.step()
    s.opt.zero_grad(set_to_none=True)
    done = it + 1
    s.losses.append(lv)
    # the loss was measured for the iterate *before* this step; the EMA tracks the run's state
    s.best.update(done - 1, lv, cfg.ema, s.prev[0], s.prev[1], s.prev[2])
    s.prev = (s.images.detach().clone(), s.labels.detach().clone(), s.lrs.detach().clone())
    if s.scorer is not None and cfg.select.startswith("val") and (
            done % cfg.select_every == 0 or done == cfg.iterations):
        # scored before the checkpoint below, so a resumed run holds the same candidates as an uninterrupted one
        cand = materialize(copy.deepcopy(s.module), s.theta0, s.sched, s.images, s.labels, s.lrs, s.transform,
                           cfg=cfg, source=s.source)
        score = float(s.scorer(cand))
        kept = s.best.offer(done, score if math.isfinite(score) else -math.inf, s.images, s.labels, s.lrs)
        set_inner_mode(s.module)
        s.log.write(event="candidate", iteration=done, score=score if math.isfinite(score) else None, kept=kept)
    elapsed = s.elapsed0 + time.perf_counter() - s.t_start
    if s.dist.is_main:
        if s.rd is not None and (done % cfg.log_every == 0 or done == cfg.iterations):
            a = s.lrs.detach()
            s.log.write(iteration=done, loss=lv, ema=s.best.ema, lr_mean=float(a.mean()), lr_min=float(a.min()),
                        lr_max=float(a.max()), elapsed_s=round(elapsed, 3))
        if s.ckpt_path is not None and ((cfg.checkpoint_every and done % cfg.checkpoint_every == 0)
                                        or done == cfg.iterations):
            save_checkpoint(s.ckpt_path, cfg=cfg, iteration=done, images=s.images, labels=s.labels, lrs=s.lrs,
                             opt=s.opt, rng=s.rng, elapsed=elapsed, best=s.best)
        if progress is not None:
            rate = (time.perf_counter() - s.t_start) / (done - s.start)
            progress(Progress(done, cfg.iterations, lv, elapsed, rate * (cfg.iterations - done)))
    return lv


def check_run(source: RealSource, config: DistillConfig, *, run_dir: str | Path | None = None,
              resume: bool = False, processes: int = 1, scorer: Scorer | None = None) -> DistillConfig:
    """Every check :func:`distill` makes before its processes meet, for ``processes`` of them.

    ``sldp distill --nproc N`` calls it in the parent, so bad input is refused once, before any worker
    starts (a worker refusing while another waits in a collective was a race).

    Returns:
        ``config`` with ``select="auto"`` resolved.

    Raises:
        UsageError: bad settings for this data and process count, a resume without checkpoint.
    """
    cfg = config
    cfg.validate()
    if cfg.select == "auto":  # the file, the checkpoint and the log name the rule that is applied
        rule = str(getattr(scorer, "rule", "val-hm")) if scorer is not None else "best"
        if rule not in SELECT_RULES or rule == "auto":
            raise UsageError(f"the scorer's rule must be one of val-hm, val-acc, got {rule!r}", field="scorer")
        cfg = replace(cfg, select=cast(SelectRule, rule))
    if cfg.select.startswith("val") and scorer is None:
        raise UsageError(f"{{select}} {cfg.select!r} needs held-out data: pass a {{scorer}} (e.g. "
                         "sldpack.pipelines.selection.make_val_scorer over a validation part of the training "
                         "images)", field=("select", "scorer"))
    if scorer is not None and processes > 1:
        raise UsageError("{select} 'val-*' (a {scorer}) runs in one process, not under torch.distributed",
                         field=("select", "scorer"))
    ckpt_path = Path(run_dir) / "checkpoint.pt" if run_dir is not None else None
    if resume and (ckpt_path is None or not ckpt_path.is_file()):
        raise UsageError(f"{{resume}}: no checkpoint at {ckpt_path}", field="resume")
    k = source.num_classes
    if cfg.batch_real < k and cfg.balanced:
        raise UsageError(f"{{batch_real}} must be >= the number of classes ({k}) for {{balanced}} real batches, "
                         f"got {cfg.batch_real}", field=("batch_real", "balanced"))
    shard_bounds(cfg.batch_real, 0, processes)  # K >= world size
    _arch_spec(cfg, source)
    # the distilled images with their gradient and Adam's two moments, and a real batch with its gradient,
    # all float32: bounded before any is allocated (Python ints: no overflow)
    m = (cfg.steps if cfg.schedule == "per-step" else 1) * k * cfg.images_per_class
    c, (h, w) = source.channels, source.image_size
    check_allocation((4 * m + 2 * cfg.batch_real) * c * h * w * 4,
                     f"{m} distilled images of {c}x{h}x{w} ({{images_per_class}} {cfg.images_per_class}) and a "
                     f"real batch ({{batch_real}} {cfg.batch_real})", field=("images_per_class", "batch_real"))
    return cfg


def distill(source: RealSource, config: DistillConfig, *, run_dir: str | Path | None = None, resume: bool = False,
            progress: Callable[[Progress], None] | None = None,
            on_iteration: Callable[[int, float], None] | None = None,
            on_phase: Callable[[Phase], None] | None = None, scorer: Scorer | None = None) -> DistillResult:
    """Learn a distilled set from ``source`` and (with ``run_dir``) write the run's files and ``.sldp``.

    Under ``torchrun`` (or ``sldp distill --nproc N``) every process calls this with the same arguments;
    see :mod:`sldpack.nn.distributed`. Rank 0 alone writes files and calls ``progress``/``on_phase``;
    the other ranks return a result whose module is replayed from rank 0's file contents.

    Args:
        source: real data (see :class:`~sldpack.pipelines.sources.RealSource`).
        config: the run's settings.
        run_dir: directory for ``run.json``, ``log.jsonl``, ``checkpoint.pt``, ``final/``,
            ``distilled.sldp``, ``montage.png``; ``None`` keeps everything in memory (tests, notebooks).
        resume: continue from ``run_dir/checkpoint.pt`` (same settings, except iterations/device/
            checkpoint_every/log_every/select/unroll/unroll_checkpoint); any number of processes.
        progress: called after every iteration.
        on_iteration: called with (iterations done, loss) after every iteration and its checkpoint;
            an exception raised here stops the run (the last checkpoint stays valid).
        on_phase: called when each phase after the last iteration starts and ends (with its time).
        scorer: with ``select="val-*"``, scores a candidate iterate's network on held-out data (higher is
            better; e.g. :func:`sldpack.pipelines.selection.make_val_scorer`).

    Returns:
        The result; ``result.sldp_path`` is set when a run directory was given.

    Raises:
        UsageError: bad settings, a resume without checkpoint or with different settings, divergence.
        DataError: the data source cannot deliver what the run needs.
    """
    cfg = check_run(source, config, run_dir=run_dir, resume=resume, scorer=scorer)
    dev = resolve_device(cfg.device)
    rd = Path(run_dir) if run_dir is not None else None
    ckpt_path = rd / "checkpoint.pt" if rd is not None else None
    with distributed_session(dev) as dist:
        if dist.active and dev.type == "cuda":
            dev = torch.device("cuda", dist.local_rank)
        shard_bounds(cfg.batch_real, dist.rank, dist.world_size)  # K >= world size, before any collective
        if rd is not None and dist.is_main:
            rd.mkdir(parents=True, exist_ok=True)
            if not resume and ckpt_path is not None and ckpt_path.exists():
                raise UsageError(f"{rd} already holds a run (checkpoint.pt): set {{resume}} to continue it, or "
                                 "choose another {run_dir}", field=("run_dir", "resume"))
        log = RunLog(rd / "log.jsonl" if rd is not None and dist.is_main else None)
        try:
            with deterministic(dev):
                s = _start_or_resume(source, cfg, rd, resume, dev, dist, log)
                if scorer is not None and dist.active:
                    raise UsageError("{select} 'val-*' (a {scorer}) runs in one process, not under "
                                     "torch.distributed", field=("select", "scorer"))
                s.scorer = scorer
                s.t_start = time.perf_counter()
                for it in range(s.start, cfg.iterations):
                    lv = _outer_step(s, it, progress if dist.is_main else None)
                    if on_iteration is not None:
                        on_iteration(it + 1, lv)
                chosen = _select(s)
                if not dist.is_main:
                    return _follow_main(s, rd)
                result = _finish(s, selected_iteration=chosen, on_phase=on_phase)
                result.losses = s.losses
                result.resumed_from = s.start
                if rd is not None:
                    _timed_phase(s, on_phase, "write", f"writing {rd / 'distilled.sldp'}, final/ and montage",
                                 lambda: _write_outputs(rd, result, source))
                    log.write(event="done", iteration=cfg.iterations, sldp=str(result.sldp_path),
                              theta_opt_sha256=result.manifest.replay.theta_opt_sha256 if result.manifest.replay
                              else None)
                dist.broadcast_object((result.manifest, {n: (t.role, np.asarray(t.array))
                                                                  for n, t in result.tensors.items()}))
                return result
        finally:
            log.close()


def _select(s: _RunState) -> int:
    """Apply the iterate selection rule: returns the chosen iteration and loads its data into ``s``."""
    chosen = s.cfg.iterations
    b = s.best
    s.selection = {"rule": s.cfg.select}
    if s.cfg.select == "best" and b.images is not None and b.labels is not None and b.lrs is not None:
        chosen = b.iteration
        s.images, s.labels, s.lrs = (b.images.to(s.dev), b.labels.to(s.dev), b.lrs.to(s.dev))
    elif s.cfg.select.startswith("val") and b.val_state is not None:
        chosen = b.val_iteration
        s.images, s.labels, s.lrs = (t.to(s.dev) for t in b.val_state)
        s.selection.update(score=b.val_score, every=s.cfg.select_every,
                           held_out=getattr(s.scorer, "description", "held-out images"))
    s.log.write(event="select", rule=s.cfg.select, iteration=chosen,
                ema=b.best_ema if s.cfg.select == "best" else None, score=s.selection.get("score"))
    return chosen


def _follow_main(s: _RunState, rd: Path | None) -> DistillResult:
    """A non-zero rank: receive rank 0's manifest and tensors and replay them (cheap: T steps)."""
    manifest, arrays = s.dist.broadcast_object(None)
    tensors = {n: sldpack.Tensor(role, arr) for n, (role, arr) in arrays.items()}
    res = replay_arrays(manifest, {n: a for n, (_r, a) in arrays.items()}, device=s.dev)
    return DistillResult(manifest=manifest, tensors=tensors, module=res.module, losses=s.losses,
                         sldp_path=(rd / "distilled.sldp") if rd is not None else None, resumed_from=s.start)


_T = TypeVar("_T")


def _timed_phase(s: _RunState, on_phase: Callable[[Phase], None] | None, name: str, detail: str,
                 fn: Callable[[], _T]) -> _T:
    """Run one final phase, announcing it (callback + log) before and with its duration after."""
    if on_phase is not None:
        on_phase(Phase(name, detail))
    t0 = time.perf_counter()
    out = fn()
    sec = time.perf_counter() - t0
    s.log.write(event="phase", phase=name, seconds=round(sec, 3))
    if on_phase is not None:
        on_phase(Phase(name, detail, sec))
    return out


def _finish(s: _RunState, *, selected_iteration: int, on_phase: Callable[[Phase], None] | None = None
            ) -> DistillResult:
    """theta_opt via the replay path, theta_bn on real data, manifest, fingerprint on the CPU."""
    cfg, source, module, sched = s.cfg, s.source, s.module, s.sched
    dev = torch.device(s.dev.type)  # "cuda", not the rank's "cuda:N": nothing machine-specific in the file
    arch, init, theta0_digests, transform = s.arch, s.init, s.theta0_digests, s.transform
    selection = s.selection
    x = s.images.detach().to(torch.float32)
    y = s.labels.detach().to(torch.float32)
    a = s.lrs.detach().to(torch.float32)
    materialize(module, s.theta0, sched, x, y, a, transform, cfg=cfg, source=source,
                run=lambda name, detail, work: _timed_phase(s, on_phase, name, detail, work))
    tensors: dict[str, sldpack.Tensor] = {
        "images": sldpack.Tensor("images", x.cpu().numpy().copy()),
        "labels": sldpack.Tensor("labels", y.cpu().numpy().copy()),
        "lrs": sldpack.Tensor("lrs", a.cpu().numpy().copy()),
    }
    bufs = dict(module.named_buffers())
    for n in buffer_names(module):
        tensors[f"bn.{n}"] = sldpack.Tensor("bn_stats", bufs[n].detach().cpu().numpy().copy())
    decide = getattr(s.scorer, "decision", None) if cfg.select.startswith("val") else None
    decision = None
    if decide is not None:  # the held-out images that chose the iterate also choose its decision rule
        decision = _timed_phase(s, on_phase, "decision", "decision rule on the held-out images",
                                lambda: decide(module, selected_iteration))
    # device and unroll strategy change how the run is computed, not what it computes: not recorded
    options = {k: v for k, v in cfg.to_obj().items() if k not in _NOT_RECORDED}
    if cfg.train_images:  # recorded only when it changes what was learned: older files keep their bytes
        del options["train_images"]
    options.update({"update": "theta - (lr * grad)", "outer_loss": "cross_entropy(hard labels, real batch, "
                    "inner mode)", "optimizer": "adam", "theta_bn": {
                        "procedure": "reset, momentum=None (cumulative), inner mode, no grad",
                        "batches": cfg.bn_batches, "batch_size": cfg.bn_batch_size,
                        "class_mix": cfg.bn_class_mix},
                    "image_classes": [int(c) for c in _layout(cfg, source.num_classes)[1]],
                    "selected_iteration": selected_iteration})
    if selection is not None and len(selection) > 1:
        options["selection"] = {k: v for k, v in selection.items() if v is not None}
    options = {k: v for k, v in options.items() if v is not None}
    manifest = Manifest(
        arch=arch,
        init=replace(init, theta0_sha256=dict(theta0_digests)),
        provenance=Provenance(tool=f"sldpack {sldpack.__version__}", created=utc_now(),
                              dataset_sha256=source.fingerprint,
                              extra={"torch": torch.__version__, "distill_device": str(dev)},
                              **run_provenance(source, cfg.to_obj())),
        distill=DistillSpec(method=cfg.mode, steps=sched.steps, epochs=sched.epochs, schedule=sched.indices,
                            label_transform=transform, loss="cross_entropy", inner_batchnorm="batch_stats",
                            options=options),
        labels=LabelSpec(names=tuple(source.class_names)),
        preprocessing=source.preprocessing,
        decision=decision,
    )
    arrays = {n: t.array for n, t in tensors.items()}
    fp = _timed_phase(s, on_phase, "fingerprint", f"replay fingerprint (CPU, {cfg.fingerprint_threads} thread(s), "
                      f"{sched.total} steps)", lambda: fingerprint_arrays(manifest, arrays, probe_seed=cfg.seed,
                                                                         probe_count=cfg.probe_count,
                                                                         threads=cfg.fingerprint_threads))
    manifest = replace(manifest, replay=fp)
    return DistillResult(manifest=manifest, tensors=tensors, module=module, losses=[])


def _write_outputs(rd: Path, result: DistillResult, source: RealSource) -> None:
    write_pack_input(rd / "final", result.manifest, result.tensors)
    path = rd / "distilled.sldp"
    result.write(path)
    result.sldp_path = path
    m = result.manifest
    assert m.distill is not None
    probs = apply_label_transform(torch.from_numpy(np.asarray(result.tensors["labels"].array)),
                                  m.distill.label_transform).numpy()
    try:
        save_montage(np.asarray(result.tensors["images"].array), probs, source.class_names, rd / "montage.png",
                     mean=source.preprocessing.mean, std=source.preprocessing.std)
    except (OSError, ValueError) as exc:  # a montage is a convenience; never lose the run over it
        (rd / "montage.error.txt").write_text(f"{exc}\n")


