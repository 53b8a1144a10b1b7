"""``sldp distill``, ``sldp pack`` and ``sldp replay``.

Torch is imported only inside the commands, so ``sldp --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from sldpack.cli.common import ProgressPrinter, apply_runtime, parse_key_values
from sldpack.cli.exit_codes import EXIT_OK, EXIT_VERIFY_FAILED
from sldpack.cli.options import DATA_OPTION_NAMES, RUNTIME_OPTION_NAMES, data_options, runtime_options
from sldpack.errors import UsageError

__all__ = ["distill_cmd", "pack_cmd", "replay_cmd"]


# command-line option -> DistillConfig field (DistillConfig is owned by the distiller; its names stay)
_OPT_FIELDS = {
    "arch": "arch", "batchnorm": "batchnorm", "mode": "mode", "images_per_class": "images_per_class",
    "schedule": "schedule", "steps": "steps", "epochs": "epochs", "iterations": "iterations",
    "batch_real": "batch_real", "lr": "lr", "label_lr": "lr_labels", "lrs_lr": "lr_lrs", "inner_lr": "inner_lr",
    "label_init": "label_init", "image_init": "image_init", "balanced": "balanced", "seed": "seed",
    "checkpoint_every": "checkpoint_every", "device": "device", "compression": "compression",
    "bn_batches": "bn_batches", "select": "select", "select_every": "select_every",
}


@click.command("distill")
@data_options
@click.option("--class-names", metavar="A,B,...", help="Class names in label order (default: from the data).")
@click.option("--arch", default="convnet@1", show_default=True, help="Architecture id from the zoo.")
@click.option("--arch-option", multiple=True, metavar="KEY=VALUE", help="Architecture option, e.g. width=64.")
@click.option("--batchnorm/--no-batchnorm", default=False, show_default=True, help="Batch-norm variant.")
@click.option("--mode", type=click.Choice(["sldd", "dd"]), default="sldd", show_default=True,
              help="sldd: learn soft labels; dd: fixed one-hot labels.")
@click.option("--images-per-class", "-M", "images_per_class", type=int, default=1, show_default=True,
              help="Distilled images per class (per step with --schedule per-step).")
@click.option("--schedule", type=click.Choice(["all", "per-step"]), default="all", show_default=True,
              help="all: every step sees all images; per-step: each step its own images.")
@click.option("--steps", type=int, default=10, show_default=True, help="Inner steps per epoch.")
@click.option("--epochs", type=int, default=1, show_default=True, help="Passes over the steps (T = steps x epochs).")
@click.option("--iterations", type=int, default=300, show_default=True, help="Outer iterations (Adam steps).")
@click.option("--batch-real", "-K", "batch_real", type=int, default=32, show_default=True,
              help="Real images per outer iteration.")
@click.option("--lr", type=float, default=0.01, show_default=True, help="Adam learning rate of the images.")
@click.option("--label-lr", type=float, default=None, help="Adam learning rate of the labels [default: --lr].")
@click.option("--lrs-lr", type=float, default=None, help="Adam learning rate of the step sizes [default: --lr/10].")
@click.option("--inner-lr", type=float, default=0.1, show_default=True, help="Initial per-step learning rate.")
@click.option("--label-init", type=float, default=2.0, show_default=True,
              help="Initial label logit of the true class (sldd).")
@click.option("--image-init", type=click.Choice(["real", "noise"]), default="real", show_default=True,
              help="Start from real images or from noise.")
@click.option("--balanced/--no-balanced", default=True, show_default=True, help="Class-balanced real batches.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of theta0 and of the run.")
@runtime_options
@click.option("--bn-batches", type=int, default=16, show_default=True,
              help="Real batches forwarded to measure theta_bn (batch-norm archs).")
@click.option("--select", type=click.Choice(["best", "last", "val-hm", "val-acc"]), default="best",
              show_default=True,
              help="Which iterate is written: best (lowest moving-average training loss), last, or the best on "
                   "held-out training images by image-level HM (val-hm) or patch accuracy (val-acc).")
@click.option("--select-every", type=click.IntRange(min=1), default=25, show_default=True,
              help="val-*: iterations between scored candidates.")
@click.option("--val-fraction", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), default=0.2,
              show_default=True, help="val-*: share of the training images held out (stratified, by image = "
                                      "patient); a MedMNIST file's own val split is used instead.")
@click.option("--out", "out", type=click.Path(file_okay=False), required=True, help="Run directory.")
@click.option("--checkpoint-every", type=int, default=50, show_default=True,
              help="Iterations between crash-safe checkpoints.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--compression", type=click.Choice(["none", "zstd"]), default="none", show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@click.pass_context
def distill_cmd(ctx: click.Context, /, class_names: str | None, arch_option: tuple[str, ...], out: str,
                resume: bool, quiet: bool, val_fraction: float, **kwargs: Any) -> None:
    """Learn a distilled set from real data and write OUT/distilled.sldp.

    Data: --data PATH (or --phantom N, or --source NAME[:ARG]). Data with organ masks (an .npz with
    images/masks/labels such as montgomery_512.npz, a folder with masks/, the phantom) is cut into I/N/P
    patches (--patch-size, --stride, --out-size); data without masks (MedMNIST) is distilled as whole images.
    What was read (images per split and class, patch counts) is printed before the run starts.

    OUT also receives run.json, log.jsonl (one JSON object per line), checkpoint.pt (every
    --checkpoint-every iterations, written atomically), final/ (manifest.json + tensors.npz, the
    `sldp pack` input) and montage.png. A killed run continues with the same command plus --resume.
    """
    from sldpack.nn.distill import DistillConfig, distill
    from sldpack.pipelines.inputs import DataSpec, RuntimeSpec, describe_data, open_source

    spec, rt = DataSpec.from_kwargs(kwargs), RuntimeSpec.from_kwargs(kwargs)
    opts = {k: v for k, v in kwargs.items() if k in _OPT_FIELDS}
    assert set(kwargs) == set(opts) | set(DATA_OPTION_NAMES) | set(RUNTIME_OPTION_NAMES), sorted(kwargs)
    apply_runtime(rt)
    names = tuple(n.strip() for n in class_names.split(",")) if class_names else ()
    scorer = None
    if str(opts["select"]).startswith("val"):
        from sldpack.pipelines.selection import make_val_scorer, open_train_val

        tv = open_train_val(spec, val_fraction=val_fraction, seed=spec.split_seed, class_names=names)
        opened = tv.opened
        scorer = make_val_scorer(tv.val, opened.source, str(opts["select"]), settings=opened.settings,
                                 description=tv.rule)
        if not quiet:
            click.echo(f"selection: {scorer.description}", err=True)  # type: ignore[attr-defined]
    else:
        opened = open_source(spec, spec.split_or("train"), class_names=names, medmnist_as_stored=True)
    source = opened.source
    if not quiet:
        for line in describe_data(spec, opened):
            click.echo(line, err=True)
    run_dir = Path(out)
    fields: dict[str, Any] = {_OPT_FIELDS[k]: v for k, v in opts.items()}
    fields["arch_options"] = parse_key_values(arch_option, option="--arch-option")
    if resume:
        run_json = run_dir / "run.json"
        if not run_json.is_file():
            raise UsageError(f"--resume: {run_json} not found")
        info = json.loads(run_json.read_text())
        recorded = DistillConfig.from_obj(info["config"])
        src_fp = info.get("source", {}).get("fingerprint")
        if src_fp and source.fingerprint and src_fp != source.fingerprint:
            raise UsageError("--resume with different data: the source fingerprint differs from run.json")
        # options typed on this command line override the recorded ones; distill() rejects the changes
        # that would alter the trajectory so far
        explicit = {
            _OPT_FIELDS[k]: v for k, v in opts.items()
            if ctx.get_parameter_source(k) not in (click.core.ParameterSource.DEFAULT, None)
        }
        if arch_option:
            explicit["arch_options"] = fields["arch_options"]
        cfg = DistillConfig.from_obj({**recorded.to_obj(), **explicit})
    else:
        cfg = DistillConfig(**fields)
    if not quiet:
        m = cfg.images_per_class * source.num_classes * (cfg.steps if cfg.schedule == "per-step" else 1)
        click.echo(f"distilling {m} images ({cfg.mode}, {cfg.arch}, T={cfg.steps * cfg.epochs}) from "
                   f"{source.num_classes} classes {list(source.class_names)}; run dir {run_dir}", err=True)
    res = distill(source, cfg, run_dir=run_dir, resume=resume, progress=ProgressPrinter("iter", quiet).from_distill,
                  scorer=scorer)
    fp = res.manifest.replay
    if not quiet:
        click.echo(f"final loss {res.losses[-1]:.4f}" if res.losses else "no iteration left to run", err=True)
    click.echo(f"wrote {res.sldp_path}")
    if fp is not None:
        click.echo(f"theta_opt sha256 {fp.theta_opt_sha256}")
    click.echo(f"montage {run_dir / 'montage.png'}")


@click.command("pack")
@click.argument("source", type=click.Path(exists=True))
@click.option("--out", "-o", "out", type=click.Path(dir_okay=False), required=True, help="The .sldp to write.")
@click.option("--tensors", "tensors_path", type=click.Path(exists=True, dir_okay=False),
              help="Tensor file when SOURCE is a manifest.json (.npz or .safetensors).")
@click.option("--compression", type=click.Choice(["none", "zstd"]), default="none", show_default=True)
@click.option("--fingerprint", "fingerprint", type=click.Choice(["auto", "always", "never"]), default="auto",
              show_default=True, help="Replay to compute the fingerprint: when missing, always, or never.")
def pack_cmd(source: str, out: str, tensors_path: str | None, compression: str, fingerprint: str) -> None:
    """Build a .sldp from a run directory, or from manifest.json + tensors.(npz|safetensors).

    SOURCE is a `sldp distill` run directory (its final/ folder is packed), a folder holding
    manifest.json and tensors.npz or tensors.safetensors, or a manifest.json (tensors next to it or
    given with --tensors). manifest.json is the manifest as JSON (spec/SLDP-1-replay.md, "Packing"),
    without "tensors"/"payload", plus an optional "roles" map; tensors are named images, labels, lrs
    and bn.<buffer>. Missing theta0 digests and replay fingerprint are computed by replaying.
    """
    from sldpack.nn.distill import pack

    res = pack(source, out, tensors=tensors_path, compression=compression, fingerprint=fingerprint)
    click.echo(f"wrote {out} ({res.file_size} bytes, {len(res.manifest.tensors)} tensors)")
    for note in res.notes:
        click.echo(f"note: {note}", err=True)
    fp = res.manifest.replay
    click.echo("replay fingerprint: " + ("none" if fp is None else f"theta_opt sha256 {fp.theta_opt_sha256}"))


@click.command("replay")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "-o", "out", type=click.Path(dir_okay=False), required=True,
              help="Checkpoint to write (.safetensors): theta_opt + theta_bn as a state_dict.")
# cpu by default (not the data commands' auto): the replay fingerprint's reference configuration is the CPU
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True,
              help="Where torch replays (a GPU lands 'within tolerance' at best).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch CPU threads, >= 1 [default: the fingerprint's reference count].")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Compare the result with the file's replay fingerprint (exit 1 when it fails).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def replay_cmd(file: str, out: str, device: str, threads: int | None, check: bool, as_json: bool) -> None:
    """Re-derive the trained network from FILE and write it as a .safetensors checkpoint.

    The checkpoint loads with safetensors.torch.load_file + module.load_state_dict into the
    architecture the manifest names (sldpack.nn.zoo.build_from_spec). Without --threads the replay
    runs under the fingerprint's reference thread count (the digest can depend on it).
    """
    import sldpack
    from sldpack.nn.replay import replay, replay_and_verify, resolve_device, save_safetensors

    dev = resolve_device(device)
    with sldpack.open(file) as f:
        manifest = f.manifest
        if check:
            res, rep = replay_and_verify(f, device=dev, threads=threads)
            status: str = rep.status
            digest, maxdev = rep.actual_sha256, rep.max_abs_deviation
        else:
            ref = manifest.replay.reference.get("threads") if manifest.replay is not None else None
            use = threads if threads is not None else (ref if isinstance(ref, int) and ref > 0 else None)
            res = replay(f, device=dev, threads=use if dev.type == "cpu" else None)
            status, digest, maxdev = "unchecked", "", None
    meta = {"sldp_source": Path(file).name, "arch": manifest.arch.id, "format": "pt"}
    nbytes = save_safetensors(out, res.module.state_dict(), metadata=meta)
    result = {"file": file, "out": out, "bytes": nbytes, "arch": manifest.arch.id, "device": str(dev),
              "seconds": round(res.seconds, 3), "theta0": res.theta0_status, "fingerprint": status,
              "theta_opt_sha256": digest or None, "max_abs_deviation": maxdev}
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(f"replayed {manifest.arch.id} in {res.seconds:.2f}s on {dev}; theta0 {res.theta0_status}")
        if check:
            dev_txt = "" if maxdev is None else f" (max |probe logit deviation| {maxdev:.3g})"
            click.echo(f"fingerprint: {status}{dev_txt}")
        click.echo(f"wrote {out} ({nbytes} bytes)")
    failed = check and status not in ("exact", "within_tolerance", "no_fingerprint")
    sys.exit(EXIT_VERIFY_FAILED if failed else EXIT_OK)
