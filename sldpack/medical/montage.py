"""PNG contact sheets: a grid of images with a caption under each, for phantom, patch and distilled images.

Tiles may be uint8 (shown as is), bool (0/255) or any other numeric type (min-max scaled per tile, so a
distilled image with values around 0 is still visible; a constant tile is shown mid-gray). Grayscale
``[H, W]``, ``[1, H, W]`` and RGB ``[H, W, 3]``/``[3, H, W]`` tiles are accepted, so a batch ``[N, C, H, W]``
from a model can be passed directly. Files are written atomically (temporary file + rename).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

from sldpack.atomic import atomic_write_bytes
from sldpack.errors import UsageError

__all__ = [
    "PATCH_COLORS",
    "draw_patch_boxes",
    "montage_image",
    "outline_mask",
    "save_montage",
    "to_uint8_tile",
]

#: colours of patch classes I, N, P in :func:`draw_patch_boxes`
PATCH_COLORS: tuple[tuple[int, int, int], ...] = ((90, 160, 255), (60, 200, 90), (255, 70, 70))
_MAX_PIXELS = 80_000_000  # a sheet bigger than this is a mistake (e.g. thousands of full-size images)


def to_uint8_tile(image: NDArray[Any]) -> NDArray[np.uint8]:
    """One tile as uint8 ``[H, W]`` or ``[H, W, 3]`` (see the module docs for the scaling rules).

    Raises:
        UsageError: unsupported shape, or non-finite values in a float tile.
    """
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)  # channel-first -> channel-last
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3)):
        raise UsageError(f"a tile must be [H, W], [1, H, W], [H, W, 3] or [3, H, W], got shape {np.shape(image)}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise UsageError(f"empty tile of shape {a.shape}")
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return (a.astype(np.uint8) * 255).astype(np.uint8)
    if a.dtype.kind not in "iuf":
        raise UsageError(f"tiles must be numeric, got dtype {a.dtype}")
    f = a.astype(np.float64)
    if not np.all(np.isfinite(f)):
        raise UsageError("a tile holds NaN or infinite values")
    lo, hi = float(f.min()), float(f.max())
    if hi <= lo:
        return np.full(a.shape, 128, dtype=np.uint8)
    return np.clip(np.rint((f - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)  # scalable font (Pillow >= 10.1 with FreeType)
    except (TypeError, OSError, ImportError, AttributeError):
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> str:
    """``text`` shortened with "..." until it fits ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def montage_image(
    images: Sequence[NDArray[Any]] | NDArray[Any],
    captions: Sequence[str] | None = None,
    *,
    ncols: int = 8,
    scale: int = 1,
    pad: int = 4,
    title: str | None = None,
    font_size: int = 11,
) -> Image.Image:
    """Compose tiles into one RGB Pillow image (see :func:`save_montage`)."""
    tiles = [to_uint8_tile(t) for t in images]
    if not tiles:
        raise UsageError("no images to put in a montage")
    if captions is not None and len(captions) != len(tiles):
        raise UsageError(f"{len(captions)} captions for {len(tiles)} images")
    if ncols < 1 or scale < 1 or pad < 0:
        raise UsageError(f"need ncols >= 1, scale >= 1, pad >= 0; got {ncols}, {scale}, {pad}")
    ncols = min(ncols, len(tiles))
    nrows = math.ceil(len(tiles) / ncols)
    cell_w = max(t.shape[1] for t in tiles) * scale
    cell_h = max(t.shape[0] for t in tiles) * scale
    font = _font(font_size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    box = probe.textbbox((0, 0), "Ag|", font=font)
    line_h = int(box[3] - box[1]) + 3
    n_lines = max((c.count("\n") + 1 for c in captions), default=0) if captions else 0
    cap_h = n_lines * line_h + (2 if n_lines else 0)
    title_h = line_h + pad if title else 0
    width = pad + ncols * (cell_w + pad)
    height = pad + title_h + nrows * (cell_h + cap_h + pad)
    if width * height > _MAX_PIXELS:
        raise UsageError(f"montage would be {width}x{height} px; use fewer images or a smaller scale")
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, pad), _fit(draw, title, font, width - 2 * pad), fill=(0, 0, 0), font=font)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, ncols)
        x0 = pad + c * (cell_w + pad)
        y0 = pad + title_h + r * (cell_h + cap_h + pad)
        img = Image.fromarray(tile)
        if scale != 1:
            # nearest keeps single pixels visible (tiny distilled images are the point of the picture)
            img = img.resize((tile.shape[1] * scale, tile.shape[0] * scale), Image.Resampling.NEAREST)
        sheet.paste(img.convert("RGB"), (x0 + (cell_w - img.width) // 2, y0 + (cell_h - img.height) // 2))
        if captions is not None:
            for j, line in enumerate(captions[k].split("\n")):
                text = _fit(draw, line, font, cell_w)
                tx = x0 + max(0, (cell_w - int(draw.textlength(text, font=font))) // 2)
                draw.text((tx, y0 + cell_h + 2 + j * line_h), text, fill=(0, 0, 0), font=font)
    return sheet


def save_montage(
    images: Sequence[NDArray[Any]] | NDArray[Any],
    captions: Sequence[str] | None,
    path: str | os.PathLike[str],
    *,
    ncols: int = 8,
    scale: int = 1,
    pad: int = 4,
    title: str | None = None,
    font_size: int = 11,
) -> Path:
    """Write a PNG grid of ``images`` with ``captions[k]`` under tile ``k``.

    Args:
        images: tiles (a sequence, or an array ``[N, H, W]``, ``[N, 1, H, W]``, ``[N, H, W, 3]``...).
        captions: one caption per tile (``"\\n"`` for several lines; long lines are cut with "..."), or
            ``None``.
        path: destination ``.png`` (written atomically; parent folders are created).
        ncols: tiles per row.
        scale: integer nearest-neighbour magnification of every tile.
        pad: pixels between tiles.
        title: optional line above the grid.
        font_size: caption font size (the scalable default font when Pillow has FreeType).

    Returns:
        The written path.

    Raises:
        UsageError: no tiles, caption count mismatch, bad tile shapes or values, an oversized sheet.
    """
    sheet = montage_image(
        images, captions, ncols=ncols, scale=scale, pad=pad, title=title, font_size=font_size
    )
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", optimize=False)
    return atomic_write_bytes(path, buf.getvalue())


def outline_mask(
    image: NDArray[Any], mask: NDArray[Any], color: tuple[int, int, int] = (255, 200, 0)
) -> NDArray[np.uint8]:
    """RGB copy of ``image`` with the boundary of ``mask`` (pixels inside with a neighbour outside) drawn.

    Raises:
        UsageError: shapes differ.
    """
    gray = to_uint8_tile(image)
    m = np.asarray(mask) != 0
    if gray.shape[:2] != m.shape:
        raise UsageError(f"mask shape {m.shape} differs from image shape {gray.shape[:2]}")
    rgb = np.repeat(gray[..., None], 3, axis=2) if gray.ndim == 2 else gray.copy()
    p = np.pad(m, 1, mode="edge")
    edge = m & ~(p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:])
    rgb[edge] = color
    return rgb


def draw_patch_boxes(
    image: NDArray[Any],
    ys: Sequence[int] | NDArray[np.integer[Any]],
    xs: Sequence[int] | NDArray[np.integer[Any]],
    classes: Sequence[int] | NDArray[np.integer[Any]],
    size: int,
    *,
    colors: Sequence[tuple[int, int, int]] = PATCH_COLORS,
) -> NDArray[np.uint8]:
    """RGB copy of ``image`` with a 1 px frame around each window, coloured by its class (I, N, P).

    Overlapping windows overwrite each other; pass a sparse subset (e.g. every other row) for a clear picture.
    """
    gray = to_uint8_tile(image)
    rgb = np.repeat(gray[..., None], 3, axis=2) if gray.ndim == 2 else gray.copy()
    sheet = Image.fromarray(rgb)
    draw = ImageDraw.Draw(sheet)
    for y, x, c in zip(np.asarray(ys).tolist(), np.asarray(xs).tolist(), np.asarray(classes).tolist(), strict=True):
        draw.rectangle((x, y, x + size - 1, y + size - 1), outline=tuple(colors[int(c)]))
    return np.asarray(sheet, dtype=np.uint8)
