"""``sldp report`` (sizes, compression rate, storage precision) and ``sldp audit`` (privacy audit).

Both are torch-free except where a number needs the network: the checkpoint size comes from the zoo
(torch, imported only then), and ``--eval-data`` replays the file. Without torch the report says what it
could not compute instead of failing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sldpack.cli.audit_membership import (
    MEMBERSHIP_OPTION_NAMES,
    check_membership_options,
    membership_options,
    roc_path,
    run_membership,
)
from sldpack.cli.common import check_outputs
from sldpack.cli.exit_codes import EXIT_OK, EXIT_VERIFY_FAILED
from sldpack.cli.options import COUNT, SEED, data_options, number, runtime_options
from sldpack.errors import SldpError, UsageError

if TYPE_CHECKING:
    from sldpack.pipelines.report import ByteReport

__all__ = ["audit_cmd", "report_cmd"]


def _dump(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False, default=str))


def _zoo_checkpoint(rep: ByteReport) -> tuple[int | None, str | None, str | None]:
    """(bytes, source, note) of the checkpoint of the file's architecture, from the zoo."""
    try:
        from sldpack.pipelines.sharing import checkpoint_size
    except ImportError as exc:
        return None, None, f"needs torch for the architecture zoo ({exc.name or exc}); or pass --vs CHECKPOINT"
    arch = rep.manifest.arch
    try:
        n = checkpoint_size(arch)
    except SldpError as exc:
        return None, None, f"zoo cannot size {arch.id}: {exc}"
    return n, f"zoo: {arch.id}, fp32 parameters + buffers", None


def _zoo_table(as_json: bool, steps: int, epochs: int, level: int) -> None:
    try:
        from sldpack.pipelines.sharing import render_table4, table4
    except ImportError as exc:
        raise UsageError(f"sldp report --zoo needs torch (the architecture zoo): {exc}") from None
    rows = table4(steps=steps, epochs=epochs, level=level)
    if as_json:
        _dump({"setting": {"image": [1, 227, 227], "classes": ["I", "N", "P"], "steps": steps, "epochs": epochs,
                           "zstd_level": level},
               "rows": [r.to_dict() for r in rows]})
    else:
        click.echo(render_table4(rows, steps=steps, epochs=epochs))


def _evaluate(path: str, new_bytes: bytes, data: str, split: str) -> dict[str, Any]:
    """Accuracy of the original and the requantized file on ``data`` (needs torch)."""
    try:
        from sldpack.nn.replay import replay
        from sldpack.pipelines.sharing import accuracy
    except ImportError as exc:
        return {"done": False, "why": f"needs torch ({exc.name or exc})"}
    from sldpack.pipelines.audit import load_real_images

    images, labels = load_real_images(data, split)
    if labels is None:
        raise UsageError(f"{data}: no labels for split {split!r}: cannot measure accuracy")
    before = replay(path)
    after = replay(new_bytes)
    pre = before.manifest.preprocessing
    a0 = accuracy(before.module, images, labels, pre)
    a1 = accuracy(after.module, images, labels, pre)
    return {"done": True, "data": data, "split": split, "n": int(images.shape[0]), "accuracy_before": a0,
            "accuracy_after": a1, "change": a1 - a0}


@click.command("report")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--zoo", is_flag=True, help="Print the seed paper's Table-4 comparison (GoogLeNet ... VGG19 at "
              "1x227x227, 3 classes) with .sldp files built and measured in memory.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--vs", "vs", type=click.Path(exists=True, dir_okay=False),
              help="Measure the checkpoint from this file's size instead of computing it from the zoo.")
@click.option("--precision", is_flag=True,
              help="Also show the file's size with images at float32/float16/bfloat16, uncompressed and zstd.")
@click.option("--images-dtype", type=click.Choice(["float32", "float16", "bfloat16"]),
              help="Requantize: store the images in this dtype (see --out, --eval-data).")
@click.option("--zstd-level", type=click.IntRange(1, 22), default=None,
              help="zstd level: compress the --out file; level for --precision/--zoo (default 19).")
@click.option("--out", type=click.Path(dir_okay=False),
              help="Write the requantized file here (replay fingerprint recomputed with torch, else dropped).")
@click.option("--eval-data", type=click.Path(exists=True, dir_okay=False),
              help="With --images-dtype: accuracy of the original vs the requantized file on this .npz "
                   "(needs torch).")
@click.option("--eval-split", default="test", show_default=True, help="Split of --eval-data.")
@click.option("--steps", type=click.IntRange(1, 1000), default=3, show_default=True,
              help="--zoo: distill steps per epoch (T = steps x epochs learning rates).")
@click.option("--epochs", type=click.IntRange(1, 1000), default=3, show_default=True, help="--zoo: epochs.")
def report_cmd(file: str | None, zoo: bool, as_json: bool, vs: str | None, precision: bool,
               images_dtype: str | None, zstd_level: int | None, out: str | None, eval_data: str | None,
               eval_split: str, steps: int, epochs: int) -> None:
    """Where the bytes of FILE go, and how much smaller it is than the network it replaces.

    Bytes per role (images, labels, lrs, bn_stats), manifest and overhead add up to the file size
    exactly; with a zstd payload the role lines give decoded bytes and one 'compressed payload' line
    holds the stored frame. The compression rate is file bytes / checkpoint bytes, the checkpoint being
    every fp32 parameter and buffer of the same architecture (zoo) or the --vs file.
    """
    from sldpack.pipelines.report import (
        byte_report,
        precision_table,
        render_precision,
        render_report,
        requantize_bytes,
    )

    if zoo:
        if file is not None or vs or precision or images_dtype or out or eval_data:
            raise click.UsageError("--zoo takes no FILE and no per-file options")
        _zoo_table(as_json, steps, epochs, zstd_level or 19)
        return
    if file is None:
        raise click.UsageError("give a FILE, or --zoo for the Table-4 comparison")
    if out and not (images_dtype or zstd_level):
        raise click.UsageError("--out needs --images-dtype and/or --zstd-level (what should change?)")
    if eval_data and not images_dtype:
        raise click.UsageError("--eval-data compares the file with its --images-dtype version: give --images-dtype")

    check_outputs([file, vs, eval_data], {"--out": out})
    rep = byte_report(file)
    ckpt = (os.path.getsize(vs), f"file: {vs}", None) if vs else _zoo_checkpoint(rep)
    rep = rep.with_checkpoint(*ckpt)
    result: dict[str, Any] = rep.to_dict()
    text = [render_report(rep)]

    level = zstd_level or 19
    if precision:
        rows = precision_table(file, level=level)
        result["precision"] = [{"images_dtype": r.images_dtype, "compression": r.compression, "level": r.level,
                                "file_size": r.file_size, "images_bytes": r.images_bytes,
                                "max_abs_change": r.max_abs_change,
                                "rate": r.file_size / rep.checkpoint_bytes if rep.checkpoint_bytes else None}
                               for r in rows]
        text += ["", "storage precision (same content, images re-encoded in memory):",
                 render_precision(rows, rep.checkpoint_bytes)]

    if images_dtype or out:
        dtype = images_dtype or _current_images_dtype(rep)
        compression = "zstd" if zstd_level else "none"
        # the fingerprint needs a replay only when a file is written; for --eval-data alone it is unused
        data, rq = requantize_bytes(file, dtype, compression, level, fingerprint_fn=bool(out))
        if out:
            from sldpack.atomic import atomic_write_bytes

            atomic_write_bytes(out, data)
        result["requantize"] = {"out": out, "images_dtype_from": list(rq.images_dtype_in),
                                "images_dtype_to": rq.images_dtype_out, "compression": rq.compression,
                                "size_in": rq.size_in, "size_out": rq.size_out,
                                "max_abs_change": rq.max_abs_change,
                                "fingerprint": rq.fingerprint if out else "not computed (no --out)"}
        text += ["", f"requantized: images {'/'.join(rq.images_dtype_in)} -> {rq.images_dtype_out}, payload "
                     f"{rq.compression}: {rq.size_in:,} -> {rq.size_out:,} bytes, max |change| "
                     f"{rq.max_abs_change:.3g}" + (f"; written to {out}, fingerprint {rq.fingerprint}" if out
                                                    else " (not written: no --out)")]
        if eval_data:
            ev = _evaluate(file, data, eval_data, eval_split)
            result["eval"] = ev
            if ev["done"]:
                text.append(f"accuracy on {eval_data} [{eval_split}, n={ev['n']}]: {ev['accuracy_before']:.4f} "
                            f"-> {ev['accuracy_after']:.4f} (change {ev['change']:+.4f})")
            else:
                text.append(f"accuracy change: not measured ({ev['why']})")
    if as_json:
        _dump(result)
    else:
        click.echo("\n".join(text))


def _current_images_dtype(rep: ByteReport) -> str:
    dts = {t.dtype for t in rep.manifest.tensors.values() if t.role == "images"}
    return dts.pop() if len(dts) == 1 else "F32"


@click.command("audit")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@data_options
@runtime_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--sheet", type=click.Path(dir_okay=False), default=None,
              help="PNG sheet path [default: FILE with .audit.png].")
@click.option("--no-sheet", is_flag=True, help="Do not write the PNG sheet.")
@click.option("--percentile", type=number(0, 100, min_open=True), default=99.0, show_default=True,
              help="Flag above this percentile of real-real nearest-neighbour similarity.")
@click.option("--copy-ncc", type=number(-1, 1), default=0.99, show_default=True,
              help="Flag any image whose nearest real item has at least this NCC.")
@click.option("-k", "--neighbours", type=click.IntRange(1, 32), default=3, show_default=True,
              help="Real neighbours per distilled image in the sheet and JSON.")
@click.option("--real-sample", type=COUNT, default=1000, show_default=True,
              help="Real images sampled for the real-real reference distribution.")
@click.option("--ssim-candidates", type=COUNT, default=64, show_default=True,
              help="SSIM nearest neighbour searched among this many best NCC neighbours.")
@click.option("--chunk", type=COUNT, default=512, show_default=True,
              help="Real items processed at a time (bounds memory).")
@click.option("--window", type=click.Choice(["uniform", "gaussian"]), default="uniform", show_default=True,
              help="SSIM window (7x7).")
@click.option("--patch-stride", type=COUNT, default=None,
              help="Same as --stride (kept for existing scripts).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the real sample.")
@click.option("--record", is_flag=True,
              help="Write the verdict into FILE's provenance, bound to its images' digest and to the SHA-256 of "
                   "the JSON report written beside it (re-pack, atomic; sign afterwards).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None,
              help="With --record: the JSON report path [default: FILE with .audit.json].")
@membership_options
@click.pass_context
def audit_cmd(ctx: click.Context, /, file: str, as_json: bool, sheet: str | None, no_sheet: bool, percentile: float,
              copy_ncc: float, neighbours: int, real_sample: int, ssim_candidates: int, chunk: int, window: str,
              patch_stride: int | None, seed: int, record: bool, report_path: str | None, **kwargs: Any) -> None:
    """Privacy audit: is any distilled image of FILE a near copy of a real training image?

    For every distilled image: its nearest real training image (or patch) by normalised
    cross-correlation and by SSIM (7x7 window) at the distilled resolution, and where that similarity
    falls in the distribution of nearest-neighbour similarity between distinct real images. An image is
    flagged when its NCC or SSIM is above the --percentile of that distribution, or its NCC >= --copy-ncc.

    Real images: the --split (default train) of --data (any layout, or a .npy image array) or --phantom.
    A patch model (a file distilled from I/N/P patches; its patch geometry is recorded in the file) is
    compared with the real patches cut, mask-labelled and resized exactly as the distiller saw them (the
    data needs organ masks); the output names the geometry used. With --stride the distilled images are
    compared with every distilled-size window of the real images at that stride instead. Whole-image files
    are compared with whole real images, area-resized down to the distilled resolution (the output says
    so; smaller real images are refused, never up-sampled). The image-similarity audit is
    numpy-only.

    --membership also asks whether someone holding FILE can tell that a patient's image was in the
    training set: the network FILE replays to (torch; --device/--threads apply) is attacked with the
    training images (--split) as members and held-out images of the same distribution as non-members
    (--nonmembers, or a MedMNIST file's test split, or the test part of the split rule), equal counts per
    class, at least 10 per class, no image in both. Attacks: the loss threshold (Yeom et al. 2018) and,
    with --references N > 0, offline LiRA (Carlini et al. 2022) calibrated by N networks trained on other
    non-member images only. Patch models: an image is scored by the mean over its labelled windows. Each
    attack's AUC and TPR at FPR 1 % and 0.1 % come with bootstrap 95 % CIs, next to the same attacks on a
    network of the same architecture trained normally on the training images (--compare MODEL, or trained
    here). The membership part flags when an AUC's CI lower bound on FILE's network exceeds --flag-auc.
    It bounds these attacks on these sets; it is not a guarantee against every attack.

    Exit code: 0 PASS, 1 FLAG (an image is flagged, or the membership part flags), 2 bad input.
    """
    from sldpack.pipelines.audit import AuditConfig, audit_data_for, audit_file
    from sldpack.pipelines.inputs import DataSpec

    mopts = {n: kwargs.pop(n) for n in MEMBERSHIP_OPTION_NAMES}
    check_membership_options(ctx, mopts)
    spec = DataSpec.from_kwargs(kwargs)
    if sheet and no_sheet:
        raise click.UsageError("--sheet and --no-sheet contradict each other")
    if patch_stride is not None and spec.stride is not None and patch_stride != spec.stride:
        raise click.UsageError("--patch-stride and --stride differ: give one")
    patch_stride = spec.stride if spec.stride is not None else patch_stride
    split = spec.split_or("train")
    chosen = audit_data_for(file, spec, split, patch_stride=patch_stride)
    cfg = AuditConfig(percentile=percentile, copy_ncc=copy_ncc, k=neighbours, real_sample=real_sample,
                      ssim_candidates=ssim_candidates, chunk=chunk,
                      window="gaussian" if window == "gaussian" else "uniform", seed=seed,
                      patch_stride=patch_stride)
    if report_path and not record:
        raise click.UsageError("--report is the report of --record: add --record")
    sheet_path = None if no_sheet else (sheet or str(Path(file).with_suffix(".audit.png")))
    roc = roc_path(file, mopts)
    check_outputs([file, spec.data, mopts["nonmembers"], mopts["compare_model"]], {
        "--sheet": sheet_path, "--roc": roc,
        "--report": (report_path or str(Path(file).with_suffix(".audit.json"))) if record else None})
    if record:
        from sldpack.format.provenance import images_sha256

        audited = images_sha256(file)  # before auditing: --record refuses a file that changed meanwhile
    from sldpack.pipelines.inputs import RuntimeSpec
    from sldpack.pipelines.membership import combine_reports, save_roc_png

    # the membership part first: its set checks fail fast, and nothing is written until both parts finished
    mrep = (run_membership(file, spec, split, RuntimeSpec.from_kwargs(kwargs), mopts, seed)
            if mopts["membership"] else None)
    res = audit_file(file, chosen.data, split=split, config=cfg, sheet=sheet_path, real=chosen.real,
                     items=chosen.items)
    if mrep is not None and roc is not None:
        save_roc_png(mrep, roc)
    doc = combine_reports(res.to_dict(), mrep, roc)
    if record:
        from sldpack.format.provenance import record_audit

        rec = record_audit(file, doc, images_digest=audited, report_path=report_path,
                           membership=None if mrep is None else mrep.to_record())
        click.echo(f"recorded {rec.record.verdict} in {file} (report {rec.report_path}, sha256 "
                   f"{rec.record.report_sha256[:16]}..; manifest sha256 now {rec.manifest_sha256_after[:16]}..)",
                   err=True)
    if as_json:
        _dump(doc)
    else:
        rr_n, rr_s = res.real_real_ncc, res.real_real_ssim
        lines = [f"{file}: {res.n_distilled} distilled image(s) {res.channels}x{res.resolution[0]}x"
                 f"{res.resolution[1]} vs {res.n_real:,} real items from {chosen.data} [{split}], {res.mode}",
                 f"real-real nearest neighbours ({res.n_real_sample} sampled, {res.duplicates_excluded} exact "
                 f"duplicate pair(s) excluded): NCC median {rr_n.p50:.3f}, p{percentile:g} {rr_n.threshold:.3f}, "
                 f"max {rr_n.max:.3f}; SSIM median {rr_s.p50:.3f}, p{percentile:g} {rr_s.threshold:.3f}, "
                 f"max {rr_s.max:.3f}", ""]
        head = ("image", "nearest (NCC)", "NCC", "pct", "nearest (SSIM)", "SSIM", "pct", "")
        rows = [head]
        for f in res.findings:
            rows.append((str(f.index), f.nn_ncc.name, f"{f.nn_ncc.ncc:.3f}", f"{f.ncc_percentile:.1f}",
                         f.nn_ssim.name, f"{f.nn_ssim.ssim or 0.0:.3f}", f"{f.ssim_percentile:.1f}",
                         "FLAG" if f.flagged else "ok"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        for r in rows:
            lines.append("  ".join(c.rjust(w) if i in (2, 3, 5, 6) else c.ljust(w)
                                   for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip())
        if res.sheet:
            lines += ["", f"sheet: {res.sheet}"]
        lines += ["", res.verdict_line()]
        if mrep is not None:
            lines += ["", *mrep.lines()] + ([f"ROC curves: {roc}"] if roc else [])
        click.echo("\n".join(lines))
    ctx.exit(EXIT_VERIFY_FAILED if doc["verdict"] == "FLAG" else EXIT_OK)
