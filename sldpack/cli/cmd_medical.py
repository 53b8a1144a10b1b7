"""``sldp eval``, ``sldp train`` and ``sldp demo``: the medical pipeline on the command line.

Torch is imported only inside the commands, so ``sldp --help`` stays fast. Human output goes to stdout,
progress to stderr; ``--json`` replaces the human output with one JSON document.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Sized
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import click

from sldpack.cli.common import ProgressPrinter, apply_runtime, check_outputs, parse_key_values, run_dir_lock
from sldpack.cli.exit_codes import EXIT_INTERRUPTED
from sldpack.cli.options import COUNT, RATE, SEED, data_options, number, runtime_options
from sldpack.errors import UsageError
from sldpack.medical.detection import DEFAULT_DELTA

if TYPE_CHECKING:
    from sldpack.format.manifest import Preprocessing
    from sldpack.pipelines.datasets import DataSelection
    from sldpack.pipelines.evaluate import MedicalEvaluation

__all__ = ["demo_cmd", "eval_cmd", "format_evaluation", "train_cmd"]

_F = TypeVar("_F", bound=Callable[..., Any])


# --- options of eval and train (the data and runtime options come from sldpack.cli.options) -------------

def _eval_options(f: _F) -> _F:
    opts = [
        click.option("--delta", type=number(0.0, 1.0), default=None,
                     help="Eq. (9): image positive when Num(P)/(Num(N)+Num(P)) >= delta. [the delta of the "
                          f".sldp file's decision rule when it has one (e.g. calibrated on held-out images by "
                          f"--select val-hm), else {DEFAULT_DELTA}]"),
        click.option("--windows", type=click.Choice(["auto", "labelled", "all"]), default="auto", show_default=True,
                     help="labelled: windows labelled I/N/P by the mask; all: the whole sliding grid (no mask "
                          "needed); auto: labelled when masks exist."),
        click.option("--chunk", type=COUNT, default=512, show_default=True, help="Patches per forward pass."),
        click.option("--per-image", "per_image", type=click.Path(dir_okay=False), default=None,
                     help="Write per-image results to this CSV."),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of the table."),
        click.option("--quiet", "-q", is_flag=True, help="No progress on stderr."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def format_evaluation(ev: MedicalEvaluation, *, title: str = "") -> str:
    """The human table of a :class:`~sldpack.pipelines.evaluate.MedicalEvaluation`."""
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


def _write_per_image(path: str | None, ev: MedicalEvaluation) -> None:
    if path is None:
        return
    from sldpack.atomic import atomic_write_bytes

    atomic_write_bytes(path, ev.to_csv_text().encode("utf-8"))


# --- sldp eval --------------------------------------------------------------------------------------------

@click.command("eval")
@click.argument("file", type=click.Path(dir_okay=False))
@data_options
@runtime_options
@_eval_options
@click.option("--record", is_flag=True,
              help="Write the image-level results (HM, AUC, Sen, Spe with 95 % CIs, test images, split rule) into "
                   "FILE's model card (card.evaluation): a manifest-only re-pack; sign the file again after.")
def eval_cmd(file: str, delta: float | None, windows: str, chunk: int, per_image: str | None, as_json: bool,
             quiet: bool, record: bool, **kwargs: Any) -> None:
    """Replay FILE (a .sldp, or a .safetensors from `sldp train --save`) and evaluate it on data.

    Patch models (I/N/P, patch geometry in the file's preprocessing.options) are evaluated at patch level
    (accuracy, recall of I/N/P over the labelled windows) and at image level by Eq. (9): Sen, Spe, their
    harmonic mean HM, accuracy and the ROC AUC of the image score Num(P)/(Num(N)+Num(P)). Whole-image
    models (e.g. distilled from MedMNIST) classify each image as one input. Patch options given here
    override the file's geometry.

    Split rule for data without its own splits: train/test by image, stratified by image label, with
    --train-fraction and --split-seed (sldpack.medical.split_indices); the same rule every data command
    uses, so `--split test` (the default here) is the held-out part.
    """
    from sldpack.pipelines.inputs import DataSpec, RuntimeSpec

    if not Path(file).is_file():
        raise UsageError(f"{file}: no such file")
    spec = DataSpec.from_kwargs(kwargs)
    check_outputs([file, spec.data], {"--per-image": per_image})
    dev = apply_runtime(RuntimeSpec.from_kwargs(kwargs))
    from sldpack.nn.replay import replay
    from sldpack.pipelines.evaluate import evaluate
    from sldpack.pipelines.models import load_trained_model
    from sldpack.pipelines.patch_source import PatchTask, patch_task_from_manifest

    sel = spec.select(spec.split_or("test"))
    t0 = time.perf_counter()
    pre: Preprocessing | None
    base: PatchTask | None
    if Path(file).suffix.lower() == ".safetensors":
        decision = None
        tm = load_trained_model(file, device=str(dev))
        module, pre, names, arch = tm.module, tm.preprocessing, tm.class_names, tm.arch
        base = PatchTask.from_options(pre.options)
        origin = "trained checkpoint"
    else:
        res = replay(file, device=dev)
        module, manifest = res.module, res.manifest
        decision = manifest.decision
        pre = manifest.preprocessing
        names = tuple(manifest.labels.names) if manifest.labels is not None else ()
        arch = manifest.arch
        base = patch_task_from_manifest(manifest)
        origin = f"replayed in {res.seconds:.1f}s"
    if pre is None:
        raise UsageError(f"{file} records no preprocessing (mean/std): cannot feed it real images")
    delta, delta_source = _eval_delta(delta, decision)
    settings = spec.patch_task(base, default_size=None)
    ticker = ProgressPrinter("eval", quiet or as_json)
    ev = evaluate(module, pre, sel.data, class_names=names, settings=settings, delta=delta, windows=windows,
                  chunk=chunk, progress=lambda d, t: ticker(d, t))
    _write_per_image(per_image, ev)
    if record:
        from sldpack.pipelines.card import record_evaluation

        if origin == "trained checkpoint":
            raise UsageError("--record writes into a .sldp file's model card; FILE is a checkpoint")
        edit = record_evaluation(file, ev, class_names=names, split=f"{sel.split}: {sel.split_rule}",
                                 dataset=sel.source)
        click.echo(f"recorded {len(edit.card.evaluation)} result(s) in {file}'s model card (sldp card {file})"
                   + (f"; {edit.signature} no longer verifies: sign again" if edit.signature else ""), err=True)
    doc = {"file": file, "arch": arch.to_obj(), "classes": list(names), "data": sel.to_dict(),
           "delta_source": delta_source if ev.detection is not None else None, **ev.to_dict(),
           "per_image_csv": per_image, "seconds_total": round(time.perf_counter() - t0, 3)}
    if as_json:
        click.echo(json.dumps(doc, indent=2, allow_nan=False))
        return
    title = f"{file}: {arch.id} {dict(arch.options)}, classes {'/'.join(names)} ({origin})\n  data         " \
            f"{sel.describe()}" + (f"\n  decision     delta {delta:g}: {delta_source}" if ev.detection is not None
                                  else "")
    click.echo(format_evaluation(ev, title=title))
    if per_image:
        click.echo(f"  per-image    {per_image}")


def _eval_delta(given: float | None, decision: Any) -> tuple[float, str]:
    """Eq. (9)'s delta for ``sldp eval`` and where it came from: ``--delta``, else the file's decision
    rule (spec 5.10), else the paper's."""
    if given is not None:
        return float(given), "--delta"
    if decision is not None and decision.rule == "eq9" and decision.delta is not None:
        return float(decision.delta), f"the file's decision rule ({decision.describe()})"
    return DEFAULT_DELTA, "the paper's default (the file has no decision rule)"


# --- sldp train -------------------------------------------------------------------------------------------

@click.command("train")
@data_options
@click.option("--eval-split", default="test", show_default=True,
              help="Split to evaluate on after training ('none' to skip).")
@click.option("--arch", default="convnet@1", show_default=True, help="Architecture id from the zoo.")
@click.option("--arch-option", multiple=True, metavar="KEY=VALUE", help="Architecture option, e.g. width=64.")
@click.option("--batchnorm/--no-batchnorm", default=False, show_default=True)
@click.option("--per-class", type=COUNT, default=None, metavar="N",
              help="Train on a random subset of N patches (images) per class instead of all "
                   "(the paper's ResNet18(3000/6000/9000) baselines).")
@click.option("--steps", type=COUNT, default=500, show_default=True, help="Optimiser steps.")
@click.option("--batch-size", type=COUNT, default=64, show_default=True, help="Class-balanced batch size.")
@click.option("--lr", type=RATE, default=1e-3, show_default=True, help="Adam learning rate (cosine decay).")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed of theta0 (portable init), of the subset and of the batches.")
@click.option("--save", "save", type=click.Path(dir_okay=False), default=None,
              help="Write the trained model here (.safetensors, with what `sldp eval` needs).")
@runtime_options
@_eval_options
def train_cmd(eval_split: str, arch: str, arch_option: tuple[str, ...], batchnorm: bool, per_class: int | None,
              steps: int, batch_size: int, lr: float, seed: int, save: str | None, delta: float | None, windows: str,
              chunk: int, per_image: str | None, as_json: bool, quiet: bool, **kwargs: Any) -> None:
    """Train an architecture normally: the baselines next to a distilled file.

    Data with organ masks: patches (--patch-size, default 32; --stride, default half of it) labelled I/N/P,
    all of them or --per-class N at random, class-balanced batches; evaluated like `sldp eval`
    (patch level + Eq. 9 image level) on --eval-split. Data without masks (MedMNIST): whole images.
    What was read (images per split and class, patch counts) is printed before training starts.
    """
    from sldpack.pipelines.inputs import DataSpec, RuntimeSpec, describe_data, open_source

    spec = DataSpec.from_kwargs(kwargs)
    check_outputs([spec.data], {"--save": save, "--per-image": per_image})
    dev = apply_runtime(RuntimeSpec.from_kwargs(kwargs))
    if spec.source is not None and eval_split != "none":
        raise UsageError("--source data is evaluated by `sldp eval` on --data/--phantom; add --eval-split none")
    from sldpack.pipelines.evaluate import evaluate
    from sldpack.pipelines.models import save_trained_model, train_model

    t0 = time.perf_counter()
    esel: DataSelection | None = None
    if eval_split != "none":
        # checked before training, and named as the option the user typed (not --split)
        try:
            esel = spec.select(eval_split)
        except UsageError as exc:
            raise UsageError(f"--eval-split {eval_split!r}: {exc}".replace("--split", "--eval-split")) from None
    opened = open_source(spec, spec.split_or("train"), per_class=per_class, subset_seed=seed)
    source, what = opened.source, opened.what
    n_inputs = len(source) if isinstance(source, Sized) else None
    data_doc = opened.selection.to_dict() if opened.selection is not None else {"source": spec.source}
    if not (quiet or as_json):
        for line in describe_data(spec, opened):
            click.echo(line, err=True)
        of = opened.selection.describe() if opened.selection is not None else spec.source
        click.echo(f"training {arch} on {what} of {of}", err=True)
    ticker = ProgressPrinter("step", quiet or as_json)
    arch_options = parse_key_values(arch_option, option="--arch-option")
    model = train_model(source, arch=arch, arch_options=arch_options, batchnorm=batchnorm,
                        steps=steps, batch_size=batch_size, lr=lr, seed=seed, device=str(dev),
                        progress=lambda d, t, loss: ticker(d, t, loss))
    train_s = time.perf_counter() - t0
    model.metadata.update({"data": data_doc, "per_class": per_class, "train_inputs": n_inputs})
    saved = save_trained_model(save, model) if save else None
    from sldpack.pipelines.sharing import checkpoint_size

    # one definition of "full checkpoint" (sldp report, demo, RESULTS.md): the fp32 state_dict tensors
    full = checkpoint_size(model.arch)
    doc: dict[str, Any] = {"arch": model.arch.to_obj(), "classes": list(model.class_names), "data": data_doc,
                           "train_inputs": n_inputs, "per_class": per_class, "steps": steps,
                           "batch_size": batch_size, "lr": lr, "seed": seed, "train_seconds": round(train_s, 2),
                           "saved": save, "saved_bytes": saved, "checkpoint_bytes": full}
    ev = None
    if esel is not None:
        ticker = ProgressPrinter("eval", quiet or as_json)
        ev = evaluate(model.module, model.preprocessing, esel.data, class_names=model.class_names,
                      delta=DEFAULT_DELTA if delta is None else delta,
                      windows=windows, chunk=chunk, progress=lambda d, t: ticker(d, t))
        _write_per_image(per_image, ev)
        doc["eval"] = {"data": esel.to_dict(), **ev.to_dict(), "per_image_csv": per_image}
    if as_json:
        click.echo(json.dumps(doc, indent=2, allow_nan=False))
        return
    click.echo(f"trained {model.arch.id} {dict(model.arch.options)} on {what} in {train_s:.1f}s "
               f"({steps} steps x {batch_size})")
    if saved is not None:
        click.echo(f"wrote {save} ({saved:,} bytes on disk; the full checkpoint, as `sldp report` counts it: "
                   f"{full:,} bytes of fp32 tensors, the file's header not counted)")
    if ev is not None and esel is not None:
        click.echo(format_evaluation(ev, title=f"evaluation on {esel.describe()}"))
        if per_image:
            click.echo(f"  per-image    {per_image}")


# --- sldp demo --------------------------------------------------------------------------------------------

@click.command("demo")
@click.option("--out", "out", type=click.Path(file_okay=False), default="sldp-demo", show_default=True,
              help="Output folder (created).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of everything (phantom, split, theta0).")
@data_options
@click.option("--width", type=COUNT, default=None, help="ConvNet width [32].")
@click.option("--images-per-class", "-M", "images_per_class", type=COUNT, default=None,
              help="Distilled images per class [1].")
@click.option("--steps", type=COUNT, default=None, help="Inner steps per epoch [10].")
@click.option("--epochs", type=COUNT, default=None, help="Passes over the inner steps (T = steps x epochs) [3].")
@click.option("--iterations", type=COUNT, default=None, help="Outer iterations [300].")
@click.option("--mode", type=click.Choice(["sldd", "dd"]), default="sldd", show_default=True)
@click.option("--fast", is_flag=True, help="Tiny settings (seconds; for smoke tests, not for results).")
@runtime_options
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
@click.pass_context
def demo_cmd(ctx: click.Context, /, out: str, seed: int, width: int | None, images_per_class: int | None,
             steps: int | None, epochs: int | None, iterations: int | None, mode: Literal["sldd", "dd"],
             fast: bool, as_json: bool, quiet: bool, **kwargs: Any) -> None:
    """The whole job end to end, on built-in phantom data (default: 80 images, 128 px; --phantom N,
    --phantom-size) or on --data with organ masks.

    X-rays -> train/test split (--train-fraction, --split-seed [default: --seed]) -> I/N/P patches (default
    16 px, stride 8) -> soft-label distillation -> pack -> verify (digests + replay) -> replay -> evaluation
    on the held-out images (patch level and Eq. 9 image level) -> compression figure. Writes PNGs (images
    with organ outlines, sample patches, distilled images with their soft labels, compression bars), the
    .sldp file, the replayed checkpoint, per-image results and summary.json into OUT. Runs on 1 CPU thread
    (the replay fingerprint's reference) unless --threads says otherwise. Interrupted (Ctrl-C)? The
    distiller's checkpoint stays in OUT/run; the same command resumes it.
    """
    from dataclasses import replace

    from sldpack.pipelines.demo import DemoConfig, check_demo_folder, render_summary, run_demo
    from sldpack.pipelines.inputs import DataSpec, RuntimeSpec

    spec, rt = DataSpec.from_kwargs(kwargs), RuntimeSpec.from_kwargs(kwargs)
    threads = rt.threads if rt.threads is not None else 1
    dev = apply_runtime(replace(rt, threads=threads))
    if spec.source is not None:
        raise UsageError("sldp demo takes --data PATH (with organ masks) or --phantom N, not --source")
    if spec.split is not None:
        raise UsageError("sldp demo distils the train split and evaluates the test split: drop --split "
                         "(set the split rule with --train-fraction/--split-seed)")

    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None)

    cfg = DemoConfig.tiny(seed) if fast else DemoConfig(seed=seed)
    over: dict[str, Any] = {"n_images": spec.phantom, "patch_size": spec.patch_size, "stride": spec.stride,
                            "out_size": spec.out_size, "outside_max": spec.outside_max,
                            "inside_min": spec.inside_min, "width": width, "images_per_class": images_per_class,
                            "steps": steps, "epochs": epochs, "iterations": iterations}
    if given("phantom_size"):
        over["size"] = spec.phantom_size
    if given("train_fraction"):
        over["train_fraction"] = spec.train_fraction
    if given("split_seed"):
        over["split_seed"] = spec.split_seed
    if given("phantom_seed") and spec.phantom_seed != seed:
        raise UsageError("sldp demo seeds the phantom with --seed; drop --phantom-seed")
    cfg = replace(cfg, mode=mode, threads=threads, device=str(dev),
                  **{k: v for k, v in over.items() if v is not None})
    if spec.stride is None and spec.patch_size is not None:
        cfg = replace(cfg, stride=max(1, spec.patch_size // 2))
    data = spec.select("all") if spec.data is not None else None

    def say(msg: str) -> None:
        if not (quiet or as_json):
            click.echo(msg, err=True)

    check_outputs([spec.data], {"--out": out})
    ticker = ProgressPrinter("distill iter", quiet or as_json)
    try:
        # one demo per folder at a time: a second one exits 2 naming the holder (pid, host)
        with run_dir_lock(out, claim=check_demo_folder):
            res = run_demo(cfg, out, log=say, progress=ticker.from_distill, data=data)
    except KeyboardInterrupt:
        ck = Path(out) / "run" / "checkpoint.pt"
        if ck.is_file():
            click.echo(f"sldp demo: interrupted; the distiller's checkpoint is kept at {ck}: run the same "
                       "command again to resume", err=True)
        else:
            click.echo("sldp demo: interrupted before the first checkpoint; run the same command again",
                       err=True)
        sys.exit(EXIT_INTERRUPTED)
    if as_json:
        click.echo(json.dumps(res.summary, indent=2, allow_nan=False))
    else:
        click.echo(render_summary(res.summary))
