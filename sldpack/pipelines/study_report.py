"""The tables of a ``sldp study`` folder: mean ± std per row, paired bootstrap comparisons, HM-vs-bytes plot.

Built only from ``study.json`` and the cell result files (numpy + Pillow; no torch), so a report can be
rebuilt at any time, also from a study that is still running (unfinished cells are listed as missing).

Paired comparison of rows A and B (same test images, same seeds): for every seed both rows ran, the HM
difference HM(A) − HM(B) on the test images; the bootstrap resamples the **test images** (with replacement,
the same resample for every seed and both rows, ``bootstrap`` times, seeded) and recomputes the mean over
seeds of that difference; the 95 % CI is the 2.5–97.5 percentile range. Resamples missing a class (HM
undefined) are dropped. It measures how much the conclusion depends on which test images were drawn, with
the seeds held fixed; the seed spread is reported beside it (per-seed differences).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sldpack.atomic import atomic_write_bytes
from sldpack.errors import DataError

__all__ = [
    "METRICS",
    "MONTAGE_TILE_MAX",
    "VAL_FRACTION_DEFAULT",
    "Comparison",
    "RowSummary",
    "byte_ticks",
    "cell_settings",
    "effective_settings",
    "hm_of",
    "load_results",
    "min_images",
    "paired_bootstrap_hm",
    "plot_comparisons",
    "plot_hm_vs_bytes",
    "plot_montages",
    "render_markdown",
    "row_label",
    "summarise",
    "write_report",
]

METRICS: tuple[tuple[str, str], ...] = (("sen", "Sen"), ("spe", "Spe"), ("hm", "HM"), ("auc", "AUC"),
                                        ("patch_acc", "patch acc"))


def hm_of(true: NDArray[Any], pred: NDArray[Any]) -> NDArray[np.float64]:
    """Image-level HM of Sen and Spe along the last axis (positive = 1); NaN where a class is absent.

    Works on one vector or a batch of resamples ``[..., n]``.
    """
    t = np.asarray(true).astype(bool)
    p = np.asarray(pred).astype(bool)
    npos = t.sum(-1)
    nneg = (~t).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sen = (t & p).sum(-1) / npos
        spe = (~t & ~p).sum(-1) / nneg
        hm = np.where(sen + spe > 0, 2 * sen * spe / (sen + spe), 0.0)
    out: NDArray[np.float64] = np.where((npos == 0) | (nneg == 0), np.nan, hm).astype(np.float64)
    return out


def paired_bootstrap_hm(true: NDArray[Any], pred_a: NDArray[Any], pred_b: NDArray[Any], *, resamples: int = 2000,
                        seed: int = 0) -> tuple[float, float, float]:
    """Mean over seeds of HM(A) − HM(B), and its bootstrap 95 % CI over test images.

    Args:
        true: ``[n]`` 0/1 labels of the test images.
        pred_a, pred_b: ``[seeds, n]`` 0/1 decisions of rows A and B (seed s of A paired with seed s of B).
        resamples: bootstrap resamples.
        seed: their seed.

    Returns:
        ``(difference on the test set, CI low, CI high)``.

    Raises:
        DataError: shapes that do not pair up.
    """
    t = np.asarray(true)
    a = np.atleast_2d(np.asarray(pred_a))
    b = np.atleast_2d(np.asarray(pred_b))
    if a.shape != b.shape or a.shape[1] != t.shape[0]:
        raise DataError(f"paired predictions need equal shapes [seeds, {t.shape[0]}], got {a.shape} and {b.shape}")
    point = float(np.mean(hm_of(t, a) - hm_of(t, b)))
    rng = np.random.default_rng(seed)
    diffs = np.empty(resamples, dtype=np.float64)
    step = max(1, 2_000_000 // max(1, t.size * a.shape[0]))  # bound the temporary arrays
    for s in range(0, resamples, step):
        m = min(step, resamples - s)
        idx = rng.integers(0, t.size, size=(m, t.size))
        tt = t[idx]                         # [m, n]
        da = hm_of(tt[:, None, :], a[:, idx].transpose(1, 0, 2))  # [m, seeds]
        db = hm_of(tt[:, None, :], b[:, idx].transpose(1, 0, 2))
        diffs[s:s + m] = np.mean(da - db, axis=1)
    ok = diffs[np.isfinite(diffs)]
    if ok.size == 0:
        return point, math.nan, math.nan
    lo, hi = np.percentile(ok, [2.5, 97.5])
    return point, float(lo), float(hi)


# --- loading ----------------------------------------------------------------------------------------------

def load_results(root: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``study.json`` and the finished cells' results (in the study's cell order).

    Raises:
        DataError: no study here, or an unreadable file.
    """
    r = Path(root)
    try:
        study = json.loads((r / "study.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{r}: not a study folder (study.json: {exc})") from exc
    out = []
    for cid in study.get("cells", []):
        p = r / "cells" / f"{cid}.json"
        if p.is_file():
            try:
                out.append(json.loads(p.read_text(encoding="utf-8")))
            except (OSError, ValueError) as exc:
                raise DataError(f"{p}: unreadable cell result ({exc})") from exc
    return study, out


RowKey = tuple[str, int | None, str, bool, str]
"""(method, k, arch, batch norm, ablation variant or "")."""


def _row_key(cfg: Mapping[str, Any]) -> RowKey:
    return (str(cfg["method"]), cfg["k"], str(cfg["arch"]), bool(cfg["batchnorm"]), str(cfg.get("variant", "")))


def row_label(method: str, k: int | None, arch: str, batchnorm: bool, *, show_arch: bool = False,
              show_bn: bool = False, variant: str = "") -> str:
    """``SLDD(2/class)``, ``DD(1/class)``, ``normal(all)``, ``normal(50/class)``, plus ``BN``/arch when they
    vary and ``[variant]`` for an ablation variant (k is per class: SLDD(1/class) on a 2-class set is the
    "SLDD(2)" of two images)."""
    if method == "normal":
        base = "normal(" + ("all" if k is None else f"{k}/class") + ")"
    else:
        base = f"{method.upper()}({k}/class)"
    if show_bn:
        base += " BN" if batchnorm else " no-BN"
    if show_arch:
        base += f" {arch}"
    if variant:
        base += f" [{variant}]"
    return base


def _label(key: RowKey, *, show_arch: bool, show_bn: bool) -> str:
    method, k, arch, bn, variant = key
    return row_label(method, k, arch, bn, show_arch=show_arch, show_bn=show_bn, variant=variant)


@dataclass
class RowSummary:
    """One row: its runs (one per seed) and mean ± sample std of each metric."""

    key: RowKey
    label: str
    runs: list[dict[str, Any]]

    def values(self, metric: str) -> list[float]:
        """The finite values of ``metric`` over the runs (``bytes``, ``wall_seconds`` or a metric name)."""
        vals = [r.get(metric) if metric in ("bytes", "wall_seconds", "n_params") else r["metrics"].get(metric)
                for r in self.runs]
        return [float(v) for v in vals if v is not None and math.isfinite(float(v))]

    def mean_std(self, metric: str) -> tuple[float, float]:
        """Mean and sample std (0 for one run; NaN for none)."""
        v = self.values(metric)
        if not v:
            return math.nan, math.nan
        return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0

    def to_obj(self) -> dict[str, Any]:
        """JSON-ready: label, seeds, mean/std per metric, bytes, params."""
        d: dict[str, Any] = {"row": self.label, "method": self.key[0], "k": self.key[1], "arch": self.key[2],
                             "batchnorm": self.key[3], "variant": self.key[4],
                             "seeds": [r["config"]["seed"] for r in self.runs]}
        for m in [m for m, _ in METRICS] + ["bytes", "wall_seconds", "n_params"]:
            mu, sd = self.mean_std(m)
            d[m] = {"mean": None if math.isnan(mu) else mu, "std": None if math.isnan(sd) else sd}
        return d


@dataclass
class Comparison:
    """Paired comparison of two rows (see the module docs)."""

    a: str
    b: str
    seeds: list[int]
    diff: float
    lo: float
    hi: float
    per_seed: list[float]

    @property
    def verdict(self) -> str:
        """``A > B``, ``A < B`` (CI excludes 0) or ``no clear difference``."""
        if math.isnan(self.lo):
            return "n/a"
        if self.lo > 0:
            return f"{self.a} > {self.b}"
        if self.hi < 0:
            return f"{self.a} < {self.b}"
        return "no clear difference"

    def to_obj(self) -> dict[str, Any]:
        """JSON-ready."""
        def f(v: float) -> float | None:
            return None if math.isnan(v) else round(v, 6)
        return {"a": self.a, "b": self.b, "seeds": self.seeds, "hm_diff": f(self.diff),
                "ci95": [f(self.lo), f(self.hi)], "per_seed_diff": [f(v) for v in self.per_seed],
                "verdict": self.verdict}


def _compare(ra: RowSummary, rb: RowSummary, *, resamples: int, seed: int) -> Comparison | None:
    by_a = {r["config"]["seed"]: r for r in ra.runs}
    by_b = {r["config"]["seed"]: r for r in rb.runs}
    seeds = sorted(set(by_a) & set(by_b))
    if not seeds:
        return None
    true = np.asarray(by_a[seeds[0]]["per_image"]["true"])
    if true.size == 0 or not bool(np.isin(true, [0, 1]).all()):
        return None
    for s in seeds:  # the same test images in the same order, or the pairing is meaningless
        for r in (by_a[s], by_b[s]):
            if r["per_image"]["true"] != by_a[seeds[0]]["per_image"]["true"] or \
                    r["per_image"]["names"] != by_a[seeds[0]]["per_image"]["names"]:
                raise DataError(f"rows {ra.label} and {rb.label} were evaluated on different test images")
    pa = np.array([by_a[s]["per_image"]["pred"] for s in seeds])
    pb = np.array([by_b[s]["per_image"]["pred"] for s in seeds])
    diff, lo, hi = paired_bootstrap_hm(true, pa, pb, resamples=resamples, seed=seed)
    per_seed = [float(v) for v in hm_of(true, pa) - hm_of(true, pb)]
    return Comparison(ra.label, rb.label, seeds, diff, lo, hi, per_seed)


def summarise(study: Mapping[str, Any], results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Rows, comparisons and the kind's extra table, as one JSON-ready document."""
    grid = study["grid"]
    kind = str(grid["kind"])
    show_bn = kind == "batchnorm"
    show_arch = len(grid["archs"]) > 1
    rows: dict[RowKey, RowSummary] = {}
    for r in results:
        key = _row_key(r["config"])
        if key not in rows:
            label = _label(key, show_arch=show_arch, show_bn=show_bn)
            if kind == "ablation" and key[0] != "normal" and not key[4]:
                label += " [baseline]"
            rows[key] = RowSummary(key, label, [])
        rows[key].runs.append(dict(r))
    ordered = list(rows.values())
    comps: list[Comparison] = []
    boot, bseed = int(grid.get("bootstrap", 2000)), int(grid.get("bootstrap_seed", 0))

    def add(a: RowSummary, b: RowSummary) -> None:
        c = _compare(a, b, resamples=boot, seed=bseed)
        if c is not None:
            comps.append(c)

    if kind == "ablation":  # the question of an ablation: does the variant beat the baseline?
        for ra in ordered:
            m, k, arch, bn, variant = ra.key
            if variant and (m, k, arch, bn, "") in rows:
                add(ra, rows[(m, k, arch, bn, "")])
    for ra in ordered:
        m, k, arch, bn, variant = ra.key
        if m == "sldd" and (("dd", k, arch, bn, variant) in rows):
            add(ra, rows[("dd", k, arch, bn, variant)])
    for ra in ordered:
        if ra.key[0] != "normal":
            for rb in ordered:
                if rb.key[0] == "normal" and rb.key[2:4] == ra.key[2:4]:
                    add(ra, rb)
    if kind == "batchnorm":
        for ra in ordered:
            m, k, arch, bn, variant = ra.key
            if bn and (m, k, arch, False, variant) in rows:
                add(ra, rows[(m, k, arch, False, variant)])
    doc: dict[str, Any] = {"kind": kind, "rows": [r.to_obj() for r in ordered],
                           "comparisons": [c.to_obj() for c in comps],
                           "runs": [_run_obj(r) for r in results],
                           "missing_cells": [c for c in study.get("cells", [])
                                             if c not in {r["id"] for r in results}],
                           "bootstrap": {"resamples": boot, "seed": bseed, "unit": "test image"}}
    if kind == "min-images":
        doc["min_images"] = min_images(ordered, float(grid.get("target_hm", 0.8)))
    return doc


def _run_obj(r: Mapping[str, Any]) -> dict[str, Any]:
    c = r["config"]
    return {"id": r["id"], "method": c["method"], "k": c["k"], "arch": c["arch"], "batchnorm": c["batchnorm"],
            "variant": c.get("variant", ""), "seed": c["seed"], **{m: r["metrics"].get(m) for m, _ in METRICS},
            "bytes": r["bytes"],
            "n_params": r.get("n_params"), "wall_seconds": r["wall_seconds"],
            "selected_iteration": r.get("selected_iteration"), "test_images": r["test"]["images"]}


def _finite(v: float) -> float | None:
    return None if math.isnan(v) else v


def min_images(rows: Sequence[RowSummary], target: float) -> list[dict[str, Any]]:
    """Per (architecture, method, batch norm): the smallest k whose mean HM reaches ``target`` (``None``
    when no k of the grid does), with the architecture's parameter count (the paper's Tables 5 and 6)."""
    groups: dict[tuple[str, str, bool], list[RowSummary]] = {}
    for r in rows:
        m, k, arch, bn, variant = r.key
        if m != "normal" and k is not None and not variant:
            groups.setdefault((arch, m, bn), []).append(r)
    out = []
    for (arch, m, bn), rs in groups.items():
        rs = sorted(rs, key=lambda r: int(r.key[1] or 0))
        hit = next((r for r in rs if not math.isnan(r.mean_std("hm")[0]) and r.mean_std("hm")[0] >= target), None)
        params = next((int(v) for r in rs for v in r.values("n_params")), None)
        out.append({"arch": arch, "method": m, "batchnorm": bn, "target_hm": target,
                    "min_k": None if hit is None else hit.key[1],
                    "hm_at_min_k": None if hit is None else hit.mean_std("hm")[0],
                    "tried": {str(r.key[1]): _finite(r.mean_std("hm")[0]) for r in rs}, "n_params": params})
    return out


# --- effective settings -----------------------------------------------------------------------------------

VAL_FRACTION_DEFAULT = 0.2
"""Held-out share of the training images for ``select = "val-*"`` when a grid does not set ``val_fraction``."""

# settings a cell sets from its row and seed (shown as the row, not as settings)
_PER_CELL = frozenset({"seed", "images_per_class", "mode"})
# DistillConfig fields whose None stands for a rule (from their docs), shown with it
_NONE_MEANS = {"lr_labels": "None (= lr)", "lr_lrs": "None (= lr / 10)"}


def cell_settings(cfg: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """What one cell ran with, defaults included: ``("distill", DistillConfig fields + val_fraction)``,
    ``("train", steps/batch/lr + architecture)`` or ``(method, its other settings)``; ``eval`` is separate.

    A distillation cell's config stores the grid's settings and, beside them, the distiller defaults of the
    version that ran it (``distill_defaults``); the cell overrides the per-cell fields as :func:`run_cell
    <sldpack.pipelines.study.run_cell>` does.
    """
    common = {"arch": cfg.get("arch"), "arch_options": dict(cfg.get("arch_options") or {}),
              "batchnorm": cfg.get("batchnorm"), "device": cfg.get("device"), "threads": cfg.get("threads")}
    if "distill" in cfg:
        eff = {**dict(cfg.get("distill_defaults") or {}), **dict(cfg["distill"]), **common}
        eff.setdefault("val_fraction", VAL_FRACTION_DEFAULT)
        return "distill", {k: v for k, v in eff.items() if k not in _PER_CELL}
    if "train" in cfg:
        return "train", {**dict(cfg["train"]), **common}
    skip = {"id", "method", "k", "seed", "data", "eval", "variant"}
    return str(cfg.get("method")), {**{k: v for k, v in cfg.items() if k not in skip}, **common}


def effective_settings(doc: Mapping[str, Any], results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Every setting the finished cells ran with (defaults included), JSON-ready.

    ``groups``: per kind of cell (``distill``, ``train``, ...), ``common`` (the value every such cell had)
    and ``by_row`` (row label -> the settings where that row differs); ``eval``: the evaluation settings
    (``by_row`` when rows differ); ``cells``: per cell its row, seed, selected iteration (of how many), the
    selection rule applied and its score, and the iteration or step a resumed run continued from.
    """
    labels = {(r["method"], r["k"], r["arch"], r["batchnorm"], r.get("variant", "")): r["row"] for r in doc["rows"]}
    per_group: dict[str, dict[str, dict[str, Any]]] = {}
    evals: dict[str, dict[str, Any]] = {}
    cells = []
    for r in results:
        cfg = r["config"]
        label = labels.get(_row_key(cfg), str(r.get("id")))
        group, eff = cell_settings(cfg)
        per_group.setdefault(group, {}).setdefault(label, eff)
        evals.setdefault(label, dict(cfg.get("eval") or {}))
        sel = r.get("selection") or {}
        cells.append({"id": r.get("id"), "row": label, "seed": cfg.get("seed"),
                      "selected_iteration": r.get("selected_iteration"),
                      "iterations": eff.get("iterations") if group == "distill" else None,
                      "rule": sel.get("rule"), "score": sel.get("score"),
                      "resumed_from": r.get("resumed_from") or r.get("resumed_from_step") or None})

    def split(by_label: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        keys = sorted({k for s in by_label.values() for k in s})
        common = {}
        for k in keys:
            vals = [json.dumps(s.get(k), sort_keys=True) for s in by_label.values()]
            if len(set(vals)) == 1 and all(k in s for s in by_label.values()):
                common[k] = next(iter(by_label.values()))[k]
        by_row = {lab: {k: v for k, v in s.items() if k not in common} for lab, s in by_label.items()}
        return {"common": common, "by_row": {lab: d for lab, d in by_row.items() if d}}

    return {"groups": {g: split(v) for g, v in per_group.items()}, "eval": split(evals), "cells": cells}


def _setting_text(key: str, value: Any) -> str:
    if value is None and key in _NONE_MEANS:
        return _NONE_MEANS[key]
    return f"`{json.dumps(value, sort_keys=True)}`"


_GROUP_TITLES = {"distill": "Distillation (every SLDD/DD cell: the `DistillConfig` each ran with, and the "
                            "held-out share `val_fraction` of `select = \"val-*\"`)",
                 "train": "Normal training"}


def _settings_markdown(settings: Mapping[str, Any] | None) -> list[str]:
    """The effective-settings and selected-iteration sections of ``table.md`` (none before a cell finished)."""
    if not settings or not settings["cells"]:
        return []
    lines = ["", "## Settings (every effective value, defaults included)"]
    for group, s in [*settings["groups"].items(), ("eval", settings["eval"])]:
        title = _GROUP_TITLES.get(group, "Evaluation (Eq. 9 delta, windows, chunk)" if group == "eval"
                                  else f"{group} rows")
        lines += ["", f"{title}:", "", "| setting | value |", "|---|---|"]
        lines += [f"| {k} | {_setting_text(k, v)} |" for k, v in s["common"].items()]
        if s["by_row"]:
            lines += ["", "Per row (where rows differ):", "", "| row | settings |", "|---|---|"]
            lines += [f"| {lab} | " + ", ".join(f"{k} {_setting_text(k, v)}" for k, v in d.items()) + " |"
                      for lab, d in s["by_row"].items()]
    cells = [c for c in settings["cells"] if c["selected_iteration"] is not None or c["resumed_from"]]
    if cells:
        seeds = sorted({c["seed"] for c in cells})
        lines += ["", "Selected iteration per cell (of the run's iterations; the rule that chose it and its "
                      "held-out score; \"resumed\": the run continued from that iteration's checkpoint):", "",
                  "| row | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---|" + "---|" * len(seeds)]
        rows: dict[str, dict[Any, str]] = {}
        for c in cells:
            txt = "n/a" if c["selected_iteration"] is None else str(c["selected_iteration"])
            if c["iterations"] is not None and c["selected_iteration"] is not None:
                txt += f" of {c['iterations']}"
            if c["rule"]:
                txt += f" ({c['rule']}" + (f" {c['score']:.3f}" if isinstance(c["score"], (int, float)) else "") + ")"
            if c["resumed_from"]:
                txt += f"; resumed from {c['resumed_from']}"
            rows.setdefault(c["row"], {})[c["seed"]] = txt
        lines += [f"| {lab} | " + " | ".join(v.get(s, "") for s in seeds) + " |" for lab, v in rows.items()]
    return lines


# --- rendering --------------------------------------------------------------------------------------------

def _pm(mu: float | None, sd: float | None, digits: int = 3) -> str:
    if mu is None or (isinstance(mu, float) and math.isnan(mu)):
        return "n/a"
    if sd is None or (isinstance(sd, float) and math.isnan(sd)):
        return f"{mu:.{digits}f}"
    return f"{mu:.{digits}f} ± {sd:.{digits}f}"


def render_markdown(study: Mapping[str, Any], doc: Mapping[str, Any]) -> str:
    """The study's tables as Markdown."""
    g = study["grid"]
    lines = [f"# sldp study: {doc['kind']}", ""]
    data = study.get("data", {})
    src = data.get("data") or (f"phantom(n={data.get('phantom')}, size={data.get('phantom_size')}, "
                               f"seed={data.get('phantom_seed')})")
    lines.append(f"Data: `{src}`; seeds {g['seeds']}; test split of the data's rule (MedMNIST: its own test "
                 "split). Mean ± sample std over seeds; HM = 2·Sen·Spe/(Sen+Spe) at image level.")
    arch_opts = g.get("arch_options") or {}
    lines.append("")
    lines.append(f"Settings: architectures {g['archs']}" + (f" {json.dumps(arch_opts, sort_keys=True)}" if arch_opts
                                                             else "") + f"; batch norm {g.get('batchnorm')}; "
                 f"distillation {json.dumps(dict(g.get('distill') or {}), sort_keys=True)}; normal training "
                 f"{json.dumps(dict(g.get('train') or {}), sort_keys=True)} (every value each cell ran with, defaults "
                 "included: \"Settings\" below). patch/class acc: I/N/P patch accuracy (whole-image "
                 "models: class accuracy over test images). Bytes: the `.sldp` file, or the trained network's "
                 "`.safetensors`; wall s: train/distil + evaluate, one cell.")
    if study.get("command"):
        lines += ["", "Command:", "", "```", " ".join(study["command"]), "```"]
    lines += ["", "| row | runs | Sen | Spe | **HM** | AUC | patch/class acc | bytes | wall s |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        def v(m: str, r: Mapping[str, Any] = r) -> str:
            return _pm(r[m]["mean"], r[m]["std"])
        nbytes = r["bytes"]["mean"]
        wall = r["wall_seconds"]["mean"]
        lines.append(f"| {r['row']} | {len(r['seeds'])} | {v('sen')} | {v('spe')} | **{v('hm')}** | {v('auc')} | "
                     f"{v('patch_acc')} | {'n/a' if nbytes is None else f'{nbytes:,.0f}'} | "
                     f"{'n/a' if wall is None else f'{wall:.0f}'} |")
    if doc["comparisons"]:
        b = doc["bootstrap"]
        lines += ["", f"Paired comparisons: HM(A) − HM(B), same seeds and test images; 95 % CI from "
                      f"{b['resamples']} bootstrap resamples of the test images (seed {b['seed']}).", "",
                  "| A | B | seeds | ΔHM | 95 % CI | per-seed ΔHM | verdict |", "|---|---|---|---|---|---|---|"]
        for c in doc["comparisons"]:
            ci = "n/a" if c["ci95"][0] is None else f"[{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}]"
            per = ", ".join("n/a" if x is None else f"{x:+.3f}" for x in c["per_seed_diff"])
            d = "n/a" if c["hm_diff"] is None else f"{c['hm_diff']:+.3f}"
            lines.append(f"| {c['a']} | {c['b']} | {len(c['seeds'])} | {d} | {ci} | {per} | {c['verdict']} |")
    if g.get("variants"):
        lines += ["", "Variants (settings that replace the grid's for that row; the baseline row has none):", "",
                  "| variant | settings |", "|---|---|"]
        for vname, over in g["variants"].items():
            lines.append(f"| {vname} | `{json.dumps(over, sort_keys=True)}` |")
    if "min_images" in doc:
        lines += ["", f"Smallest images per class reaching mean HM ≥ {g.get('target_hm')} (paper Table 5; "
                      "parameters as in Table 6):", "",
                  "| arch | method | BN | parameters | min k | HM at min k | HM per k tried |",
                  "|---|---|---|---|---|---|---|"]
        for m in doc["min_images"]:
            tried = ", ".join(f"{k}: {'n/a' if v is None or math.isnan(v) else f'{v:.3f}'}"
                              for k, v in m["tried"].items())
            lines.append(f"| {m['arch']} | {m['method'].upper()} | {'yes' if m['batchnorm'] else 'no'} | "
                         f"{m['n_params'] if m['n_params'] is not None else 'n/a'} | "
                         f"{m['min_k'] if m['min_k'] is not None else 'not reached'} | "
                         f"{_pm(m['hm_at_min_k'], None)} | {tried} |")
    if doc["missing_cells"]:
        lines += ["", f"Missing (not finished) cells: {', '.join(doc['missing_cells'])}"]
    lines += _settings_markdown(doc.get("settings"))
    lines += ["", "Per run: `runs.csv`; everything: `results.json`; plots: `hm_vs_bytes.png`, `comparisons.png`, "
                  "`montages.png` (the distilled images of every cell).", ""]
    return "\n".join(lines)


def _csv(rows: Sequence[Mapping[str, Any]], cols: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow(["" if r.get(c) is None else r.get(c) for c in cols])
    return buf.getvalue()


def _rows_csv(doc: Mapping[str, Any]) -> str:
    flat = []
    for r in doc["rows"]:
        d: dict[str, Any] = {"row": r["row"], "runs": len(r["seeds"])}
        for m in [m for m, _ in METRICS] + ["bytes", "wall_seconds"]:
            d[f"{m}_mean"], d[f"{m}_std"] = r[m]["mean"], r[m]["std"]
        flat.append(d)
    cols = ["row", "runs"] + [f"{m}_{s}" for m in [m for m, _ in METRICS] + ["bytes", "wall_seconds"]
                              for s in ("mean", "std")]
    return _csv(flat, cols)


_PALETTE = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (140, 86, 75),
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
    keys = [(r["method"], r["k"], r["arch"], r["batchnorm"], r.get("variant", "")) for r in doc["rows"]]
    by_row: dict[int, list[Mapping[str, Any]]] = {}
    for r in runs:
        key = (r["method"], r["k"], r["arch"], r["batchnorm"], r.get("variant", ""))
        by_row.setdefault(keys.index(key) if key in keys else -1, []).append(r)
    placed: list[tuple[float, float, float, float]] = []  # each row drawn: x, half width, y top, y bottom
    for i, rs in sorted(by_row.items()):
        col = _PALETTE[i % len(_PALETTE)] if i >= 0 else (0, 0, 0)
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
        col = _PALETTE[i % len(_PALETTE)]
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
    dr.text((10, 10), title or "paired HM(A) - HM(B) with 95 % bootstrap CI (dots: per seed)", fill=(0, 0, 0),
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

    labels = {(r["method"], r["k"], r["arch"], r["batchnorm"], r.get("variant", "")): r["row"] for r in doc["rows"]}
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
            tiles.setdefault(labels.get(_row_key(r["config"]), str(r["id"])), {})[int(r["config"]["seed"])] = tile
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


def write_report(root: str | Path) -> dict[str, Any]:
    """Write ``table.md``, ``rows.csv``, ``runs.csv``, ``comparisons.csv``, ``results.json``,
    ``hm_vs_bytes.png``, ``comparisons.png`` and (when cells have distilled images) ``montages.png`` into the
    study folder ``root``; return the JSON document (with ``settings``: :func:`effective_settings`)."""
    r = Path(root)
    study, results = load_results(r)
    doc = summarise(study, results)
    doc["settings"] = effective_settings(doc, results)
    atomic_write_bytes(r / "table.md", render_markdown(study, doc).encode("utf-8"))
    atomic_write_bytes(r / "rows.csv", _rows_csv(doc).encode("utf-8"))
    run_cols = ["id", "method", "k", "arch", "batchnorm", "variant", "seed", "sen", "spe", "hm", "auc", "patch_acc",
                "bytes", "n_params", "wall_seconds", "selected_iteration", "test_images"]
    atomic_write_bytes(r / "runs.csv", _csv(doc["runs"], run_cols).encode("utf-8"))
    comp_rows = [{**c, "ci_low": c["ci95"][0], "ci_high": c["ci95"][1],
                  "per_seed_diff": " ".join("" if x is None else f"{x:.6f}" for x in c["per_seed_diff"]),
                  "seeds": " ".join(map(str, c["seeds"]))} for c in doc["comparisons"]]
    atomic_write_bytes(r / "comparisons.csv", _csv(comp_rows, ["a", "b", "seeds", "hm_diff", "ci_low", "ci_high",
                                                               "per_seed_diff", "verdict"]).encode("utf-8"))
    atomic_write_bytes(r / "results.json", (json.dumps({"study": study, **doc}, indent=1, allow_nan=False)
                                            + "\n").encode("utf-8"))
    plot_hm_vs_bytes(doc, r / "hm_vs_bytes.png", title=f"sldp study {doc['kind']}: test HM vs stored bytes")
    plot_comparisons(doc, r / "comparisons.png", title=f"sldp study {doc['kind']}: paired HM(A) - HM(B), 95 % "
                     "bootstrap CI over test images (dots: seeds)")
    plot_montages(r, doc, results, r / "montages.png",
                  title=f"sldp study {doc['kind']}: distilled images per cell (rows: table rows; columns: seeds)")
    return doc
