"""``sldpack.pipelines.study_plots``: the study's pictures read well (nothing hidden, round ticks, labelled grids)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sldpack.pipelines.study_plots import (
    MONTAGE_TILE_MAX,
    PALETTE,
    byte_ticks,
    plot_comparisons,
    plot_hm_vs_bytes,
    plot_montages,
)


def test_comparison_plot_colours_each_verdict(tmp_path: Path) -> None:
    def comp(lo: float, hi: float) -> dict[str, Any]:
        return {"a": "A", "b": "B", "hm_diff": (lo + hi) / 2, "ci95": [lo, hi], "per_seed_diff": [lo, hi]}

    green, red = (44, 160, 44), (214, 39, 40)
    for cis, want, absent in (([(0.1, 0.2)], green, red), ([(-0.3, -0.1)], red, green),
                              ([(-0.1, 0.1)], None, green)):
        plot_comparisons({"comparisons": [comp(*c) for c in cis]}, tmp_path / "c.png")
        with Image.open(tmp_path / "c.png") as im:
            colours = {c for _n, c in im.convert("RGB").getcolors(1 << 20)}
        assert absent not in colours and (want is None or want in colours)
    plot_comparisons({"comparisons": []}, tmp_path / "empty.png")  # a study without pairs still gets a picture
    assert (tmp_path / "empty.png").stat().st_size > 0


def _plot_pixels(path: Path, box: tuple[int, int, int, int]) -> Any:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB").crop(box))


def _bbox(px: Any, colour: tuple[int, int, int]) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero((px == np.array(colour)).all(-1))
    return None if xs.size == 0 else (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))


def test_hm_vs_bytes_shows_every_seed_of_identical_runs_and_round_ticks(tmp_path: Path) -> None:
    def row(method: str) -> dict[str, Any]:
        return {"row": method, "method": method, "k": 1, "arch": "convnet@1", "batchnorm": False, "variant": ""}

    # two rows, three seeds each, every run with the same bytes and HM: nothing may hide anything
    runs = [{**row(m), "seed": s, "hm": 0.7, "bytes": 7206} for m in ("sldd", "dd") for s in range(3)]
    plot_hm_vs_bytes({"rows": [row("sldd"), row("dd")], "runs": runs}, tmp_path / "p.png")
    plot = _plot_pixels(tmp_path / "p.png", (71, 41, 649, 499))  # inside the axes, without the legend
    a, b = _bbox(plot, PALETTE[0]), _bbox(plot, PALETTE[1])
    assert a is not None and b is not None  # the second row is not drawn over the first
    assert a[2] - a[0] >= 18 and b[2] - b[0] >= 18  # three dots side by side (7 px apart), not one
    assert a[2] < b[2]
    for lo, hi in ((7206, 7206), (1000, 1e8), (50, 60), (3e5, 9e6)):
        x0, x1, ticks = byte_ticks(lo, hi)
        assert x0 <= lo and hi <= x1 and 3 <= len(ticks) <= 10 and all(x0 <= t <= x1 for t in ticks)
        assert all(f"{t:.0e}"[0] in "125" for t in ticks)  # round values: 1, 2, 5 times a power of ten


def test_forest_plot_keeps_a_zero_width_ci_visible(tmp_path: Path) -> None:
    comps = [{"a": "A", "b": "B", "hm_diff": 0.1, "ci95": [0.1, 0.1], "per_seed_diff": [0.1, 0.1]}]
    plot_comparisons({"comparisons": comps}, tmp_path / "c.png")
    with Image.open(tmp_path / "c.png") as im:
        px = np.asarray(im.convert("RGB"))
    box = _bbox(px, (44, 160, 44))
    assert box is not None
    assert box[2] - box[0] >= 19 and box[3] - box[1] >= 10  # a bar with end caps, wider and taller than the marker
    # green on both sides of the (hollow, 4 px) marker: the bar is not hidden under it
    mid = (box[0] + box[2]) // 2
    green = (px == np.array((44, 160, 44))).all(-1)
    assert green[:, : mid - 6].any() and green[:, mid + 6:].any()


def test_montage_figure_has_one_row_per_table_row_and_one_column_per_seed(tmp_path: Path) -> None:
    colours = {("sldd", 0): (250, 0, 0), ("sldd", 1): (0, 250, 0), ("dd", 0): (0, 0, 250), ("dd", 1): (250, 250, 0)}
    rows = [{"row": m.upper(), "method": m, "k": 1, "arch": "convnet@1", "batchnorm": False, "variant": ""}
            for m in ("sldd", "dd")]
    results = []
    for (m, s), col in colours.items():
        cid = f"{m}-s{s}"
        (tmp_path / "cells" / cid / "run").mkdir(parents=True)
        size = (1000, 200) if (m, s) == ("dd", 1) else (100, 80)  # one too wide: scaled down
        Image.new("RGB", size, col).save(tmp_path / "cells" / cid / "run" / "montage.png")
        results.append({"id": cid, "config": {"method": m, "k": 1, "arch": "convnet@1", "batchnorm": False,
                                              "seed": s}})
    results.append({"id": "normal-s0", "config": {"method": "normal", "k": None, "arch": "convnet@1",
                                                  "batchnorm": False, "seed": 0}})  # no montage: no row
    assert plot_montages(tmp_path, {"rows": rows}, results, tmp_path / "m.png")
    with Image.open(tmp_path / "m.png") as im:
        px = np.asarray(im.convert("RGB"))
    boxes = {k: _bbox(px, c) for k, c in colours.items()}
    assert all(b is not None for b in boxes.values())
    size = {k: (b[2] - b[0] + 1, b[3] - b[1] + 1) for k, b in boxes.items() if b is not None}
    assert size[("sldd", 0)] == size[("sldd", 1)] == size[("dd", 0)] == (100, 80)
    assert size[("dd", 1)] == (MONTAGE_TILE_MAX, MONTAGE_TILE_MAX // 5)
    top = {k: b[1] for k, b in boxes.items() if b is not None}
    left = {k: b[0] for k, b in boxes.items() if b is not None}
    assert top[("sldd", 0)] == top[("sldd", 1)] < top[("dd", 0)] == top[("dd", 1)]  # rows: table rows
    assert left[("sldd", 0)] == left[("dd", 0)] < left[("sldd", 1)] == left[("dd", 1)]  # columns: seeds
    assert px.shape[1] > 100 + MONTAGE_TILE_MAX and px.shape[0] > 80 + MONTAGE_TILE_MAX // 5
    assert not plot_montages(tmp_path, {"rows": rows}, results[-1:], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
