"""Montage PNGs: valid files, tile scaling rules, captions, overlays, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sldpack.errors import UsageError
from sldpack.medical.montage import (
    PATCH_COLORS,
    draw_patch_boxes,
    montage_image,
    outline_mask,
    save_montage,
    to_uint8_tile,
)


def test_save_montage_writes_a_valid_png(tmp_path: Path) -> None:
    imgs = np.random.default_rng(0).integers(0, 256, size=(5, 16, 12), dtype=np.uint8)
    out = save_montage(imgs, [f"img {i}" for i in range(5)], tmp_path / "sub" / "m.png", ncols=3, scale=2, pad=4)
    assert out == tmp_path / "sub" / "m.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as im:
        im.verify()
    with Image.open(out) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        assert im.width == 4 + 3 * (12 * 2 + 4)
        assert im.height > 4 + 2 * (16 * 2 + 4)  # two rows plus caption space
        # first tile, scaled x2 with nearest: pixel (0, 0) of image 0 fills the top-left 2x2 block
        px = np.asarray(im)[4:6, 4:6, 0]
        assert np.all(px == imgs[0, 0, 0])
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["m.png"]  # no temp file left


def test_float_tiles_are_minmax_scaled_per_tile() -> None:
    ramp = np.linspace(-3.0, 5.0, 16, dtype=np.float32).reshape(4, 4)
    t = to_uint8_tile(ramp)
    assert t.dtype == np.uint8 and t.min() == 0 and t.max() == 255
    assert to_uint8_tile(np.full((3, 3), 0.7)).tolist() == [[128] * 3] * 3
    assert to_uint8_tile(np.array([[True, False]])).tolist() == [[255, 0]]
    assert to_uint8_tile(np.zeros((1, 5, 6), np.float32)).shape == (5, 6)  # channel-first gray
    assert to_uint8_tile(np.zeros((3, 5, 6), np.float32)).shape == (5, 6, 3)  # channel-first RGB
    sheet = montage_image(np.stack([ramp, ramp * 0.01]), None, pad=0)
    a = np.asarray(sheet)[:, :, 0]
    assert a[0, 0] == 0 and a[3, 3] == 255 and a[0, 4] == 0 and a[3, 7] == 255  # both tiles use full range
    with pytest.raises(UsageError, match="NaN"):
        to_uint8_tile(np.array([[np.nan, 1.0]]))


def test_batch_from_a_model_and_long_captions(tmp_path: Path) -> None:
    batch = np.random.default_rng(1).standard_normal((4, 1, 8, 8)).astype(np.float32)
    sheet = montage_image(batch, ["a very long caption that cannot fit under an 8 px tile", "b", "c\nd", "e"],
                          ncols=2, scale=4, title="distilled images")
    assert sheet.width == 4 + 2 * (32 + 4)
    with pytest.raises(UsageError, match="captions"):
        montage_image(batch, ["only one"])
    with pytest.raises(UsageError, match="no images"):
        montage_image([], None)
    with pytest.raises(UsageError):
        montage_image(batch, None, ncols=0)


def test_outline_and_patch_boxes() -> None:
    img = np.full((10, 10), 100, np.uint8)
    mask = np.zeros((10, 10), np.uint8)
    mask[2:8, 2:8] = 1
    rgb = outline_mask(img, mask, color=(255, 0, 0))
    assert rgb.shape == (10, 10, 3)
    assert rgb[2, 2].tolist() == [255, 0, 0] and rgb[2, 5].tolist() == [255, 0, 0]
    assert rgb[4, 4].tolist() == [100, 100, 100] and rgb[0, 0].tolist() == [100, 100, 100]
    boxes = draw_patch_boxes(img, [0, 5], [0, 5], [0, 2], 4)
    assert boxes[0, 0].tolist() == list(PATCH_COLORS[0]) and boxes[3, 1].tolist() == list(PATCH_COLORS[0])
    assert boxes[5, 5].tolist() == list(PATCH_COLORS[2]) and boxes[6, 6].tolist() == [100, 100, 100]
    with pytest.raises(UsageError, match="mask shape"):
        outline_mask(img, mask[:5])
