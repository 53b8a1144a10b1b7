"""``sldp accept``: evaluate a received file on local labelled images and write a signed acceptance record."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from sldpack.cli.common import apply_runtime, check_outputs
from sldpack.cli.exit_codes import EXIT_OK
from sldpack.cli.options import data_options, number, runtime_options
from sldpack.errors import UsageError

__all__ = ["accept_cmd", "format_metrics"]


def _ci(entry: dict[str, Any]) -> str:
    v, ci = entry.get("value"), entry.get("ci95")
    if v is None:
        return "n/a"
    return f"{v:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def format_metrics(m: dict[str, Any]) -> str:
    """One line: Sen/Spe/HM/AUC with their 95 % CIs and the confusion counts."""
    return (f"Sen {_ci(m['sensitivity'])}  Spe {_ci(m['specificity'])}  HM {_ci(m['hm'])}  AUC {_ci(m['auc'])}  "
            f"(n {m['n']}: TP {m['tp']} FN {m['fn']} TN {m['tn']} FP {m['fp']})")


@click.command("accept")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--key", "key", required=True, type=click.Path(dir_okay=False),
              help="The receiver's private key (PEM ECDSA P-256, mode 0600; `sldp keygen`).")
@click.option("--out", "-o", "out", type=click.Path(dir_okay=False), default=None,
              help="Acceptance record to write [default: FILE.accept.json].")
@click.option("--delta", type=number(0.0, 1.0), default=None,
              help="Eq. (9) delta [default: the file's decision rule, else 0.4].")
@click.option("--calibrate-delta", "calibrate", is_flag=True,
              help="Choose delta on part of the local images (max HM) and report the rest with and without it.")
@click.option("--calibration-fraction", type=number(0.0, 1.0, min_open=True, max_open=True), default=0.5,
              show_default=True, help="Share of the local images delta is chosen on (stratified).")
@click.option("--windows", type=click.Choice(["auto", "labelled", "all"]), default="auto", show_default=True,
              help="As `sldp eval --windows`.")
@click.option("--signature", type=click.Path(dir_okay=False), default=None,
              help="The sender's signature of FILE; checked first and its key id recorded.")
@click.option("--sender-key", type=click.Path(dir_okay=False), default=None,
              help="The sender's public key (with --signature).")
@click.option("--trusted-keys", type=click.Path(file_okay=False), default=None,
              help="A folder of trusted sender keys (with --signature).")
@click.option("--json", "as_json", is_flag=True, help="Print the record's content as JSON.")
@data_options
@runtime_options
def accept_cmd(file: str, key: str, out: str | None, delta: float | None, calibrate: bool,
               calibration_fraction: float, windows: str, signature: str | None, sender_key: str | None,
               trusted_keys: str | None, as_json: bool, **kwargs: Any) -> None:
    """Check a received FILE on your own labelled images and sign the result (FILE.accept.json).

    Replays FILE (the replay fingerprint must hold), evaluates it like `sldp eval` on --data (default
    --split all: every local image), and writes an acceptance record signed with --key: FILE's SHA-256,
    the sender's signature key id when --signature was verified, the local metrics with 95 % CIs, the
    delta used, the date and the sldpack version. FILE is never modified. Check the record with
    `sldp verify FILE --acceptance FILE.accept.json --trusted-keys DIR`.

    Exit code 0: record written; 1: the sender's signature or the replay failed; 2: bad data (unlabelled,
    one class, images the network cannot read), options or key.
    """
    from sldpack.pipelines.acceptance import default_acceptance_path, evaluate_locally, write_acceptance
    from sldpack.pipelines.inputs import DataSpec, RuntimeSpec
    from sldpack.pipelines.signing import load_private_key

    if not Path(file).is_file():
        raise UsageError(f"{file}: no such file")
    spec = DataSpec.from_kwargs(kwargs)
    target = Path(out) if out is not None else default_acceptance_path(file)
    check_outputs([file, spec.data, key, signature], {"--out": target})
    if (sender_key is not None or trusted_keys is not None) and signature is None:
        raise UsageError("--sender-key/--trusted-keys check the sender's signature: give --signature too")
    load_private_key(key)  # an unusable key fails now, not after the evaluation
    sender = None
    if signature is not None:
        from sldpack.pipelines.signing import verify_file

        sender = verify_file(file, signature, public_key=sender_key, trusted_keys=trusted_keys).to_dict()
    dev = apply_runtime(RuntimeSpec.from_kwargs(kwargs))
    pred = evaluate_locally(file, spec, split=spec.split_or("all"), delta=delta, calibrate=calibrate,
                            calibration_fraction=calibration_fraction, windows=windows, device=dev,
                            sender_signature=sender)
    write_acceptance(pred, target, key)
    if as_json:
        click.echo(json.dumps({"record": str(target), "predicate": pred}, indent=2))
        sys.exit(EXIT_OK)
    f, ev, d = pred["file"], pred["evaluation"], pred["delta"]
    sig = f["sender_signature"]
    click.echo(f"file         {f['name']}  sha256 {f['sha256']}")
    click.echo("sender       " + (f"signature verified, key id {sig['key_id']}" if sig else
                                  "signature not checked (no --signature)"))
    click.echo(f"replay       {pred['replay']['status']}")
    click.echo(f"local data   {pred['data']['source']}: {pred['data']['images']} images, split "
               f"{pred['data']['split']!r}")
    click.echo(f"decision     {ev['rule']}" + (f" (delta {d['file']})" if ev["task"] == "patches" else ""))
    click.echo(f"local        {format_metrics(ev['metrics'])}")
    cal = pred["calibration"]
    if cal is not None:
        click.echo(f"calibration  delta {cal['delta_before']} -> {cal['delta_calibrated']} on "
                   f"{cal['calibration_images']} images; held out {cal['held_out_images']}:")
        click.echo(f"  before     {format_metrics(cal['held_out_before'])}")
        click.echo(f"  after      {format_metrics(cal['held_out_calibrated'])}")
    click.echo(f"delta used   {d['used']}")
    click.echo(f"wrote        {target} (signed; check: sldp verify {file} --acceptance {target} "
               f"--trusted-keys DIR)")
    sys.exit(EXIT_OK)
