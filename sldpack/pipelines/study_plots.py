"""The pictures of a ``sldp study`` folder (Pillow only, no torch): test HM against stored bytes, the forest
plot of the paired comparisons, and the distilled images of every cell in one figure.

Each takes the JSON document of :func:`sldpack.pipelines.study_report.summarise` (``rows``, ``runs``,
``comparisons``) and writes its PNG atomically.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sldpack.atomic import atomic_write_bytes

__all__ = [
    "MONTAGE_TILE_MAX",
    "PALETTE",
    "byte_ticks",
    "plot_comparisons",
    "plot_hm_vs_bytes",
    "plot_montages",
]


def _key(r: Mapping[str, Any]) -> tuple[Any, ...]:
    """The row a row entry, run entry or cell config belongs to: (method, k, arch, batch norm, variant)."""
    return (r["method"], r["k"], r["arch"], r["batchnorm"], r.get("variant", ""))


PALETTE = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (140, 86, 75),
            (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (0, 0, 128), (255, 215, 0),
            (0, 100, 0), (255, 0, 255), (128, 0, 0), (0, 255, 255), (70, 70, 70), (250, 160, 160),
            (160, 250, 160), (160, 160, 250)]


def _fmt_bytes(b: float) -> str:
    """``512 B``, ``2 KB``, ``1.5 MB`` (decimal units, as file sizes are listed)."""
    for unit, f in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if b >= f:
            v = b / f
            return f"{v:.0f} {unit}" if v >= 10 or v == int(v) else f"{v:.1f} {unit}"
    return f"{b:.0f} B"


def byte_ticks(lo: float, hi: float) -> tuple[float, float, list[float]]:
    """A log-scale axis covering ``[lo, hi]`` bytes with at least three round ticks (1-2-5 per decade, only
    the decades when that makes more than ten): returns ``(axis low, axis high, ticks)``."""
    lo, hi = max(1.0, min(lo, hi)), max(1.0, lo, hi)
    a, b = lo / 1.3, hi * 1.3
    while True:
        cand = [m * 10.0 ** e for e in range(math.floor(math.log10(a)) - 1, math.ceil(math.log10(b)) + 1)
                for m in (1, 2, 5)]
        ticks = [t for t in cand if a <= t <= b]
        if len(ticks) > 10:
            ticks = [t for t in ticks if round(t / 10 ** math.floor(math.log10(t) + 1e-9)) == 1]
        if len(ticks) >= 3:
            return a, b, ticks
        a, b = a / 1.25, b * 1.25


def _jitter(i: int, n: int, spacing: float = 7.0) -> float:
    """Pixel offset of the ``i``-th of ``n`` runs of a row: spread evenly around 0, so runs with the same
    bytes and HM stay visible as separate dots."""
    return (i - (n - 1) / 2) * spacing


def _clash(placed: Sequence[tuple[float, float, float, float]], x: float, half: float, top: float,
           bottom: float) -> tuple[float, float, float, float] | None:
    """The first drawn row (x, half width, y top, y bottom) that a row at ``x`` would overlap, if any."""
    return next((p for p in placed if abs(x - p[0]) < p[1] + half and top < p[3] and p[2] < bottom), None)


def plot_hm_vs_bytes(doc: Mapping[str, Any], path: str | Path, *, title: str = "") -> None:
    """PNG: test HM (y) against stored bytes (x, log scale, round ticks). Per row (one colour) its mean over
    seeds (a thick horizontal line) with a ± std bar, and every seed's run (a dot, spread sideways so
    identical results do not hide each other; rows at the same place are set side by side)."""
    from PIL import Image, ImageDraw, ImageFont

    runs = [r for r in doc["runs"] if r.get("hm") is not None and r.get("bytes")]
    w, h, ml, mr, mt, mb = 900, 560, 70, 250, 40, 60
    img = Image.new("RGB", (w, h), "white")
    dr = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=13)
    pw, ph = w - ml - mr, h - mt - mb
    dr.rectangle([ml, mt, ml + pw, mt + ph], outline=(0, 0, 0))
    dr.text((ml, 10), title or "test HM vs stored bytes", fill=(0, 0, 0), font=font)
    nbytes = [float(r["bytes"]) for r in runs] or [1e3, 1e6]
    a, b, ticks = byte_ticks(min(nbytes), max(nbytes))
    la, lb = math.log10(a), math.log10(b)

    def px(v: float) -> float:
        return ml + 12 + (math.log10(v) - la) / (lb - la) * (pw - 24)  # 12 px inside: room for the spread

    def py(v: float) -> float:
        return mt + (1.0 - v) * ph

    for t in ticks:
        dr.line([px(t), mt, px(t), mt + ph], fill=(235, 235, 235))
        dr.line([px(t), mt + ph, px(t), mt + ph + 5], fill=(0, 0, 0))
        lab = _fmt_bytes(t)
        dr.text((px(t) - dr.textlength(lab, font=font) / 2, mt + ph + 8), lab, fill=(0, 0, 0), font=font)
    for i in range(11):
        v = i / 10
        dr.line([ml - 5, py(v), ml, py(v)], fill=(0, 0, 0))
        if i % 2 == 0:
            dr.line([ml, py(v), ml + pw, py(v)], fill=(225, 225, 225))
            dr.text((ml - 40, py(v) - 7), f"{v:.1f}", fill=(0, 0, 0), font=font)
    dr.text((ml + pw // 2 - 90, h - 25), "stored bytes (log scale)", fill=(0, 0, 0), font=font)
    dr.text((8, mt + ph // 2), "HM", fill=(0, 0, 0), font=font)
    keys = [_key(r) for r in doc["rows"]]
    by_row: dict[int, list[Mapping[str, Any]]] = {}
    for r in runs:
        key = _key(r)
        by_row.setdefault(keys.index(key) if key in keys else -1, []).append(r)
    placed: list[tuple[float, float, float, float]] = []  # each row drawn: x, half width, y top, y bottom
    for i, rs in sorted(by_row.items()):
        col = PALETTE[i % len(PALETTE)] if i >= 0 else (0, 0, 0)
        hms = [float(r["hm"]) for r in rs]
        mu = float(np.mean(hms))
        sd = float(np.std(hms, ddof=1)) if len(hms) > 1 else 0.0
        x_mean = px(10 ** float(np.mean([math.log10(float(r["bytes"])) for r in rs])))
        # rows whose dots or bars would overlap are set side by side, not on top of each other
        half = max(8.0, abs(_jitter(0, len(rs))) + 4)
        y_top, y_bot = py(min(1.0, max([*hms, mu + sd]))) - 5, py(max(0.0, min([*hms, mu - sd]))) + 5
        dx = 0.0
        hit = _clash(placed, x_mean, half, y_top, y_bot)
        while hit is not None:
            dx = hit[0] + hit[1] + half + 2 - x_mean
            hit = _clash(placed, x_mean + dx, half, y_top, y_bot)
        x_mean += dx
        placed.append((x_mean, half, y_top, y_bot))
        y_lo, y_hi = py(max(0.0, mu - sd)), py(min(1.0, mu + sd))
        y = py(mu)
        # the mean: a thick line across the row's dots (black-edged), the std: a bar with caps; the dots on top
        dr.line([x_mean - half - 3, y, x_mean + half + 3, y], fill=(0, 0, 0), width=6)
        dr.line([x_mean - half - 2, y, x_mean + half + 2, y], fill=col, width=3)
        dr.line([x_mean, y_lo, x_mean, y_hi], fill=col, width=2)
        for yc in (y_lo, y_hi):
            dr.line([x_mean - 6, yc, x_mean + 6, yc], fill=col, width=2)
        for j, r in enumerate(sorted(rs, key=lambda r: r.get("seed", 0))):
            x, yd = px(float(r["bytes"])) + dx + _jitter(j, len(rs)), py(float(r["hm"]))
            dr.ellipse([x - 3, yd - 3, x + 3, yd + 3], fill=col, outline=(0, 0, 0))
    x0 = ml + pw + 15
    for i, lab in enumerate(r["row"] for r in doc["rows"]):
        col = PALETTE[i % len(PALETTE)]
        y = mt + 10 + 20 * i
        dr.rectangle([x0, y, x0 + 10, y + 10], fill=col, outline=(0, 0, 0))
        dr.text((x0 + 17, y - 2), lab, fill=(0, 0, 0), font=font)
    y = mt + 10 + 20 * len(doc["rows"]) + 10
    dr.line([x0 - 2, y + 5, x0 + 12, y + 5], fill=(0, 0, 0), width=4)
    dr.line([x0 + 5, y - 6, x0 + 5, y + 16], fill=(0, 0, 0), width=2)
    dr.text((x0 + 17, y - 2), "row mean ± std over seeds", fill=(0, 0, 0), font=font)
    dr.ellipse([x0 + 2, y + 22, x0 + 8, y + 28], fill=(150, 150, 150), outline=(0, 0, 0))
    dr.text((x0 + 17, y + 18), "one seed (spread sideways)", fill=(0, 0, 0), font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


_MIN_CI_HALF_PX = 10.0
"""Half the narrowest drawn CI bar of the forest plot (wider than its marker, so the bar is never hidden)."""


def plot_comparisons(doc: Mapping[str, Any], path: str | Path, *, title: str = "") -> None:
    """PNG forest plot: one line per paired comparison, ΔHM (hollow circle) with its 95 % CI (bar with end
    caps, drawn at least 20 px wide so a short or zero-width interval stays visible) and the per-seed
    differences (small dots below the bar), a vertical line at 0; green when the CI is above 0, red below,
    grey across."""
    from PIL import Image, ImageDraw, ImageFont

    comps = [c for c in doc["comparisons"] if c["hm_diff"] is not None]
    font = ImageFont.load_default(size=13)
    labels = [f"{c['a']} vs {c['b']}" for c in comps]  # ASCII: Pillow's built-in font has no minus or delta
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    ml = 20 + max([int(probe.textlength(t, font=font)) for t in labels] + [100])
    w, row_h, mt, mb, mr = ml + 520, 26, 40, 50, 30
    h = mt + mb + row_h * max(1, len(comps))
    img = Image.new("RGB", (w, h), "white")
    dr = ImageDraw.Draw(img)
    dr.text((10, 10), title or "paired HM(A) - HM(B) with 95 % seed-aware CI (dots: per seed)", fill=(0, 0, 0),
            font=font)
    vals = [v for c in comps for v in [c["hm_diff"], *(c["ci95"] or []), *c["per_seed_diff"]] if v is not None]
    span = max([0.02] + [abs(float(v)) for v in vals])
    step = next(s for s in (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5) if span / s <= 4)  # round tick values
    n_ticks = math.ceil(span / step - 1e-9)
    span = n_ticks * step
    pw = w - ml - mr

    def px(v: float) -> float:
        return float(ml + (v + span) / (2 * span) * pw)

    top, bottom = mt, mt + row_h * max(1, len(comps))
    for i in range(-n_ticks, n_ticks + 1):
        v = step * i
        dr.line([px(v), top, px(v), bottom], fill=(225, 225, 225) if i else (0, 0, 0))
        lab = f"{v:+.2f}" if i else "0"
        dr.text((px(v) - dr.textlength(lab, font=font) / 2, bottom + 6), lab, fill=(0, 0, 0), font=font)
    dr.text((ml + pw // 2 - 60, h - 22), "HM(A) - HM(B)", fill=(0, 0, 0), font=font)
    for i, (c, lab) in enumerate(zip(comps, labels, strict=True)):
        y = mt + row_h * i + row_h // 2
        lo, hi = c["ci95"] if c["ci95"] and c["ci95"][0] is not None else (None, None)
        col = (128, 128, 128)
        for v in c["per_seed_diff"]:  # below the bar, so they never hide it
            if v is not None:
                dr.ellipse([px(v) - 2, y + 7, px(v) + 2, y + 11], fill=(90, 90, 90))
        if lo is not None and hi is not None:
            col = (44, 160, 44) if lo > 0 else (214, 39, 40) if hi < 0 else (128, 128, 128)
            # drawn at least 20 px wide, end caps taller than the marker: a short (or zero-width) CI stays visible
            mid, half = (px(lo) + px(hi)) / 2, max(_MIN_CI_HALF_PX, (px(hi) - px(lo)) / 2)
            dr.line([mid - half, y, mid + half, y], fill=col, width=4)
            for xe in (mid - half, mid + half):
                dr.line([xe, y - 7, xe, y + 5], fill=col, width=2)
        x = px(c["hm_diff"])
        # a hollow marker: the bar shows through it
        dr.ellipse([x - 4, y - 4, x + 4, y + 4], outline=(0, 0, 0), width=2)
        dr.text((10, y - 8), lab, fill=(0, 0, 0), font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


MONTAGE_TILE_MAX = 360
"""Widest a cell's montage is drawn in ``montages.png`` (wider ones are scaled down, smaller ones kept)."""


def plot_montages(root: str | Path, doc: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
                  path: str | Path, *, title: str = "") -> bool:
    """One PNG of every finished cell's distilled montage (``cells/ID/run/montage.png``): one row per row of
    the table that has images, one column per seed, labelled; a cell without a montage is a grey box.

    Returns:
        Whether a figure was written (``False``: no cell has a montage, e.g. only normal-training rows).
    """
    from PIL import Image, ImageDraw, ImageFont

    labels = {_key(r): r["row"] for r in doc["rows"]}
    order = list(labels.values())
    tiles: dict[str, dict[int, Any]] = {}
    for r in results:
        p = Path(root) / "cells" / str(r["id"]) / "run" / "montage.png"
        if p.is_file():
            try:
                with Image.open(p) as im:
                    tile = im.convert("RGB")
            except OSError:
                continue  # a damaged montage is a missing one; the figure is a convenience
            if tile.width > MONTAGE_TILE_MAX:
                tile = tile.resize((MONTAGE_TILE_MAX, max(1, round(tile.height * MONTAGE_TILE_MAX / tile.width))),
                                   Image.Resampling.LANCZOS)
            tiles.setdefault(labels.get(_key(r["config"]), str(r["id"])), {})[int(r["config"]["seed"])] = tile
    if not tiles:
        return False
    rows = sorted(tiles, key=lambda lab: order.index(lab) if lab in order else len(order))
    seeds = sorted({s for t in tiles.values() for s in t})
    font = ImageFont.load_default(size=14)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    pad, head = 10, 50
    ml = pad + max(int(probe.textlength(lab, font=font)) for lab in rows) + pad
    col_w = [max([t[s].width for t in tiles.values() if s in t] + [60]) for s in seeds]
    row_h = [max([t.height for t in tiles[lab].values()] + [30]) for lab in rows]
    w = ml + sum(cw + pad for cw in col_w)
    h = head + sum(rh + pad for rh in row_h)
    img = Image.new("RGB", (w, h), "white")
    dr = ImageDraw.Draw(img)
    dr.text((pad, 8), title or "distilled images of every cell (rows: table rows; columns: seeds)",
            fill=(0, 0, 0), font=font)
    xs = [ml + sum(cw + pad for cw in col_w[:j]) for j in range(len(seeds))]
    for x, cw, s in zip(xs, col_w, seeds, strict=True):
        lab = f"seed {s}"
        dr.text((x + (cw - probe.textlength(lab, font=font)) / 2, head - 20), lab, fill=(0, 0, 0), font=font)
    y = head
    for lab, rh in zip(rows, row_h, strict=True):
        dr.line([pad, y - pad // 2, w - pad, y - pad // 2], fill=(210, 210, 210))
        dr.text((pad, y + rh // 2 - 8), lab, fill=(0, 0, 0), font=font)
        for x, cw, s in zip(xs, col_w, seeds, strict=True):
            t = tiles[lab].get(s)
            if t is None:
                dr.rectangle([x, y, x + cw - 1, y + rh - 1], fill=(235, 235, 235))
                dr.text((x + 6, y + 6), "no montage", fill=(110, 110, 110), font=font)
            else:
                img.paste(t, (x, y))
        y += rh + pad
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return True
