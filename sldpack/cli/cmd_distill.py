"""``sldp distill``, ``sldp pack`` and ``sldp replay``.

Torch is imported only inside the commands, so ``sldp --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from sldpack.cli.exit_codes import EXIT_OK, EXIT_VERIFY_FAILED
from sldpack.errors import UsageError

__all__ = ["distill_cmd", "pack_cmd", "replay_cmd"]


def _fmt_time(sec: float) -> str:
    sec = max(0, int(sec + 0.5))
    h, rem = divmod(sec, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"


class _ProgressPrinter:
    """One status line: rewritten in place on a terminal; on a pipe, a line every ~10 % or 60 s."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.last_print = 0.0
        self.last_decile = -1

    def __call__(self, p: Any) -> None:
        if self.quiet:
            return
        rate = (p.iteration / p.elapsed) if p.elapsed > 0 else 0.0
        line = (f"iter {p.iteration}/{p.total}  loss {p.loss:.4f}  {rate:.2f} it/s  "
                f"elapsed {_fmt_time(p.elapsed)}  ETA {_fmt_time(p.eta)}")
        if self.tty:
            click.echo("\r" + line + "   ", nl=p.iteration == p.total, err=True)
            return
        decile = (10 * p.iteration) // max(p.total, 1)
        now = time.monotonic()
        if decile != self.last_decile or now - self.last_print >= 60 or p.iteration == p.total:
            self.last_decile = decile
            self.last_print = now
            click.echo(line, err=True)


def _parse_options(items: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--arch-option wants KEY=VALUE, got {item!r}")
        try:
            out[key] = int(val)
        except ValueError:
            out[key] = val
    return out


def _load_source(data: str | None, split: str, source_spec: str | None, class_names: str | None) -> Any:
    from sldpack.pipelines.sources import load_npz, resolve_source

    if (data is None) == (source_spec is None):
        raise UsageError("give exactly one data source: --data FILE.npz or --source NAME[:ARG]")
    names = tuple(n.strip() for n in class_names.split(",")) if class_names else ()
    if data is not None:
        return load_npz(data, split, class_names=names)
    assert source_spec is not None
    src = resolve_source(source_spec, split)
    if names and tuple(src.class_names) != names:
        raise UsageError(f"--class-names {names} differ from the source's {tuple(src.class_names)}")
    return src


# command-line option -> DistillConfig field
_OPT_FIELDS = {
    "arch": "arch", "batchnorm": "batchnorm", "mode": "mode", "images_per_class": "images_per_class",
    "schedule": "schedule", "steps": "steps", "epochs": "epochs", "iterations": "iterations",
    "batch_real": "batch_real", "lr": "lr", "label_lr": "lr_labels", "lrs_lr": "lr_lrs", "inner_lr": "inner_lr",
    "label_init": "label_init", "image_init": "image_init", "balanced": "balanced", "seed": "seed",
    "checkpoint_every": "checkpoint_every", "device": "device", "compression": "compression",
    "bn_batches": "bn_batches", "select": "select", "unroll": "unroll", "unroll_checkpoint": "unroll_checkpoint",
    "shard_images": "shard_images",
}


@click.command("distill")
@click.option("--data", type=click.Path(exists=True, dir_okay=False), help="MedMNIST-style .npz "
              "({split}_images, {split}_labels).")
@click.option("--split", default="train", show_default=True, help="Split of --data to distill.")
@click.option("--source", "source_spec", metavar="NAME[:ARG]",
              help="A plug-in data source instead of --data: a registered name or package.module:function[:ARG].")
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
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--threads", type=int, default=None, help="torch CPU threads [default: torch's].")
@click.option("--bn-batches", type=int, default=16, show_default=True,
              help="Real batches forwarded to measure theta_bn (batch-norm archs).")
@click.option("--select", type=click.Choice(["best", "last"]), default="best", show_default=True,
              help="Write the iterate with the lowest moving-average training loss, or the last one.")
@click.option("--out", "out", type=click.Path(file_okay=False), required=True, help="Run directory.")
@click.option("--checkpoint-every", type=int, default=50, show_default=True,
              help="Iterations between crash-safe checkpoints.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--compression", type=click.Choice(["none", "zstd"]), default="none", show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@click.option("--unroll", type=click.Choice(["graph", "recompute"]), default="graph", show_default=True,
              help="graph: keep the whole unrolled graph (fastest); recompute: keep theta per step and rebuild "
              "one step's graph at a time (far less memory at large images). Same file either way.")
@click.option("--unroll-checkpoint", type=int, default=1, show_default=True, metavar="K",
              help="With --unroll recompute: keep only every K-th theta (memory T/K + K thetas).")
@click.option("--nproc", type=int, default=1, show_default=True,
              help="Data-parallel processes on this machine (gloo on CPU, NCCL on CUDA); for several machines "
              "use torchrun (README, 'Distributed distillation').")
@click.option("--shard-images", is_flag=True, help="With --nproc/torchrun and --unroll recompute: split each "
              "inner step's images across the processes too (architectures without batch norm).")
@click.option("--worker-spec", hidden=True, type=click.Path(dir_okay=False), help="Internal: --nproc worker.")
@click.pass_context
def distill_cmd(ctx: click.Context, /, data: str | None, split: str, source_spec: str | None,
                class_names: str | None, arch_option: tuple[str, ...], threads: int | None, out: str,
                resume: bool, quiet: bool, nproc: int, worker_spec: str | None, **opts: Any) -> None:
    """Learn a distilled set from real data and write OUT/distilled.sldp.

    OUT also receives run.json, log.jsonl (one JSON object per line), checkpoint.pt (every
    --checkpoint-every iterations, written atomically), final/ (manifest.json + tensors.npz, the
    `sldp pack` input) and montage.png. A killed run continues with the same command plus --resume.
    """
    import os

    import torch

    from sldpack.nn.distill import DistillConfig, distill

    if worker_spec is not None:  # one of the --nproc processes: the parent resolved everything
        spec = json.loads(Path(worker_spec).read_text())
        cfg = DistillConfig.from_obj(spec["config"])
        data, split, source_spec, class_names = spec["data"], spec["split"], spec["source"], spec["class_names"]
        threads, resume, nproc = spec["threads"], spec["resume"], 1
    if threads is not None:
        if threads < 1:
            raise UsageError("--threads must be >= 1")
        torch.set_num_threads(threads)
    source = _load_source(data, split, source_spec, class_names)
    run_dir = Path(out)
    fields: dict[str, Any] = {_OPT_FIELDS[k]: v for k, v in opts.items()}
    fields["arch_options"] = _parse_options(arch_option)
    if worker_spec is not None:
        pass
    elif resume:
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
    if nproc < 1:
        raise UsageError(f"--nproc must be >= 1, got {nproc}")
    if nproc > 1:
        # the data were loaded above only to report bad input once, here; each worker loads its own copy
        del source
        _launch_workers(nproc, cfg, data, split, source_spec, class_names, threads, out, resume, quiet)
        return
    # under torchrun / --nproc only rank 0 talks
    quiet = quiet or os.environ.get("RANK", "0") != "0"
    if not quiet:
        m = cfg.images_per_class * source.num_classes * (cfg.steps if cfg.schedule == "per-step" else 1)
        click.echo(f"distilling {m} images ({cfg.mode}, {cfg.arch}, T={cfg.steps * cfg.epochs}) from "
                   f"{source.num_classes} classes {list(source.class_names)}; run dir {run_dir}", err=True)
    res = distill(source, cfg, run_dir=run_dir, resume=resume, progress=_ProgressPrinter(quiet),
                  on_phase=None if quiet else _print_phase)
    if os.environ.get("RANK", "0") != "0":
        return
    fp = res.manifest.replay
    if not quiet:
        click.echo(f"final loss {res.losses[-1]:.4f}" if res.losses else "no iteration left to run", err=True)
    click.echo(f"wrote {res.sldp_path}")
    if fp is not None:
        click.echo(f"theta_opt sha256 {fp.theta_opt_sha256}")
    click.echo(f"montage {run_dir / 'montage.png'}")


def _print_phase(p: Any) -> None:
    """A final phase (theta_opt, theta_bn, fingerprint, write): announced, then its time."""
    if p.seconds is None:
        click.echo(f"{p.name}: {p.detail} ...", err=True)
    else:
        click.echo(f"{p.name}: done in {p.seconds:.1f}s", err=True)


def _launch_workers(nproc: int, cfg: Any, data: str | None, split: str, source_spec: str | None,
                    class_names: str | None, threads: int | None, out: str, resume: bool, quiet: bool) -> None:
    """``--nproc N``: start N copies of this command joined on 127.0.0.1, each with the resolved settings."""
    import os
    import tempfile

    from sldpack.nn.distributed import launch, worker_argv

    if os.environ.get("WORLD_SIZE", "1") not in ("", "1"):
        raise UsageError("--nproc inside a torchrun/distributed launch: use one or the other")
    spec = {"config": cfg.to_obj(), "data": str(Path(data).resolve()) if data else None, "split": split,
            "source": source_spec, "class_names": class_names, "threads": threads, "resume": resume}
    with tempfile.TemporaryDirectory(prefix="sldp-nproc-") as tmp:
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        argv = worker_argv("sldpack.cli.main", "distill", "--out", out, "--worker-spec", str(spec_path),
                           *(["--quiet"] if quiet else []))
        code = launch(nproc, argv)
    if code:
        sys.exit(code)


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
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--threads", type=int, default=None,
              help="torch CPU threads [default: the fingerprint's reference count].")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Compare the result with the file's replay fingerprint (exit 1 when it fails).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def replay_cmd(file: str, out: str, device: str, threads: int | None, check: bool, as_json: bool) -> None:
    """Re-derive the trained network from FILE and write it as a .safetensors checkpoint.

    The checkpoint loads with safetensors.torch.load_file + module.load_state_dict into the
    architecture the manifest names (sldpack.nn.zoo.build_from_spec).
    """
    import sldpack
    from sldpack.nn.replay import check_fingerprint, replay, resolve_device, save_safetensors, thread_count

    with sldpack.open(file) as f:
        manifest = f.manifest
        fp = manifest.replay
        ref = fp.reference.get("threads") if fp is not None else None
        use_threads = threads if threads is not None else (int(ref) if isinstance(ref, int) and ref > 0 else None)
        dev = resolve_device(device)
        res = replay(f, device=dev, threads=use_threads if dev.type == "cpu" else None)
    module = res.module
    with thread_count(use_threads if dev.type == "cpu" else None):
        status, digest, maxdev = ("unchecked", "", None)
        if check and fp is not None:
            status, digest, maxdev = check_fingerprint(module, fp, threads=use_threads or 1)
        elif check:
            status = "no_fingerprint"
    meta = {"sldp_source": Path(file).name, "arch": manifest.arch.id, "format": "pt"}
    nbytes = save_safetensors(out, module.state_dict(), metadata=meta)
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
