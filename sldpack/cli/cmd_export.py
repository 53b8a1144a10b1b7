"""``sldp export``: the replayed network as ONNX, TorchScript, safetensors or a MONAI bundle, checked."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from sldpack.cli.common import check_outputs, format_bytes
from sldpack.cli.exit_codes import EXIT_OK
from sldpack.cli.options import COUNT, number
from sldpack.errors import UsageError

__all__ = ["export_cmd"]


@click.command("export")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--to", "target", required=True,
              type=click.Choice(["onnx", "torchscript", "safetensors", "monai-bundle"]),
              help="The form to write.")
@click.option("--out", "-o", "out", required=True, type=click.Path(),
              help="File to write (monai-bundle: a new or empty folder).")
@click.option("--probes", type=COUNT, default=8, show_default=True,
              help="Probe inputs the export is checked on (>= 2).")
@click.option("--rtol", type=number(0.0, 1.0, min_open=True), default=1e-4, show_default=True,
              help="Largest accepted max |logit difference| / max(1, max |replay logit|).")
@click.option("--threads", type=COUNT, default=None,
              help="torch CPU threads of the replay [default: the fingerprint's reference count].")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def export_cmd(file: str, target: str, out: str, probes: int, rtol: float, threads: int | None,
               as_json: bool) -> None:
    """Replay FILE and write its network (theta_opt + theta_bn, eval mode) for other tools.

    The input of the written network is the normalised image [batch, C, H, W] (the file's preprocessing
    mean/std), its output the logits in the order of the file's labels. Before success is reported the
    export is loaded back by its own runtime (onnxruntime, torch.jit.load, the safetensors reader, MONAI's
    ConfigParser) and run on the file's probe inputs against the torch replay; the max |logit difference|
    is printed. Above --rtol the export is deleted and the exit code is 1. FILE is never modified.

    Extras: onnx needs 'sldpack[export]' (onnx, onnxruntime), monai-bundle needs 'sldpack[monai]'.
    """
    from sldpack.pipelines.export import export_file

    if not Path(file).is_file():
        raise UsageError(f"{file}: no such file")
    if probes < 2:
        raise click.BadParameter("the check needs at least 2 probe inputs", param_hint="--probes")
    check_outputs([file], {"--out": out})
    res = export_file(file, target, out, probes=probes, rtol=rtol, threads=threads)
    if as_json:
        click.echo(json.dumps({"file": file, **res.to_dict()}, indent=2))
        sys.exit(EXIT_OK)
    c = res.check
    via = f" (torch ONNX exporter: {res.exporter})" if res.exporter else ""
    click.echo(f"replay: {res.replay_status}")
    click.echo(f"check: max |logit difference| {c['max_abs_logit_diff']:.3g} vs the torch replay over "
               f"{c['probes']} probe inputs (relative {c['relative']:.3g} <= {c['rtol']:g})")
    click.echo(f"wrote {res.out} ({target}{via}, {format_bytes(res.nbytes)}) in {res.seconds:.1f}s")
    for name in res.files:
        click.echo(f"  {name}")
    for note in res.notes:
        click.echo(f"note: {note}")
    sys.exit(EXIT_OK)
