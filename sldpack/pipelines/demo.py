"""``sldp demo``: the main job on built-in phantom data, end to end, with pictures and a summary.

phantom X-rays -> train/test split -> I/N/P patches -> soft-label distillation (resumable run directory)
-> pack (``demo.sldp``) -> verify (every digest, then replay against the fingerprint) -> replay -> evaluate on
the held-out images (patch level and Eq. 9 image level) -> compression figure.

Everything is written under one folder, each file atomically (a crash never leaves a half-written file)::

    OUT/phantom.png        phantom images with the organ outline (normal and diseased)
    OUT/patch_grid.png     labelled windows (I blue, N green, P red) on a normal and a diseased image
    OUT/patches.png        sample training patches of each class
    OUT/distilled.png      the distilled images with their soft labels
    OUT/compression.png    bytes: training images, patches, trained network, .sldp (log scale)
    OUT/demo.sldp          the packed distilled set
    OUT/model.safetensors  the network replayed from demo.sldp (what a checkpoint would cost)
    OUT/per_image.csv      Eq. (9) per test image
    OUT/eval.json          the evaluation
    OUT/summary.json       everything the summary table shows, plus the commands to reproduce it
    OUT/run/               the distiller's run directory (checkpoint.pt, log.jsonl, final/, distilled.sldp)

Deterministic for a given ``seed`` and thread count: the phantom, the split, theta_0 and every random draw
of the distiller derive from ``seed``.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

import sldpack
from sldpack.atomic import atomic_write_bytes
from sldpack.errors import UsageError
from sldpack.medical.detection import DEFAULT_DELTA
from sldpack.medical.loaders import ImageSet
from sldpack.medical.montage import PATCH_COLORS, draw_patch_boxes, outline_mask, save_montage
from sldpack.medical.patches import DEFAULT_INSIDE_MIN, DEFAULT_OUTSIDE_MAX, PATCH_CLASS_NAMES, label_patch_grid
from sldpack.medical.phantom import PHANTOM_LABEL_NAMES, make_phantom
from sldpack.pipelines.datasets import DataSelection, select_split
from sldpack.pipelines.evaluate import evaluate
from sldpack.pipelines.patch_source import PatchSource, PatchTask

if TYPE_CHECKING:
    from sldpack.nn.distill import DistillConfig, Progress

__all__ = ["DEMO_OUTPUTS", "DemoConfig", "DemoResult", "bar_chart", "check_demo_folder", "render_summary", "run_demo",
           "save_bar_chart"]

DEMO_OUTPUTS = ("phantom.png", "patch_grid.png", "patches.png", "distilled.png", "compression.png", "demo.sldp",
                "model.safetensors", "per_image.csv", "eval.json", "summary.json", "run")
"""Every name ``sldp demo`` writes into its folder (hidden names aside: lock file, temporaries)."""


def check_demo_folder(root: Path) -> None:
    """Refuse an output folder that holds anything a demo did not write (it would be overwritten or mixed
    with the demo's files); whether a demo's own folder has the same settings is checked by :func:`run_demo`.

    Raises:
        UsageError: ``root`` holds other files (named).
    """
    names = sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) if root.is_dir() else []
    foreign = [n for n in names if n not in DEMO_OUTPUTS]
    if foreign:
        shown = ", ".join(foreign[:6]) + (f" and {len(foreign) - 6} more" if len(foreign) > 6 else "")
        raise UsageError(f"--out {root} holds files sldp demo did not write ({shown}): it writes only into an "
                         "empty or new folder, or reruns its own demo; choose another --out")
    if names and not (root / "run" / "run.json").is_file():
        raise UsageError(f"--out {root} holds {', '.join(names)} but no demo run (run/run.json) to recognise "
                         "them by: sldp demo writes only into an empty or new folder; choose another --out")

Log = Callable[[str], None]


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo (defaults: about two minutes on one busy CPU core).

    Attributes:
        seed: seed of the phantom, the split, theta_0 and the distiller.
        n_images, size: phantom images and their side in px.
        train_fraction: share of images used for distillation (the rest is the held-out test set).
        patch_size, stride: sliding windows.
        arch, depth, width, batchnorm: the network (ConvNet).
        mode: ``"sldd"`` (learned soft labels) or ``"dd"`` (fixed one-hot labels).
        images_per_class, steps, epochs, iterations, batch_real, lr, inner_lr: the distiller's settings
            (see :class:`sldpack.nn.distill.DistillConfig`).
        checkpoint_every: iterations between the distiller's crash-safe checkpoints.
        compression: payload compression of ``demo.sldp``.
        threads: torch CPU threads (recorded; the caller sets them).
        delta: Eq. (9) threshold (unless the distilled file carries a decision rule with its own delta).
        split_seed: seed of the train/test split (``None``: ``seed``).
        out_size, outside_max, inside_min: patch shrinking and I/N/P thresholds (see
            :class:`~sldpack.pipelines.patch_source.PatchTask`).
        device: where the distiller runs (``cpu``, ``cuda`` or ``auto``).
    """

    seed: int = 0
    n_images: int = 80
    size: int = 128
    train_fraction: float = 0.7
    patch_size: int = 16
    stride: int = 8
    arch: str = "convnet@1"
    depth: int = 2
    width: int = 32
    batchnorm: bool = False
    mode: Literal["sldd", "dd"] = "sldd"
    images_per_class: int = 1
    steps: int = 10
    epochs: int = 3
    iterations: int = 300
    batch_real: int = 48
    lr: float = 0.05
    inner_lr: float = 0.05
    checkpoint_every: int = 25
    compression: str = "zstd"
    threads: int = 1
    delta: float = DEFAULT_DELTA
    split_seed: int | None = None
    out_size: int | None = None
    outside_max: float = DEFAULT_OUTSIDE_MAX
    inside_min: float = DEFAULT_INSIDE_MIN
    device: str = "cpu"

    @classmethod
    def tiny(cls, seed: int = 0) -> DemoConfig:
        """Seconds-long settings for smoke tests (the numbers mean nothing)."""
        return cls(seed=seed, n_images=10, size=64, patch_size=16, stride=8, depth=2, width=8, steps=2, epochs=1,
                   iterations=5, batch_real=12, checkpoint_every=2)

    def validate(self) -> None:
        """Reject settings the pipeline cannot run.

        Raises:
            UsageError: naming the setting.
        """
        if self.n_images < 4:
            raise UsageError(f"the demo needs at least 4 phantom images (2 per split), got {self.n_images}")
        if self.mode not in ("sldd", "dd"):
            raise UsageError(f"mode must be sldd or dd, got {self.mode!r}")

    def to_obj(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass
class DemoResult:
    """What :func:`run_demo` produced: the summary (also in ``summary.json``) and the output folder."""

    summary: dict[str, Any]
    out: Path

    @property
    def ok(self) -> bool:
        """True when the file verified (digests and replay)."""
        return bool(self.summary.get("verify", {}).get("ok"))


# --- pictures ------------------------------------------------------------------------------------------

def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError, AttributeError):
        return ImageFont.load_default()


def bar_chart(items: Sequence[tuple[str, int]], *, title: str, width: int = 760, highlight: int = -1) -> Any:
    """A horizontal bar chart of byte counts on a log10 axis (Pillow image).

    Args:
        items: ``(label, bytes)`` rows, drawn top to bottom; bytes must be positive.
        title: line above the chart.
        width: image width in px.
        highlight: index of the bar drawn in the accent colour (default: the last).

    Raises:
        UsageError: no rows or a non-positive value.
    """
    from PIL import Image, ImageDraw

    from sldpack.pipelines.report import format_bytes

    if not items or any(v <= 0 for _, v in items):
        raise UsageError("a bar chart needs rows with positive byte counts")
    font, small = _font(14), _font(12)
    # a log2 axis with ticks every factor 8 lands on round binary sizes (1 KiB, 8 KiB, 64 KiB, ...)
    lo = 2 ** (3 * math.floor(math.log2(min(v for _, v in items)) / 3))
    hi = 2 ** (3 * math.ceil(math.log2(max(v for _, v in items)) / 3 + 1e-9))
    hi = max(hi, lo * 8)
    left, right, top, row = 250, 110, 46, 44
    height = top + row * len(items) + 40
    img = Image.new("RGB", (width, height), (255, 255, 255))
    d = ImageDraw.Draw(img)
    d.text((12, 12), title, fill=(0, 0, 0), font=font)
    span = width - left - right

    def xpos(v: float) -> int:
        return left + round(span * (math.log2(v) - math.log2(lo)) / (math.log2(hi) - math.log2(lo)))

    tick = lo
    while tick <= hi:
        x = xpos(tick)
        d.line((x, top - 6, x, top + row * len(items)), fill=(215, 215, 215))
        d.text((x - 18, top + row * len(items) + 6), format_bytes(tick).replace(".00", ""), fill=(90, 90, 90),
               font=small)
        tick *= 8
    hl = len(items) - 1 if highlight < 0 else highlight
    for k, (label, v) in enumerate(items):
        y = top + k * row
        color = (220, 80, 40) if k == hl else (70, 120, 190)
        d.rectangle((left, y + 8, max(left + 2, xpos(v)), y + row - 8), fill=color)
        d.text((12, y + row // 2 - 8), label, fill=(0, 0, 0), font=small)
        d.text((max(left + 2, xpos(v)) + 6, y + row // 2 - 8), format_bytes(v), fill=(0, 0, 0), font=small)
    return img


def save_bar_chart(path: str | Path, items: Sequence[tuple[str, int]], *, title: str) -> Path:
    """:func:`bar_chart` written as PNG, atomically."""
    buf = io.BytesIO()
    bar_chart(items, title=title).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def _phantom_sheet(data: ImageSet, split_of: dict[int, str], path: Path, per_class: int = 4) -> None:
    picks = [i for c in (0, 1) for i in np.flatnonzero(data.labels == c)[:per_class].tolist()]
    assert data.masks is not None
    tiles = [outline_mask(data.images[i], data.masks[i]) for i in picks]
    caps = [f"{data.names[i]}\n{PHANTOM_LABEL_NAMES[int(data.labels[i])]} ({split_of[i]})" for i in picks]
    scale = max(1, 160 // data.shape[0])
    save_montage(tiles, caps, path, ncols=per_class, scale=scale,
                 title="phantom X-rays, organ outline in yellow (top: normal, bottom: diseased)")


def _grid_sheet(data: ImageSet, settings: PatchTask, path: Path) -> None:
    assert data.masks is not None
    picks = [int(np.flatnonzero(data.labels == c)[0]) for c in (0, 1) if (data.labels == c).any()]
    tiles, caps = [], []
    for i in picks:
        grid = label_patch_grid(data.masks[i], int(data.labels[i]), settings.config())
        # every other window in each direction: overlapping frames would hide each other
        gy, gx = np.nonzero(grid[::2, ::2] >= 0)
        ys, xs = gy * 2 * settings.stride, gx * 2 * settings.stride
        tiles.append(draw_patch_boxes(data.images[i], ys, xs, grid[::2, ::2][gy, gx], settings.size))
        caps.append(f"{data.names[i]} ({PHANTOM_LABEL_NAMES[int(data.labels[i])]})")
    scale = max(1, 256 // data.shape[0])
    colors = {(90, 160, 255): "blue", (60, 200, 90): "green", (255, 70, 70): "red"}
    names = ", ".join(f"{n} {colors.get(PATCH_COLORS[k], str(PATCH_COLORS[k]))}"
                      for k, n in enumerate(PATCH_CLASS_NAMES))
    save_montage(tiles, caps, path, ncols=2, scale=scale, title=f"labelled windows (every other one): {names}")


def _patch_sheet(src: PatchSource, path: Path, per_class: int, seed: int) -> None:
    patches, labels, _ = src.examples(per_class, seed)
    caps = [PATCH_CLASS_NAMES[int(c)] for c in labels]
    scale = max(1, 64 // src.settings.input_size)
    save_montage(list(patches), caps, path, ncols=per_class, scale=scale,
                 title="training patches: I outside the organ, N inside (normal image), P inside (diseased)")


# --- the pipeline --------------------------------------------------------------------------------------

def _check_resume(run_dir: Path, dcfg: DistillConfig, source: PatchSource) -> bool:
    """True when ``run_dir`` holds a checkpoint of the same run (resume); raise if it holds another run, or
    its folder holds anything but a demo's outputs (:func:`check_demo_folder`)."""
    from sldpack.nn.distill import DistillConfig

    check_demo_folder(run_dir.parent)
    if not (run_dir / "run.json").is_file():
        return False
    try:
        info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        old = DistillConfig.from_obj(info["config"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{run_dir}/run.json cannot be read ({exc}); use another --out") from exc
    fixed = {"iterations", "checkpoint_every", "device", "log_every", "select"}  # the distiller's resumable set
    diffs = [f.name for f in fields(DistillConfig) if f.name not in fixed
             and getattr(old, f.name) != getattr(dcfg, f.name)]
    if info.get("source", {}).get("fingerprint") not in (None, source.fingerprint):
        diffs.append("data (phantom/patch settings)")
    if diffs:
        raise UsageError(f"{run_dir} holds a demo run with other settings ({', '.join(diffs)}); "
                         "use another --out or delete that folder")
    if not (run_dir / "checkpoint.pt").is_file():
        # the same demo, stopped before its first checkpoint: it starts again, with a fresh log
        (run_dir / "log.jsonl").unlink(missing_ok=True)
        return False
    return True


def run_demo(config: DemoConfig, out: str | Path, *, log: Log | None = None,
             progress: Callable[[Progress], None] | None = None, data: DataSelection | None = None) -> DemoResult:
    """Run the demo pipeline and write its outputs under ``out`` (see the module docs).

    An existing ``out/run/checkpoint.pt`` of the same settings is resumed (a Ctrl-C'd demo continues where
    its last checkpoint was).

    Args:
        config: the settings.
        out: output folder (created).
        log: receives one human line per stage.
        progress: receives the distiller's :class:`~sldpack.nn.distill.Progress` after every iteration.
        data: real images with organ masks (all of them, split here by ``config.train_fraction`` and
            ``config.split_seed``) instead of the phantom (``config.n_images``/``size`` are then unused).

    Returns:
        The summary and the folder.

    Raises:
        UsageError: bad settings, or ``out`` holds a run with other settings.
    """
    import torch

    from sldpack.nn.distill import DistillConfig, distill
    from sldpack.nn.network import save_safetensors
    from sldpack.nn.packing import pack
    from sldpack.nn.replay import replay
    from sldpack.nn.runlog import save_montage as save_distilled
    from sldpack.nn.unroll import apply_label_transform
    from sldpack.nn.verify import verify_replay
    from sldpack.nn.zoo import checkpoint_bytes

    cfg = config
    cfg.validate()
    say = log or (lambda _m: None)
    root = Path(out)
    t_start = time.perf_counter()
    times: dict[str, float] = {}

    def lap(name: str, t: float) -> None:
        times[name] = round(time.perf_counter() - t, 2)

    # 1. phantom data and the split ---------------------------------------------------------------------
    t = time.perf_counter()
    split_seed = cfg.seed if cfg.split_seed is None else cfg.split_seed
    if data is None:
        full = make_phantom(cfg.n_images, size=cfg.size, seed=cfg.seed).to_image_set()
        data_args = f"--phantom {cfg.n_images} --phantom-size {cfg.size} --phantom-seed {cfg.seed}"
    else:
        full = data.data
        full.require_masks()
        cfg = replace(cfg, n_images=len(full), size=int(full.shape[0]))
        data_args = f"--data {data.source}"
    if cfg.patch_size > min(full.shape):
        raise UsageError(f"patch size {cfg.patch_size} exceeds the image size {full.shape}")
    train, rule = select_split(full, "train", train_fraction=cfg.train_fraction, seed=split_seed)
    test, _ = select_split(full, "test", train_fraction=cfg.train_fraction, seed=split_seed)
    train_names = set(train.names)
    split_of = {i: ("train" if n in train_names else "test") for i, n in enumerate(full.names)}
    settings = PatchTask(size=cfg.patch_size, stride=cfg.stride, out_size=cfg.out_size,
                             outside_max=cfg.outside_max, inside_min=cfg.inside_min)
    src = PatchSource.from_image_set(train, settings)
    run_dir = root / "run"
    dcfg = DistillConfig(arch=cfg.arch, arch_options={"depth": cfg.depth, "width": cfg.width},
                         batchnorm=cfg.batchnorm, mode="dd" if cfg.mode == "dd" else "sldd",
                         images_per_class=cfg.images_per_class,
                         steps=cfg.steps, epochs=cfg.epochs, iterations=cfg.iterations, batch_real=cfg.batch_real,
                         lr=cfg.lr, inner_lr=cfg.inner_lr, seed=cfg.seed, device=cfg.device,
                         checkpoint_every=cfg.checkpoint_every, bn_batches=8, bn_batch_size=64)
    # everything is validated before the first file is written: a rerun with other settings into an
    # existing folder is refused with that folder untouched
    dcfg.validate()
    resume = _check_resume(run_dir, dcfg, src)
    root.mkdir(parents=True, exist_ok=True)
    _phantom_sheet(full, split_of, root / "phantom.png")
    lap("phantom", t)
    say(f"[1/7] {'phantom' if data is None else data.source}: {cfg.n_images} images {cfg.size} px (seed "
        f"{cfg.seed}); {len(train)} train / {len(test)} "
        f"test ({rule}) -> phantom.png")

    # 2. patches ----------------------------------------------------------------------------------------
    t = time.perf_counter()
    counts = src.counts()
    _grid_sheet(full, settings, root / "patch_grid.png")
    _patch_sheet(src, root / "patches.png", 8, cfg.seed)
    lap("patches", t)
    say(f"[2/7] patches: {cfg.patch_size} px, stride {cfg.stride}: train I {counts[0]} / N {counts[1]} / "
        f"P {counts[2]} (positions only; cut on demand) -> patch_grid.png, patches.png")

    # 3. distillation -----------------------------------------------------------------------------------
    t = time.perf_counter()
    m_images = cfg.images_per_class * 3
    say(f"[3/7] distilling {m_images} images ({cfg.mode.upper()}, {cfg.arch} depth {cfg.depth} width {cfg.width}, "
        f"T={cfg.steps * cfg.epochs}, {cfg.iterations} iterations, {torch.get_num_threads()} thread(s))"
        + (" - resuming from run/checkpoint.pt" if resume else "") + "; Ctrl-C keeps run/checkpoint.pt")
    dres = distill(src, dcfg, run_dir=run_dir, resume=resume, progress=progress)
    lap("distill", t)
    assert dres.manifest.distill is not None
    probs = apply_label_transform(torch.from_numpy(np.asarray(dres.tensors["labels"].array)),
                                  dres.manifest.distill.label_transform).numpy()
    save_distilled(np.asarray(dres.tensors["images"].array), probs, PATCH_CLASS_NAMES, root / "distilled.png",
                   mean=(src.mean,), std=(src.std,), scale=max(2, 128 // settings.input_size))
    final_loss = dres.losses[-1] if dres.losses else None
    selected = dres.manifest.distill.options.get("selected_iteration")
    say(f"      done in {times['distill']:.1f}s" + (f", last outer loss {final_loss:.4f}" if final_loss else "")
        + (f"; the file holds iteration {selected}" if selected is not None else "") + " -> distilled.png")

    # 4. pack -------------------------------------------------------------------------------------------
    t = time.perf_counter()
    sldp_path = root / "demo.sldp"
    packed = pack(run_dir, sldp_path, compression=cfg.compression, fingerprint="auto")
    raw_size = (run_dir / "distilled.sldp").stat().st_size
    lap("pack", t)
    say(f"[4/7] packed {sldp_path.name}: {packed.file_size} bytes ({cfg.compression}; {raw_size} uncompressed)")

    # 5. verify -----------------------------------------------------------------------------------------
    t = time.perf_counter()
    with sldpack.open(sldp_path) as f:
        f.verify()  # every digest; raises DigestError on a mismatch
    rep = verify_replay(sldp_path, device="cpu")
    lap("verify", t)
    say(f"[5/7] verify: digests ok; {rep.summary()}")

    # 6. replay -----------------------------------------------------------------------------------------
    t = time.perf_counter()
    rres = replay(sldp_path, device="cpu", threads=1)
    ckpt = root / "model.safetensors"
    ck_bytes = save_safetensors(ckpt, rres.module.state_dict(),
                                metadata={"sldp_source": sldp_path.name, "arch": cfg.arch, "format": "pt"})
    arch = rres.manifest.arch
    zoo_bytes = checkpoint_bytes(arch.id, in_channels=arch.in_channels, num_classes=arch.num_classes,
                                 image_size=arch.image_size, batchnorm=arch.batchnorm, options=arch.options)
    lap("replay", t)
    say(f"[6/7] replayed the network from {sldp_path.name} in {rres.seconds:.2f}s -> model.safetensors "
        f"({ck_bytes} bytes)")

    # 7. evaluation on the held-out images ---------------------------------------------------------------
    t = time.perf_counter()
    dec = rres.manifest.decision  # a file that carries its own Eq. (9) delta is evaluated at it
    ev = evaluate(rres.module, rres.manifest, test,
                  delta=dec.delta if dec is not None and dec.rule == "eq9" and dec.delta is not None else cfg.delta)
    assert ev.detection is not None
    ev.detection.write_csv(root / "per_image.csv")
    atomic_write_bytes(root / "eval.json", (json.dumps(ev.to_dict(), indent=2, allow_nan=False) + "\n").encode())
    lap("eval", t)
    m = ev.image
    say(f"[7/7] evaluated on {len(test)} held-out images ({ev.n_inputs} patches): "
        + (f"Sen {m.sensitivity:.3f} Spe {m.specificity:.3f} HM {m.hm:.3f}" if m is not None else "no metrics")
        + " -> per_image.csv, eval.json")

    # compression figure ---------------------------------------------------------------------------------
    n_train_img = len(train) * cfg.size * cfg.size
    patch_bytes = len(src) * settings.input_size ** 2 * 4
    bars = [(f"train images ({len(train)} x uint8)", n_train_img),
            (f"train patches ({len(src)} x float32)", patch_bytes),
            ("trained network (full checkpoint)", zoo_bytes),
            (f"{sldp_path.name} ({m_images} images)", packed.file_size)]
    # "full checkpoint" has one definition everywhere (sldp report, train --save, this figure): the fp32
    # tensors of the state_dict (sldpack.nn.zoo.checkpoint_bytes), the safetensors header not counted
    rate = packed.file_size / zoo_bytes
    save_bar_chart(root / "compression.png", bars,
                   title=f"bytes to share (log scale): .sldp = {rate:.3f} x the checkpoint ({1 / rate:.1f}x smaller)")

    wall = time.perf_counter() - t_start
    eval_cmd = (f"sldp eval {sldp_path} {data_args} --split test --train-fraction {cfg.train_fraction} "
                f"--split-seed {split_seed}")
    train_cmd = (f"sldp train {data_args} "
                 f"--split-seed {split_seed} --train-fraction {cfg.train_fraction} --patch-size {cfg.patch_size} "
                 f"--stride {cfg.stride} --arch-option depth={cfg.depth} --arch-option width={cfg.width} "
                 + ("--batchnorm " if cfg.batchnorm else "") + f"--seed {cfg.seed}")
    summary: dict[str, Any] = {
        "config": cfg.to_obj(),
        "threads": torch.get_num_threads(),
        "data": {"phantom_images": cfg.n_images, "size": cfg.size, "train_images": len(train),
                 "test_images": len(test), "split_rule": rule},
        "patches": {"size": cfg.patch_size, "stride": cfg.stride, "train_counts": dict(zip(PATCH_CLASS_NAMES, counts,
                                                                                          strict=True)),
                    "test_patches": ev.n_inputs},
        "distill": {"mode": cfg.mode, "images": m_images, "T": cfg.steps * cfg.epochs, "iterations": cfg.iterations,
                    "resumed_from": dres.resumed_from, "final_loss": final_loss, "selected_iteration": selected,
                    "soft_labels": np.round(probs, 4).tolist(),
                    "lrs_mean": float(np.mean(np.asarray(dres.tensors["lrs"].array)))},
        "file": {"path": str(sldp_path), "bytes": packed.file_size, "compression": cfg.compression,
                 "uncompressed_bytes": raw_size},
        "checkpoint": {"path": str(ckpt), "bytes": zoo_bytes, "tensor_bytes": zoo_bytes, "file_bytes": ck_bytes},
        "rate": rate,
        "verify": {"digests": "ok", "replay": rep.status, "ok": rep.ok, "max_abs_deviation": rep.max_abs_deviation},
        "eval": ev.to_dict(),
        "outputs": {n: str(root / n) for n in ("phantom.png", "patch_grid.png", "patches.png", "distilled.png",
                                               "compression.png", "demo.sldp", "model.safetensors",
                                               "per_image.csv", "eval.json", "summary.json")},
        "commands": {"eval": eval_cmd, "baseline": train_cmd},
        "seconds": {**times, "total": round(wall, 2)},
    }
    atomic_write_bytes(root / "summary.json", (json.dumps(summary, indent=2, allow_nan=False) + "\n").encode())
    return DemoResult(summary=summary, out=root)


def _f(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def render_summary(s: dict[str, Any]) -> str:
    """The summary table ``sldp demo`` prints."""
    from sldpack.pipelines.report import format_bytes

    c, d, p, di, fi, ck = s["config"], s["data"], s["patches"], s["distill"], s["file"], s["checkpoint"]
    ev = s["eval"]
    img = ev.get("image") or {}
    pm = ev.get("patch") or {}
    rec = pm.get("recall", {})
    tc = p["train_counts"]
    rows = [
        ("data", f"{d['phantom_images']} phantom images {d['size']} px: {d['train_images']} train / "
                 f"{d['test_images']} test (stratified {round(100 * c['train_fraction'])}/"
                 f"{100 - round(100 * c['train_fraction'])}, seed {c['seed']})"),
        ("patches", f"{p['size']} px stride {p['stride']}: train I {tc['I']} / N {tc['N']} / P {tc['P']}"),
        ("distilled", f"{di['images']} images ({c['images_per_class']} per class), {di['mode'].upper()}, "
                      f"T={di['T']}, {di['iterations']} iterations, {s['seconds']['distill']:.0f}s"),
        ("file", f"demo.sldp {format_bytes(fi['bytes'])} ({fi['compression']})"),
        ("checkpoint", f"full checkpoint {format_bytes(ck['bytes'])} of fp32 tensors (model.safetensors on disk "
                       f"{format_bytes(ck.get('file_bytes', ck['bytes']))} with its header)"),
        ("rate", f"{s['rate']:.4f} (.sldp / checkpoint; {1 / s['rate']:.1f}x smaller)"),
        ("verify", f"digests {s['verify']['digests']}; replay {s['verify']['replay']}"),
        ("patch level", f"{ev['n_labelled']} test patches: accuracy {_f(pm.get('accuracy'))}; recall I "
                        f"{_f(rec.get('I'))} N {_f(rec.get('N'))} P {_f(rec.get('P'))}"),
        ("image level", f"{d['test_images']} held-out images, Eq. 9 delta {c['delta']}: Sen "
                        f"{_f(img.get('sensitivity'))}  Spe {_f(img.get('specificity'))}  HM {_f(img.get('hm'))}  "
                        f"AUC {_f(img.get('auc'))}"),
        ("wall time", f"{s['seconds']['total']:.1f}s ({s['threads']} thread(s))"),
    ]
    out = ["", "sldp demo summary", "-" * 17]
    out += [f"  {k:<12} {v}" for k, v in rows]
    out.append(f"  outputs      {Path(s['outputs']['summary.json']).parent}/ (phantom.png, patch_grid.png, "
               "patches.png, distilled.png, compression.png, demo.sldp, model.safetensors, per_image.csv, "
               "eval.json, summary.json, run/)")
    out.append(f"  reproduce    {s['commands']['eval']}")
    out.append(f"  baseline     {s['commands']['baseline']}")
    return "\n".join(out)
