"""``sldp card FILE`` (render the model card) and ``sldp card set FILE KEY=VALUE ...`` (edit it in place)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from sldpack.cli.exit_codes import EXIT_OK
from sldpack.errors import UsageError

__all__ = ["card_cmd"]


@click.command("card", context_settings={"ignore_unknown_options": False})
@click.argument("args", nargs=-1, required=True, metavar="FILE | set FILE KEY=VALUE...")
@click.option("--out", "-o", "out", type=click.Path(dir_okay=False), default=None,
              help="Write the rendered card here (Markdown) instead of printing it.")
@click.option("--json", "as_json", is_flag=True, help="Print the stored card as JSON (no rendering).")
def card_cmd(args: tuple[str, ...], out: str | None, as_json: bool) -> None:
    """Show or edit the model card of a .sldp file.

    `sldp card FILE` renders the card as Markdown with Hugging Face YAML front matter (license, datasets,
    model-index with the sender's results): what the card says plus what the manifest says (architecture,
    input, labels, decision rule, training-data digest, privacy audit).

    `sldp card set FILE KEY=VALUE ...` edits the card (atomic manifest-only re-pack; the payload is unchanged).
    Keys: name, summary, intended_use, limitations, modality, license, data_license, contact (text);
    label_meanings.CLASS, dataset.name, dataset.version, dataset.citation, dataset.url (text);
    input_range=0,255; input_size=512,512; dataset and evaluation as JSON; evaluation+='{"metric": "hm",
    "value": 0.81, "ci95": [0.74, 0.87], "n": 120, "split": "test 30 %"}' appends one result; KEY= removes
    a field. A value of the wrong type is refused naming the field (exit 2). The edit changes the file's
    bytes: a signature made before no longer verifies (sign again).
    """
    from sldpack.format.provenance import file_sha256
    from sldpack.pipelines.card import render_card, set_card

    if args[0] == "set":
        if len(args) < 2:
            raise UsageError("sldp card set FILE KEY=VALUE ...: FILE is missing")
        file, items = args[1], args[2:]
        if out is not None or as_json:
            raise UsageError("--out and --json are for showing a card, not for `card set`")
        if not Path(file).is_file():
            raise UsageError(f"{file}: no such file")
        edit = set_card(file, items)
        click.echo(f"card of {file} updated ({len(items)} edit(s)); SLDP {edit.version[0]}.{edit.version[1]}, "
                   f"manifest sha256 {edit.manifest_sha256_before[:16]}.. -> {edit.manifest_sha256_after[:16]}..")
        if edit.signature is not None:
            click.echo(f"warning: {edit.signature} no longer verifies (the file's bytes changed): sign again with "
                       f"`sldp sign {file} --key KEY`", err=True)
        else:
            click.echo("note: the file's bytes changed; a signature made before this edit no longer verifies")
        sys.exit(EXIT_OK)
    if len(args) != 1:
        raise UsageError(f"sldp card FILE takes one file (got {len(args)} arguments); to edit: sldp card set FILE "
                         "KEY=VALUE ...")
    import sldpack

    file = args[0]
    if not Path(file).is_file():
        raise UsageError(f"{file}: no such file")
    with sldpack.open(file) as f:
        manifest = f.manifest
    if as_json:
        click.echo(json.dumps(None if manifest.card is None else manifest.card.to_obj(), indent=2, sort_keys=True))
        sys.exit(EXIT_OK)
    text = render_card(manifest, file_name=Path(file).name, file_sha256=file_sha256(file))
    if out is not None:
        from sldpack.atomic import atomic_write_bytes
        from sldpack.cli.common import check_outputs

        check_outputs([file], {"--out": out})
        atomic_write_bytes(out, text.encode("utf-8"))
        click.echo(f"wrote {out}")
    else:
        click.echo(text, nl=False)
    sys.exit(EXIT_OK)
