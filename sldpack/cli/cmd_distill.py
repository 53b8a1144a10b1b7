"""``sldp distill``, ``sldp pack`` and ``sldp replay``.

Torch is imported only inside the commands, so ``sldp --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from sldpack.cli.common import (
    ProgressPrinter,
    apply_runtime,
    check_outputs,
    folder_entries,
    parse_key_values,
    run_dir_lock,
)
from sldpack.cli.exit_codes import EXIT_INTERRUPTED, EXIT_OK, EXIT_VERIFY_FAILED
from sldpack.cli.options import (
    COUNT,
    DATA_OPTION_NAMES,
    RUNTIME_OPTION_NAMES,
    data_options,
    number,
    runtime_options,
    spec_option,
)
from sldpack.errors import DataError, UsageError
from sldpack.nn.config import DistillConfig
from sldpack.pipelines.inputs import MAX_THREADS
from sldpack.pipelines.selection import DEFAULT_VAL_FRACTION

__all__ = ["distill_cmd", "pack_cmd", "replay_cmd"]

_F = TypeVar("_F", bound=Callable[..., Any])


# The distiller's settings are defined once (sldpack.nn.config, torch-free): every option below that sets one
# is generated from the field (name, type, default, help, range: cli/options.py spec_option).
_CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(DistillConfig))


def _setting(name: str) -> Callable[[_F], _F]:
    return spec_option(DistillConfig, name)


@click.command("distill")
@data_options
@click.option("--class-names", metavar="A,B,...", help="Class names in label order (default: from the data).")
@_setting("arch")
@click.option("--arch-option", multiple=True, metavar="KEY=VALUE", help="Architecture option, e.g. width=64.")
@_setting("batchnorm")
@_setting("mode")
@_setting("images_per_class")
@_setting("schedule")
@_setting("steps")
@_setting("epochs")
@_setting("iterations")
@_setting("batch_real")
@_setting("lr")
@_setting("lr_labels")
@_setting("lr_lrs")
@_setting("inner_lr")
@_setting("label_init")
@_setting("image_init")
@_setting("train_images")
@_setting("balanced")
@_setting("seed")
@runtime_options
@_setting("bn_batches")
@_setting("bn_class_mix")
@_setting("select")
@_setting("select_every")
@click.option("--val-fraction", type=number(0.0, 1.0, min_open=True, max_open=True),
              default=DEFAULT_VAL_FRACTION,
              show_default=True, help="val-*: share of the training images held out (stratified, by image = "
                                      "patient); a MedMNIST file's own val split is used instead.")
@click.option("--out", "out", type=click.Path(file_okay=False), required=True, help="Run directory.")
@_setting("checkpoint_every")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@_setting("compression")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@_setting("unroll")
@_setting("unroll_checkpoint")
@click.option("--nproc", type=COUNT, default=1, show_default=True,
              help="Data-parallel processes on this machine (gloo on CPU, NCCL on CUDA); for several machines "
              "use torchrun (README, 'Distributed distillation').")
@_setting("shard_images")
@click.option("--worker-spec", hidden=True, type=click.Path(dir_okay=False), help="Internal: --nproc worker.")
@click.pass_context
def distill_cmd(ctx: click.Context, /, class_names: str | None, arch_option: tuple[str, ...], out: str,
                resume: bool, quiet: bool, nproc: int, worker_spec: str | None, val_fraction: float,
                **kwargs: Any) -> None:
    """Learn a distilled set from real data and write OUT/distilled.sldp.

    Data: --data PATH (or --phantom N, or --source NAME[:ARG]). Data with organ masks (an .npz with
    images/masks/labels such as montgomery_512.npz, a folder with masks/, the phantom) is cut into I/N/P
    patches (--patch-size, --stride, --out-size); data without masks (MedMNIST) is distilled as whole images.
    What was read (images per split and class, patch counts) is printed before the run starts.

    OUT also receives run.json, log.jsonl (one JSON object per line), checkpoint.pt (every
    --checkpoint-every iterations, written atomically), final/ (manifest.json + tensors.npz, the
    `sldp pack` input) and montage.png. A killed run continues with the same command plus --resume.
    """
    import contextlib
    import dataclasses
    import os

    from sldpack.pipelines.inputs import DataSpec, RuntimeSpec, describe_data

    spec, rt = DataSpec.from_kwargs(kwargs), RuntimeSpec.from_kwargs(kwargs)
    opts = {k: v for k, v in kwargs.items() if k in _CONFIG_FIELDS}
    assert set(kwargs) == set(opts) | set(DATA_OPTION_NAMES) | set(RUNTIME_OPTION_NAMES), sorted(kwargs)
    cfg: Any = None
    if worker_spec is not None:  # one of the --nproc processes: the parent resolved everything
        wspec = json.loads(Path(worker_spec).read_text())
        cfg = DistillConfig.from_obj(wspec["config"])
        spec, rt = DataSpec(**wspec["data"]), RuntimeSpec(**wspec["runtime"])
        class_names, resume, nproc = wspec["class_names"], wspec["resume"], 1
    apply_runtime(rt)
    # under torchrun / --nproc only rank 0 talks
    quiet = quiet or os.environ.get("RANK", "0") != "0"
    names = tuple(n.strip() for n in class_names.split(",")) if class_names else ()
    from sldpack.pipelines.selection import open_for_selection

    # held-out scoring runs in one process: the --nproc workers and torchrun ranks would each need the same
    # held-out part and the same decision at every candidate (auto falls back to best there)
    processes = max(nproc, int(os.environ.get("WORLD_SIZE", "1") or "1"))
    chosen = open_for_selection(spec, str(cfg.select if cfg is not None else opts["select"]),
                                val_fraction=val_fraction, class_names=names, processes=processes)
    opened, scorer = chosen.opened, chosen.scorer
    source = opened.source
    if not quiet and worker_spec is None:
        click.echo(chosen.note, err=True)
        for line in describe_data(spec, opened):
            click.echo(line, err=True)
    run_dir = Path(out)
    check_outputs([spec.data], {"--out": out})
    fields: dict[str, Any] = dict(opts)
    fields["arch_options"] = parse_key_values(arch_option, option="--arch-option")
    # one process (group) per run directory: a second one exits 2 naming the holder; the kernel releases
    # the lock when the holder dies, however it dies. The --nproc parent (or torchrun's rank 0) holds it
    # for its workers.
    owner = worker_spec is None and os.environ.get("RANK", "0") == "0"
    lock = run_dir_lock(run_dir, claim=None if resume else _claim_run_dir) if owner \
        else contextlib.nullcontext(run_dir)
    with lock:
        if owner and not resume:
            # what a run that stopped before its first checkpoint left (_claim_run_dir): a fresh log
            (run_dir / "log.jsonl").unlink(missing_ok=True)
        try:
            if cfg is None:
                cfg = _resolve_config(ctx, source, fields, opts, arch_option, run_dir, resume)
            if nproc > 1:
                from sldpack.nn.distill import check_run

                # every check, here in the parent: bad input is refused once, before any worker starts (a
                # worker refusing while another waits in a collective was a race)
                check_run(source, cfg, run_dir=run_dir, resume=resume, processes=nproc, scorer=scorer)
                # the data were loaded above only to report bad input once, here; each worker loads its own
                del source
                _launch_workers(nproc, cfg, dataclasses.asdict(spec), dataclasses.asdict(rt), class_names, out,
                                resume, quiet)
                return
            res = _run(cfg, source, run_dir, resume, quiet, scorer)
        except KeyboardInterrupt:
            if not owner:
                raise
            ck = run_dir / "checkpoint.pt"
            if ck.is_file():
                click.echo(f"sldp distill: interrupted; the last checkpoint is kept in {ck}. Resume with:\n"
                           f"  {_resume_command(ctx, out)}", err=True)
            else:
                click.echo("sldp distill: interrupted before the first checkpoint; start again (without "
                           "--resume)", err=True)
            sys.exit(EXIT_INTERRUPTED)
    if os.environ.get("RANK", "0") != "0":
        return
    fp = res.manifest.replay
    if not quiet:
        click.echo(f"final loss {res.losses[-1]:.4f}" if res.losses else "no iteration left to run", err=True)
    click.echo(f"wrote {res.sldp_path}")
    if fp is not None:
        click.echo(f"theta_opt sha256 {fp.theta_opt_sha256}")
    click.echo(f"montage {run_dir / 'montage.png'}")


_RUN_FILES = ("run.json", "log.jsonl", "checkpoint.pt", "distilled.sldp", "final", "montage.png")
"""What ``sldp distill`` writes into its run directory."""


def _claim_run_dir(root: Path) -> None:
    """A fresh run (no --resume) writes only into an empty folder, or over what a run of its own left
    before its first checkpoint (run.json and log.jsonl only): never over a finished run or anyone's files.
    """
    names = folder_entries(root)
    if not names or set(names) <= {"run.json", "log.jsonl"}:
        return
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    if "checkpoint.pt" in names:
        raise UsageError(f"--out {root} already holds a run (checkpoint.pt): add --resume to continue it, or "
                         "choose another --out")
    if set(names) & set(_RUN_FILES):
        raise UsageError(f"--out {root} holds an earlier run ({shown}): sldp distill writes only into an empty "
                         "or new folder; choose another --out (or remove that run yourself)")
    raise UsageError(f"--out {root} is not empty (it holds {shown}): sldp distill writes only into an empty "
                     "or new folder (or continues its own run with --resume); choose another --out")


def _resume_command(ctx: click.Context, out: str) -> str:
    """The command line that resumes this run: the data options given, --out and --resume (the rest of
    the settings come from run.json)."""
    import shlex

    words = ["sldp", "distill"]
    for name in (*DATA_OPTION_NAMES, "class_names"):
        if ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None):
            words += ["--" + name.replace("_", "-"), str(ctx.params[name])]
    words += ["--out", out, "--resume"]
    return " ".join(shlex.quote(w) for w in words)


def _resolve_config(ctx: click.Context, source: Any, fields: dict[str, Any], opts: dict[str, Any],
                    arch_option: tuple[str, ...], run_dir: Path, resume: bool) -> Any:
    """The run's DistillConfig: the options typed, or (--resume) run.json's with the typed ones on top."""
    if not resume:
        return DistillConfig(**fields)
    run_json = run_dir / "run.json"
    if not run_json.is_file():
        raise UsageError(f"--resume: {run_json} not found")
    try:
        info = json.loads(run_json.read_text(encoding="utf-8"))
        if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
            raise ValueError("no 'config' object")
        recorded = DistillConfig.from_obj(info["config"])
    except (ValueError, TypeError, KeyError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise DataError(f"--resume: {run_json} is not the run.json of a sldp distill run ({exc}); the run cannot "
                        "be continued: start a new one in another --out") from exc
    source_info = info.get("source")
    src_fp = source_info.get("fingerprint") if isinstance(source_info, dict) else None
    if src_fp and source.fingerprint and src_fp != source.fingerprint:
        raise UsageError("--resume with different data: the source fingerprint differs from run.json")
    # options typed on this command line override the recorded ones; distill() rejects the changes
    # that would alter the trajectory so far
    explicit = {
        k: v for k, v in opts.items()
        if ctx.get_parameter_source(k) not in (click.core.ParameterSource.DEFAULT, None)
    }
    if arch_option:
        explicit["arch_options"] = fields["arch_options"]
    return DistillConfig.from_obj({**recorded.to_obj(), **explicit})


def _run(cfg: Any, source: Any, run_dir: Path, resume: bool, quiet: bool, scorer: Any = None) -> Any:
    from sldpack.nn.distill import distill

    if not quiet:
        m = cfg.images_per_class * source.num_classes * (cfg.steps if cfg.schedule == "per-step" else 1)
        click.echo(f"distilling {m} images ({cfg.mode}, {cfg.arch}, T={cfg.steps * cfg.epochs}) from "
                   f"{source.num_classes} classes {list(source.class_names)}; run dir {run_dir}", err=True)
    return distill(source, cfg, run_dir=run_dir, resume=resume, progress=ProgressPrinter("iter", quiet).from_distill,
                   on_phase=None if quiet else _print_phase, scorer=scorer)


def _pack_inputs(source: str, tensors: str | None) -> list[Path]:
    """Every file `sldp pack SOURCE` may read (a run directory, its final/, a manifest.json's folder)."""
    src = Path(source)
    folders = [src, src / "final"] if src.is_dir() else [src.parent]
    names = ("manifest.json", "tensors.npz", "tensors.safetensors")
    found = [d / n for d in folders for n in names if (d / n).exists()]
    return [*found, *([] if src.is_dir() else [src]), *([Path(tensors)] if tensors else [])]


def _print_phase(p: Any) -> None:
    """A final phase (theta_opt, theta_bn, fingerprint, write): announced, then its time."""
    if p.seconds is None:
        click.echo(f"{p.name}: {p.detail} ...", err=True)
    else:
        click.echo(f"{p.name}: done in {p.seconds:.1f}s", err=True)


def _launch_workers(nproc: int, cfg: Any, data: dict[str, Any], runtime: dict[str, Any], class_names: str | None,
                    out: str, resume: bool, quiet: bool) -> None:
    """``--nproc N``: start N copies of this command joined on 127.0.0.1, each with the resolved settings."""
    import os
    import tempfile

    from sldpack.nn.distributed import launch, worker_argv

    if os.environ.get("WORLD_SIZE", "1") not in ("", "1"):
        raise UsageError("--nproc inside a torchrun/distributed launch: use one or the other")
    if data.get("data"):
        data = {**data, "data": str(Path(data["data"]).resolve())}
    spec = {"config": cfg.to_obj(), "data": data, "runtime": runtime, "class_names": class_names, "resume": resume}
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
              show_default=True, help="auto/always: replay and store a fresh replay fingerprint (a recorded one "
              "is never copied unchecked); never: write the file without one.")
def pack_cmd(source: str, out: str, tensors_path: str | None, compression: str, fingerprint: str) -> None:
    """Build a .sldp from a run directory, or from manifest.json + tensors.(npz|safetensors).

    SOURCE is a `sldp distill` run directory (its final/ folder is packed), a folder holding
    manifest.json and tensors.npz or tensors.safetensors, or a manifest.json (tensors next to it or
    given with --tensors). manifest.json is the manifest as JSON (spec/SLDP-1-replay.md section 9,
    "Pack input"), without "tensors"/"payload", plus an optional "roles" map; tensors are named images,
    labels, lrs and bn.<buffer>. The replay fingerprint and theta0 digests are computed by replaying (never
    copied from manifest.json unchecked); an unknown architecture and NaN/Inf tensors are refused. Step
    sizes (lrs) may be zero or negative: replay applies them as stored (spec/SLDP-1-replay.md section 2).
    """
    from sldpack.nn.packing import pack

    check_outputs(_pack_inputs(source, tensors_path), {"--out": out})
    res = pack(source, out, tensors=tensors_path, compression=compression, fingerprint=fingerprint)
    click.echo(f"wrote {out} ({res.file_size} bytes, {len(res.manifest.tensors)} tensors)")
    for note in res.notes:
        click.echo(f"note: {note}", err=True)
    fp = res.manifest.replay
    click.echo("replay fingerprint: " + ("none (written without one: `sldp verify --replay` has nothing to "
                                         "compare)" if fp is None else
                                         f"theta_opt sha256 {fp.theta_opt_sha256} (computed by this pack)"))


@click.command("replay")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "-o", "out", type=click.Path(dir_okay=False), required=True,
              help="Checkpoint to write (.safetensors): theta_opt + theta_bn as a state_dict.")
# cpu by default (not the data commands' auto): the replay fingerprint's reference configuration is the CPU
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True,
              help="Where torch replays (a GPU lands 'within tolerance' at best).")
@click.option("--threads", type=click.IntRange(1, MAX_THREADS), default=None,
              help="torch CPU threads, >= 1 [default: the fingerprint's reference count].")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Compare the result with the file's replay fingerprint (exit 1 when it fails).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def replay_cmd(file: str, out: str, device: str, threads: int | None, check: bool, as_json: bool) -> None:
    """Re-derive the trained network from FILE and write it as a .safetensors checkpoint.

    The checkpoint loads with safetensors.torch.load_file + module.load_state_dict into the
    architecture the manifest names (sldpack.nn.zoo.build_from_spec). Without --threads the replay
    runs under the fingerprint's reference thread count (the digest can depend on it). When the replay
    fails the fingerprint check, no checkpoint is written (exit 1; an existing OUT is left as it was).
    """
    import sldpack
    from sldpack.nn.device import resolve_device
    from sldpack.nn.network import save_safetensors
    from sldpack.nn.replay import replay
    from sldpack.nn.verify import replay_and_verify

    check_outputs([file], {"--out": out})
    dev = resolve_device(device)
    with sldpack.open(file) as f:
        manifest = f.manifest
        if check:
            res, rep = replay_and_verify(f, device=dev, threads=threads)
            status: str = rep.status
            digest, maxdev, failures = rep.actual_sha256, rep.max_abs_deviation, list(rep.failures)
            summary = rep.summary()
        else:
            ref = manifest.replay.reference.get("threads") if manifest.replay is not None else None
            use = threads if threads is not None else (ref if isinstance(ref, int) and ref > 0 else None)
            res = replay(f, device=dev, threads=use if dev.type == "cpu" else None)
            status, digest, maxdev, failures, summary = "unchecked", "", None, [], ""
    failed = check and status not in ("exact", "within_tolerance", "no_fingerprint")
    meta = {"sldp_source": Path(file).name, "arch": manifest.arch.id, "format": "pt"}
    # a network that does not reproduce the file's fingerprint is not the network the file describes: no
    # checkpoint is written for it (an old file at --out stays as it was); --no-check writes one unchecked
    nbytes = None if failed else save_safetensors(out, res.module.state_dict(), metadata=meta)
    result = {"file": file, "out": None if failed else out, "bytes": nbytes, "arch": manifest.arch.id,
              "device": str(dev), "seconds": round(res.seconds, 3), "theta0": res.theta0_status,
              "fingerprint": status, "theta_opt_sha256": digest or None, "max_abs_deviation": maxdev,
              "failures": failures}
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(f"replayed {manifest.arch.id} in {res.seconds:.2f}s on {dev}; theta0 {res.theta0_status}")
        if check and failures:  # every failing check named: probe logits or a state tensor
            click.echo(f"fingerprint: {summary}")
        elif check:
            dev_txt = "" if maxdev is None else f" (max |probe logit deviation| {maxdev:.3g})"
            click.echo(f"fingerprint: {status}{dev_txt}")
        if failed:
            click.echo(f"{out} not written: the replay does not match the file's fingerprint (--no-check writes "
                       "the replayed network without checking it)", err=True)
        else:
            click.echo(f"wrote {out} ({nbytes} bytes)")
    sys.exit(EXIT_VERIFY_FAILED if failed else EXIT_OK)
