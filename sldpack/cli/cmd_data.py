"""``sldp data``: convert a data set once to an on-disk store, and describe a store.

``sldp data convert SRC OUT`` streams a folder (PNG/JPEG/TIFF/DICOM + ``masks/`` + ``labels.csv``) image by
image, or an ``.npz``, into the store layout of :mod:`sldpack.medical.store` (a folder of ``.npy`` files);
``--data OUT`` of ``sldp eval``/``train`` then reads only the images it uses. Torch is never imported.
"""

from __future__ import annotations

import json
import time

import click

from sldpack.cli.common import check_outputs
from sldpack.cli.options import COUNT, number
from sldpack.errors import UsageError

__all__ = ["data_group"]


@click.group("data")
def data_group() -> None:
    """Data sets bigger than memory: convert once to a memory-mappable store of .npy files."""


@data_group.command("convert")
@click.argument("src", type=click.Path())
@click.argument("out", type=click.Path())
@click.option("--split", default=None, help="MedMNIST .npz only: the split to convert (train, val, test).")
@click.option("--size", type=COUNT, default=None, help="Resize every image (and mask) to this side.")
@click.option("--window", type=number(-1e6, 1e6), nargs=2, default=None, metavar="CENTER WIDTH",
              help="DICOM only: VOI window overriding each file's window.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it is an existing store.")
@click.option("--unlabelled", type=click.Choice(["error", "skip"]), default="error", show_default=True,
              help="Folders: an image without a labels.csv row is an error, or (skip) left out.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def convert_cmd(src: str, out: str, split: str | None, size: int | None, window: tuple[float, float] | None,
                overwrite: bool, as_json: bool, unlabelled: str) -> None:
    """Convert SRC (folder or .npz) to a store folder OUT: images.npy [N,H,W] uint8, masks.npy, labels.npy,
    names.npy and sldp_store.json. OUT is written completely or not at all."""
    from sldpack.medical.loaders import convert_to_store as convert

    if size is not None and size < 1:
        raise UsageError(f"--size must be >= 1, got {size}")
    check_outputs([src], {"OUT": out})
    t0 = time.perf_counter()
    info = convert(src, out, split=split, size=size, window=window, overwrite=overwrite, unlabelled=unlabelled)
    secs = time.perf_counter() - t0
    if as_json:
        click.echo(json.dumps({**info.to_dict(), "seconds": secs}, indent=2))
        return
    click.echo(f"{info.path}: {info.count} images of {info.height}x{info.width} px, "
               f"{'with' if info.masks else 'no'} masks, {info.bytes:,} bytes on disk ({secs:.1f} s)")


@data_group.command("info")
@click.argument("store", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info_cmd(store: str, as_json: bool) -> None:
    """Describe a store folder (checks every file's header and size)."""
    import numpy as np

    from sldpack.medical.store import open_store

    data = open_store(store)
    counts = np.bincount(np.asarray(data.labels), minlength=2)
    labels = {str(i): int(c) for i, c in enumerate(counts) if c}
    eager = len(data) * data.shape[0] * data.shape[1] * (2 if data.masks is not None else 1)
    if as_json:
        click.echo(json.dumps({"path": store, "count": len(data), "height": data.shape[0], "width": data.shape[1],
                               "masks": data.masks is not None, "labels": labels, "eager_bytes": eager}, indent=2))
        return
    text = ", ".join(f"{k}: {v}" for k, v in labels.items())
    click.echo(f"{store}: {len(data)} images of {data.shape[0]}x{data.shape[1]} px, "
               f"{'with' if data.masks is not None else 'no'} masks; labels {text}; an eager load would hold "
               f"{eager:,} bytes")
