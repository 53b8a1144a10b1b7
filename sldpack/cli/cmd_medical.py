"""``sldp eval``, ``sldp train`` and ``sldp demo``: the medical pipeline on the command line.

Torch is imported only inside the commands, so ``sldp --help`` stays fast. Human output goes to stdout,
progress to stderr; ``--json`` replaces the human output with one JSON document.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from sldpack.cli.cmd_distill import _fmt_time, _parse_options
from sldpack.errors import UsageError

__all__ = ["demo_cmd", "eval_cmd", "format_evaluation", "train_cmd"]

_F = TypeVar("_F", bound=Callable[..., Any])


# --- shared options ---------------------------------------------------------------------------------------

def _data_options(default_split: str) -> Callable[[_F], _F]:
    """--data / --phantom and the split options, shared by eval and train."""

    def deco(f: _F) -> _F:
        opts = [
            click.option("--data", "data", type=click.Path(), default=None,
                         help="Data: .npz with images/masks/labels (e.g. montgomery_512.npz), MedMNIST .npz, a "
                              "folder (images + masks/ + labels.csv; PNG/JPEG/TIFF/DICOM) or one image file."),
            click.option("--phantom", type=int, default=None, metavar="N",
                         help="Use N built-in phantom images instead of --data."),
            click.option("--phantom-size", type=int, default=128, show_default=True, help="Phantom image side."),
            click.option("--phantom-seed", type=int, default=0, show_default=True, help="Phantom seed."),
            click.option("--split", default=default_split, show_default=True,
                         help="train, test or all (by the split rule below); for a MedMNIST file one of its "
                              "own splits (train, val, test)."),
            click.option("--train-fraction", type=float, default=0.7, show_default=True,
                         help="Split rule: share of images in 'train' (stratified by image label)."),
            click.option("--split-seed", type=int, default=0, show_default=True, help="Split rule: seed."),
            click.option("--resize", type=int, default=None, help="Folders only: resize images to this side."),
        ]
        for o in reversed(opts):
            f = o(f)
        return f

    return deco


def _select(data: str | None, phantom: int | None, phantom_size: int, phantom_seed: int, split: str,
            train_fraction: float, split_seed: int, resize: int | None) -> Any:
    from sldpack.pipelines.medical import load_data, phantom_data

    if (data is None) == (phantom is None):
        raise UsageError("give exactly one data source: --data PATH or --phantom N")
    if phantom is not None:
        if phantom < 2:
            raise UsageError(f"--phantom needs at least 2 images, got {phantom}")
        return phantom_data(phantom, phantom_size, phantom_seed, split=split, train_fraction=train_fraction,
                            split_seed=split_seed)
    assert data is not None
    return load_data(data, split=split, train_fraction=train_fraction, split_seed=split_seed, resize=resize)


def _patch_settings(base: Any, patch_size: int | None, stride: int | None, out_size: int | None,
                    outside_max: float | None, inside_min: float | None) -> Any:
    """Command-line values over the file's (``base``, may be None) over the defaults."""
    from sldpack.pipelines.medical import PatchSettings

    if base is None and patch_size is None:
        return None
    size = patch_size if patch_size is not None else base.size
    return PatchSettings(
        size=size,
        stride=stride if stride is not None else (base.stride if base is not None and patch_size is None
                                                  else max(1, size // 2)),
        out_size=out_size if out_size is not None else (base.out_size if base is not None else None),
        outside_max=outside_max if outside_max is not None else (base.outside_max if base is not None else 0.01),
        inside_min=inside_min if inside_min is not None else (base.inside_min if base is not None else 0.85),
    )


def _patch_options(f: _F) -> _F:
    opts = [
        click.option("--patch-size", type=int, default=None, help="Window side in px [default: the file's]."),
        click.option("--stride", type=int, default=None, help="Window step in px [default: the file's]."),
        click.option("--out-size", type=int, default=None,
                     help="Shrink patches to this side (area average) [default: the file's]."),
        click.option("--outside-max", type=float, default=None, help="I below this organ fraction [0.01]."),
        click.option("--inside-min", type=float, default=None, help="N/P above this organ fraction [0.85]."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _eval_options(f: _F) -> _F:
    opts = [
        click.option("--delta", type=float, default=0.4, show_default=True,
                     help="Eq. (9): image positive when Num(P)/(Num(N)+Num(P)) >= delta."),
        click.option("--windows", type=click.Choice(["auto", "labelled", "all"]), default="auto", show_default=True,
                     help="labelled: windows labelled I/N/P by the mask; all: the whole sliding grid (no mask "
                          "needed); auto: labelled when masks exist."),
        click.option("--chunk", type=int, default=512, show_default=True, help="Patches per forward pass."),
        click.option("--per-image", "per_image", type=click.Path(dir_okay=False), default=None,
                     help="Write per-image results to this CSV."),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of the table."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True),
        click.option("--threads", type=int, default=None, help="torch CPU threads [default: torch's]."),
        click.option("--quiet", "-q", is_flag=True, help="No progress on stderr."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _set_threads(threads: int | None) -> None:
    import torch

    if threads is not None:
        if threads < 1:
            raise UsageError("--threads must be >= 1")
        torch.set_num_threads(threads)


class _Ticker:
    """Progress lines on stderr: in place on a terminal, else every ~10 % (or 60 s)."""

    def __init__(self, label: str, quiet: bool) -> None:
        self.label = label
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.t0 = time.monotonic()
        self.last = -1
        self.last_t = 0.0

    def __call__(self, done: int, total: int, loss: float | None = None, elapsed: float | None = None,
                 eta: float | None = None) -> None:
        if self.quiet:
            return
        el = time.monotonic() - self.t0 if elapsed is None else elapsed
        if eta is None:
            eta = el / done * (total - done) if done else 0.0
        line = f"{self.label} {done}/{total}" + ("" if loss is None else f"  loss {loss:.4f}") + \
            f"  elapsed {_fmt_time(el)}  ETA {_fmt_time(eta)}"
        if self.tty:
            click.echo("\r" + line + "   ", nl=done >= total, err=True)
            return
        dec = (10 * done) // max(total, 1)
        now = time.monotonic()
        if dec != self.last or now - self.last_t >= 60 or done >= total:
            self.last, self.last_t = dec, now
            click.echo(line, err=True)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def format_evaluation(ev: Any, *, title: str = "") -> str:
    """The human table of a :class:`~sldpack.pipelines.medical.MedicalEvaluation`."""
    lines = [title] if title else []
    s = ev.settings
    if ev.task == "patches":
        lines.append(f"  patches      {s['patch_size']} px, stride {s['stride']}"
                     + (f", shrunk to {s['out_size']} px" if s["out_size"] != s["patch_size"] else "")
                     + f"; windows: {s['windows']}; {ev.n_inputs} classified")
        if ev.patch is not None:
            rec = "  ".join(f"{n} {_fmt(r)}" for n, r in zip(ev.patch.class_names, ev.patch.recall, strict=True))
            lines.append(f"  patch level  {ev.n_labelled} labelled patches: accuracy {_fmt(ev.patch.accuracy)}  "
                         f"recall {rec}  (balanced {_fmt(ev.patch.balanced_accuracy)})")
        else:
            lines.append("  patch level  n/a (no masks: patch labels unknown)")
        head = f"  image level  Eq. (9), delta {s['delta']}:"
    else:
        lines.append(f"  inputs       whole images, {s['input_size'][0]}x{s['input_size'][1]} px"
                     + (" (resized)" if s["resized"] else ""))
        if ev.patch is not None:
            rec = "  ".join(f"{n} {_fmt(r)}" for n, r in zip(ev.patch.class_names, ev.patch.recall, strict=True))
            lines.append(f"  class level  {ev.n_labelled} images: accuracy {_fmt(ev.patch.accuracy)}  recall {rec}")
        head = "  image level  argmax (image = one input):"
    if ev.image is not None:
        m = ev.image
        lines.append(f"{head} Sen {_fmt(m.sensitivity)}  Spe {_fmt(m.specificity)}  HM {_fmt(m.hm)}  "
                     f"acc {_fmt(m.accuracy)}  AUC {_fmt(m.auc)}  (TP {m.tp} FN {m.fn} TN {m.tn} FP {m.fp})")
    elif ev.detection is not None:
        pos = int(ev.detection.decisions.sum())
        lines.append(f"{head} {pos} of {ev.n_images} image(s) positive (labels unknown: no metrics)")
    else:
        lines.append("  image level  n/a (not a binary task)")
    lines.append(f"  time         {ev.seconds:.1f}s")
    return "\n".join(lines)


def _write_per_image(path: str | None, ev: Any) -> None:
    if path is None:
        return
    from sldpack.atomic import atomic_write_bytes

    atomic_write_bytes(path, ev.to_csv_text().encode("utf-8"))


# --- sldp eval --------------------------------------------------------------------------------------------

@click.command("eval")
@click.argument("file", type=click.Path(dir_okay=False))
@_data_options("test")
@_patch_options
@_eval_options
def eval_cmd(file: str, data: str | None, phantom: int | None, phantom_size: int, phantom_seed: int, split: str,
             train_fraction: float, split_seed: int, resize: int | None, patch_size: int | None,
             stride: int | None, out_size: int | None, outside_max: float | None, inside_min: float | None,
             delta: float, windows: str, chunk: int, per_image: str | None, as_json: bool, device: str,
             threads: int | None, quiet: bool) -> None:
    """Replay FILE (a .sldp, or a .safetensors from `sldp train --save`) and evaluate it on data.

    Patch models (I/N/P, patch geometry in the file's preprocessing.options) are evaluated at patch level
    (accuracy, recall of I/N/P over the labelled windows) and at image level by Eq. (9): Sen, Spe, their
    harmonic mean HM, accuracy and the ROC AUC of the image score Num(P)/(Num(N)+Num(P)). Whole-image
    models (e.g. distilled from MedMNIST) classify each image as one input.

    Split rule for data without its own splits: train/test by image, stratified by image label, with
    --train-fraction and --split-seed (sldpack.medical.split_indices); the same rule `sldp train` and
    `sldp demo` use, so `--split test` is the held-out part.
    """
    if not Path(file).is_file():
        raise UsageError(f"{file}: no such file")
    _set_threads(threads)
    from sldpack.nn.replay import replay, resolve_device
    from sldpack.pipelines.medical import evaluate, load_trained_model, patch_settings_from_manifest

    sel = _select(data, phantom, phantom_size, phantom_seed, split, train_fraction, split_seed, resize)
    dev = resolve_device(device)
    t0 = time.perf_counter()
    pre: Any
    if Path(file).suffix.lower() == ".safetensors":
        tm = load_trained_model(file, device=str(dev))
        module, pre, names, arch = tm.module, tm.preprocessing, tm.class_names, tm.arch
        from sldpack.pipelines.medical import PatchSettings

        base = PatchSettings.from_options(pre.options)
        origin = "trained checkpoint"
    else:
        res = replay(file, device=dev)
        module, manifest = res.module, res.manifest
        pre = manifest.preprocessing
        names = tuple(manifest.labels.names) if manifest.labels is not None else ()
        arch = manifest.arch
        base = patch_settings_from_manifest(manifest)
        origin = f"replayed in {res.seconds:.1f}s"
    if pre is None:
        raise UsageError(f"{file} records no preprocessing (mean/std): cannot feed it real images")
    settings = _patch_settings(base, patch_size, stride, out_size, outside_max, inside_min)
    ticker = _Ticker("eval", quiet or as_json)
    ev = evaluate(module, pre, sel.data, class_names=names, settings=settings, delta=delta, windows=windows,
                  chunk=chunk, progress=lambda d, t: ticker(d, t))
    _write_per_image(per_image, ev)
    doc = {"file": file, "arch": arch.to_obj(), "classes": list(names), "data": sel.to_dict(),
           **ev.to_dict(), "per_image_csv": per_image, "seconds_total": round(time.perf_counter() - t0, 3)}
    if as_json:
        click.echo(json.dumps(doc, indent=2, allow_nan=False))
        return
    title = f"{file}: {arch.id} {dict(arch.options)}, classes {'/'.join(names)} ({origin})\n  data         " \
            f"{sel.describe()}"
    click.echo(format_evaluation(ev, title=title))
    if per_image:
        click.echo(f"  per-image    {per_image}")


# --- sldp train -------------------------------------------------------------------------------------------

@click.command("train")
@_data_options("train")
@click.option("--eval-split", default="test", show_default=True,
              help="Split to evaluate on after training ('none' to skip).")
@click.option("--arch", default="convnet@1", show_default=True, help="Architecture id from the zoo.")
@click.option("--arch-option", multiple=True, metavar="KEY=VALUE", help="Architecture option, e.g. width=64.")
@click.option("--batchnorm/--no-batchnorm", default=False, show_default=True)
@_patch_options
@click.option("--per-class", type=int, default=None, metavar="N",
              help="Train on a random subset of N patches (images) per class instead of all "
                   "(the paper's ResNet18(3000/6000/9000) baselines).")
@click.option("--steps", type=int, default=500, show_default=True, help="Optimiser steps.")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Class-balanced batch size.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate (cosine decay).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of theta0 (portable init), of the subset and of the batches.")
@click.option("--save", "save", type=click.Path(dir_okay=False), default=None,
              help="Write the trained model here (.safetensors, with what `sldp eval` needs).")
@_eval_options
def train_cmd(data: str | None, phantom: int | None, phantom_size: int, phantom_seed: int, split: str,
              train_fraction: float, split_seed: int, resize: int | None, eval_split: str, arch: str,
              arch_option: tuple[str, ...], batchnorm: bool, patch_size: int | None, stride: int | None,
              out_size: int | None, outside_max: float | None, inside_min: float | None, per_class: int | None,
              steps: int, batch_size: int, lr: float, seed: int, save: str | None, delta: float, windows: str,
              chunk: int, per_image: str | None, as_json: bool, device: str, threads: int | None,
              quiet: bool) -> None:
    """Train an architecture normally: the baselines next to a distilled file.

    Data with organ masks: patches (--patch-size, default 32; --stride, default half of it) labelled I/N/P,
    all of them or --per-class N at random, class-balanced batches; evaluated like `sldp eval`
    (patch level + Eq. 9 image level) on --eval-split. Data without masks (MedMNIST): whole images.
    """
    import numpy as np

    _set_threads(threads)
    from sldpack.pipelines.medical import PatchSource, evaluate, save_trained_model, train_model
    from sldpack.pipelines.sources import ArraySource

    if per_class is not None and per_class < 1:
        raise UsageError(f"--per-class must be >= 1, got {per_class}")
    sel = _select(data, phantom, phantom_size, phantom_seed, split, train_fraction, split_seed, resize)
    t0 = time.perf_counter()
    source: Any
    if sel.data.masks is not None:
        settings = _patch_settings(None, patch_size if patch_size is not None else 32, stride, out_size,
                                   outside_max, inside_min)
        source = PatchSource.from_image_set(sel.data, settings, per_class=per_class, subset_seed=seed)
        what = f"{len(source)} patches (I/N/P {'/'.join(str(c) for c in source.counts())})"
    else:
        if any(v is not None for v in (patch_size, stride, out_size)):
            raise UsageError("this data set has no organ masks: patches need masks (drop --patch-size/--stride)")
        labels = np.asarray(sel.data.labels)
        idx = np.arange(len(sel.data))
        if per_class is not None:
            rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC1A5]))
            idx = np.sort(np.concatenate([
                rng.choice(np.flatnonzero(labels == c), size=min(per_class, int((labels == c).sum())),
                           replace=False) for c in np.unique(labels)]))
        source = ArraySource(images=np.asarray(sel.data.images)[idx], labels=labels[idx],
                             num_classes=int(labels.max()) + 1)
        what = f"{len(idx)} whole images"
    if not (quiet or as_json):
        click.echo(f"training {arch} on {what} of {sel.describe()}", err=True)
    ticker = _Ticker("step", quiet or as_json)
    model = train_model(source, arch=arch, arch_options=_parse_options(arch_option), batchnorm=batchnorm,
                        steps=steps, batch_size=batch_size, lr=lr, seed=seed, device=device,
                        progress=lambda d, t, loss: ticker(d, t, loss))
    train_s = time.perf_counter() - t0
    model.metadata.update({"data": sel.to_dict(), "per_class": per_class, "train_inputs": len(source)})
    saved = save_trained_model(save, model) if save else None
    doc: dict[str, Any] = {"arch": model.arch.to_obj(), "classes": list(model.class_names), "data": sel.to_dict(),
                           "train_inputs": len(source), "per_class": per_class, "steps": steps,
                           "batch_size": batch_size, "lr": lr, "seed": seed, "train_seconds": round(train_s, 2),
                           "saved": save, "saved_bytes": saved}
    ev = None
    if eval_split != "none":
        esel = _select(data, phantom, phantom_size, phantom_seed, eval_split, train_fraction, split_seed, resize)
        ticker = _Ticker("eval", quiet or as_json)
        ev = evaluate(model.module, model.preprocessing, esel.data, class_names=model.class_names, delta=delta,
                      windows=windows, chunk=chunk, progress=lambda d, t: ticker(d, t))
        _write_per_image(per_image, ev)
        doc["eval"] = {"data": esel.to_dict(), **ev.to_dict(), "per_image_csv": per_image}
    if as_json:
        click.echo(json.dumps(doc, indent=2, allow_nan=False))
        return
    click.echo(f"trained {model.arch.id} {dict(model.arch.options)} on {what} in {train_s:.1f}s "
               f"({steps} steps x {batch_size})")
    if saved is not None:
        click.echo(f"wrote {save} ({saved} bytes)")
    if ev is not None:
        click.echo(format_evaluation(ev, title=f"evaluation on {esel.describe()}"))
        if per_image:
            click.echo(f"  per-image    {per_image}")


# --- sldp demo --------------------------------------------------------------------------------------------

@click.command("demo")
@click.option("--out", "out", type=click.Path(file_okay=False), default="sldp-demo", show_default=True,
              help="Output folder (created).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of everything (phantom, split, theta0).")
@click.option("--images", type=int, default=None, help="Phantom images (70 %% train, 30 %% test) [80].")
@click.option("--size", type=int, default=None, help="Phantom image side in px [128].")
@click.option("--patch-size", type=int, default=None, help="Patch side in px [16].")
@click.option("--stride", type=int, default=None, help="Patch stride in px [8].")
@click.option("--width", type=int, default=None, help="ConvNet width [32].")
@click.option("--images-per-class", "-M", "images_per_class", type=int, default=None,
              help="Distilled images per class [1].")
@click.option("--steps", type=int, default=None, help="Inner steps per epoch [10].")
@click.option("--epochs", type=int, default=None, help="Passes over the inner steps (T = steps x epochs) [3].")
@click.option("--iterations", type=int, default=None, help="Outer iterations [300].")
@click.option("--mode", type=click.Choice(["sldd", "dd"]), default="sldd", show_default=True)
@click.option("--fast", is_flag=True, help="Tiny settings (seconds; for smoke tests, not for results).")
@click.option("--threads", type=int, default=1, show_default=True,
              help="torch CPU threads (1 = the replay fingerprint's reference; fastest on a busy machine).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
def demo_cmd(out: str, seed: int, images: int | None, size: int | None, patch_size: int | None,
             stride: int | None, width: int | None, images_per_class: int | None, steps: int | None,
             epochs: int | None, iterations: int | None, mode: str, fast: bool, threads: int, as_json: bool,
             quiet: bool) -> None:
    """The whole job on built-in phantom data, end to end.

    phantom X-rays -> I/N/P patches -> soft-label distillation -> pack -> verify (digests + replay) ->
    replay -> evaluation on held-out phantom images (patch level and Eq. 9 image level) -> compression
    figure. Writes PNGs (phantom images with organ outlines, sample patches, distilled images with their
    soft labels, compression bars), the .sldp file, the replayed checkpoint, per-image results and
    summary.json into OUT. Interrupted (Ctrl-C)? The distiller's checkpoint stays in OUT/run; the same
    command resumes it.
    """
    _set_threads(threads)
    from dataclasses import replace

    from sldpack.pipelines.demo import DemoConfig, render_summary, run_demo

    cfg = DemoConfig.tiny(seed) if fast else DemoConfig(seed=seed)
    given: dict[str, Any] = {"n_images": images, "size": size, "patch_size": patch_size, "stride": stride,
                             "width": width, "images_per_class": images_per_class, "steps": steps,
                             "epochs": epochs, "iterations": iterations}
    cfg = replace(cfg, mode=mode, threads=threads, **{k: v for k, v in given.items() if v is not None})
    if stride is None and patch_size is not None:
        cfg = replace(cfg, stride=max(1, patch_size // 2))

    def say(msg: str) -> None:
        if not (quiet or as_json):
            click.echo(msg, err=True)

    ticker = _Ticker("distill iter", quiet or as_json)
    try:
        res = run_demo(cfg, out, log=say, progress=lambda p: ticker(p.iteration, p.total, p.loss, p.elapsed, p.eta))
    except KeyboardInterrupt:
        ck = Path(out) / "run" / "checkpoint.pt"
        if ck.is_file():
            click.echo(f"sldp demo: interrupted; the distiller's checkpoint is kept at {ck}: run the same "
                       "command again to resume", err=True)
        raise
    if as_json:
        click.echo(json.dumps(res.summary, indent=2, allow_nan=False))
    else:
        click.echo(render_summary(res.summary))
