"""The tables of a ``sldp study`` folder: mean ± std per row, paired bootstrap comparisons, HM-vs-bytes plot.

Built only from ``study.json`` and the cell result files (numpy + Pillow; no torch), so a report can be
rebuilt at any time, also from a study that is still running (unfinished cells are listed as missing).

Paired comparison of rows A and B (same test images, same seeds): the mean over seeds of HM(A) − HM(B)
on the test images, with two 95 % intervals (method and measured coverage: :mod:`sldpack.pipelines.stats`):
the image-level one (bootstrap over the **test images**, the seeds held fixed: ``bootstrap`` seeded
resamples, the same for every seed and both rows) and the seed-aware one (that image part plus the spread of
the per-seed differences, t with Welch–Satterthwaite degrees of freedom). The verdict comes from the
seed-aware interval (from the image-level one for a single seed, which the table says).
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

from sldpack.atomic import atomic_write_bytes
from sldpack.errors import DataError
from sldpack.pipelines.selection import DEFAULT_VAL_FRACTION
from sldpack.pipelines.stats import PairedInterval, hm_of, seed_aware_interval
from sldpack.pipelines.study_plots import plot_comparisons, plot_hm_vs_bytes, plot_montages

__all__ = [
    "METRICS",
    "Comparison",
    "RowSummary",
    "cell_settings",
    "effective_settings",
    "load_results",
    "min_images",
    "render_markdown",
    "row_label",
    "summarise",
    "write_report",
]

METRICS: tuple[tuple[str, str], ...] = (("sen", "Sen"), ("spe", "Spe"), ("hm", "HM"), ("auc", "AUC"),
                                        ("patch_acc", "patch acc"))


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
    """``SLDD(2/class)``, ``DD(1/class)``, ``random(1/class)``, ``normal(all)``, ``normal(50/class)``,
    ``trivial (mean intensity)``, plus ``BN``/arch when they vary and ``[variant]`` for an ablation variant
    (k is per class: SLDD(1/class) on a 2-class set is the "SLDD(2)" of two images)."""
    if method == "normal":
        base = "normal(" + ("all" if k is None else f"{k}/class") + ")"
    elif method == "trivial":
        return "trivial (mean intensity)"  # no network: architecture and batch norm do not apply
    elif method == "random":
        base = f"random({k}/class)"
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
        vals = [r.get(metric) if metric in ("bytes", "wall_seconds", "n_params", "delta")
                else (r.get("metrics_default_delta") or {}).get("hm") if metric == "hm_default_delta"
                else r["metrics"].get(metric) for r in self.runs]
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
        for m in [m for m, _ in METRICS] + ["bytes", "wall_seconds", "n_params", "delta", "hm_default_delta"]:
            mu, sd = self.mean_std(m)
            d[m] = {"mean": None if math.isnan(mu) else mu, "std": None if math.isnan(sd) else sd}
        return d


@dataclass
class Comparison:
    """Paired comparison of two rows (see the module docs)."""

    a: str
    b: str
    seeds: list[int]
    interval: PairedInterval
    per_seed: list[float]

    @property
    def verdict(self) -> str:
        """``A > B``, ``A < B`` (the verdict's CI excludes 0) or ``no clear difference``."""
        return self.interval.verdict(self.a, self.b)

    def to_obj(self) -> dict[str, Any]:
        """JSON-ready: ``ci95`` is the interval the verdict used (``interval_used`` says which); both
        intervals are listed."""
        def f(v: float) -> float | None:
            return None if math.isnan(v) else round(v, 6)
        iv = self.interval
        return {"a": self.a, "b": self.b, "seeds": self.seeds, "hm_diff": f(iv.diff),
                "ci95": [f(v) for v in iv.verdict_ci],
                "ci95_image": [f(v) for v in iv.image_ci],
                "ci95_seed_aware": None if iv.seed_ci is None else [f(v) for v in iv.seed_ci],
                "seed_df": None if math.isnan(iv.df) or math.isinf(iv.df) else round(iv.df, 3),
                "interval_used": iv.verdict_basis,
                "per_seed_diff": [f(v) for v in self.per_seed], "verdict": self.verdict}


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
    interval = seed_aware_interval(true, pa, pb, resamples=resamples, seed=seed)
    per_seed = [float(v) for v in hm_of(true, pa) - hm_of(true, pb)]
    return Comparison(ra.label, rb.label, seeds, interval, per_seed)


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
    # the baselines' questions: does a distilled file beat k real images (same k), and a brightness threshold?
    trivial = [r for r in ordered if r.key[0] == "trivial"]
    for ra in ordered:
        m, k, arch, bn, variant = ra.key
        if m in ("sldd", "dd") and ("random", k, arch, bn, "") in rows:
            add(ra, rows[("random", k, arch, bn, "")])
        if m in ("sldd", "dd"):
            for rt in trivial:
                add(ra, rt)
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
                           "bootstrap": {"resamples": boot, "seed": bseed, "unit": "test image",
                                         "verdict_interval": "seed-aware: image bootstrap variance + per-seed "
                                                             "spread / seeds, t with Welch-Satterthwaite df "
                                                             "(sldpack.pipelines.stats)"}}
    if kind == "min-images":
        doc["min_images"] = min_images(ordered, float(grid.get("target_hm", 0.8)))
    return doc


def _run_obj(r: Mapping[str, Any]) -> dict[str, Any]:
    c = r["config"]
    return {"id": r["id"], "method": c["method"], "k": c["k"], "arch": c["arch"], "batchnorm": c["batchnorm"],
            "variant": c.get("variant", ""), "seed": c["seed"], **{m: r["metrics"].get(m) for m, _ in METRICS},
            "delta": r.get("delta"), "delta_source": r.get("delta_source"),
            "hm_default_delta": (r.get("metrics_default_delta") or {}).get("hm"),
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
        if m not in ("normal", "trivial") and k is not None and not variant:
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
        eff.setdefault("val_fraction", DEFAULT_VAL_FRACTION)  # the grid did not set it
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
    eq9 = any(r.get("delta") is not None for r in doc["runs"])
    if eq9:  # Eq. (9) rows: the delta each was evaluated at, and HM at the paper's delta beside it
        srcs = sorted({str(r.get("delta_source")) for r in doc["runs"] if r.get("delta_source")})
        lines += ["", "Eq. (9) delta: the file's calibrated delta (chosen on the held-out training images with "
                      "the iterate) where it carries one, else the paper's 0.4 (sources here: "
                      f"{', '.join(srcs)}); HM at 0.4 beside it."
                  + (" The trivial row has its own threshold, fitted on the training split."
                     if any(r["method"] == "trivial" for r in doc["rows"]) else "")]
    extra_h, extra_s = (" δ | HM at δ=0.4 |", "---|---|") if eq9 else ("", "")
    lines += ["", f"| row | runs | Sen | Spe | **HM** | AUC |{extra_h} patch/class acc | bytes | wall s |",
              f"|---|---|---|---|---|---|{extra_s}---|---|---|"]
    for r in doc["rows"]:
        def v(m: str, r: Mapping[str, Any] = r) -> str:
            return _pm(r[m]["mean"], r[m]["std"])
        nbytes = r["bytes"]["mean"]
        wall = r["wall_seconds"]["mean"]
        extra = ""
        if eq9:
            dl = r.get("delta") or {"mean": None, "std": None}
            hd = r.get("hm_default_delta") or {"mean": None, "std": None}
            extra = f" {_pm(dl['mean'], dl['std'], 2)} | {_pm(hd['mean'], hd['std'])} |"
        lines.append(f"| {r['row']} | {len(r['seeds'])} | {v('sen')} | {v('spe')} | **{v('hm')}** | {v('auc')} |"
                     f"{extra} {v('patch_acc')} | {'n/a' if nbytes is None else f'{nbytes:,.0f}'} | "
                     f"{'n/a' if wall is None else f'{wall:.0f}'} |")
    if doc["comparisons"]:
        b = doc["bootstrap"]
        lines += ["", "Paired comparisons: HM(A) − HM(B), same seeds and test images. Two 95 % intervals: "
                      f"image-level ({b['resamples']} bootstrap resamples of the test images, seed {b['seed']}, the "
                      "seeds held fixed) and seed-aware (that variance plus the per-seed differences' spread over "
                      "the number of seeds, Student t with Welch–Satterthwaite degrees of freedom: it widens when "
                      "one seed disagrees). The verdict uses the seed-aware interval (the image-level one for a "
                      "single seed, marked ¹).", "",
                  "| A | B | seeds | ΔHM | 95 % CI image-level | 95 % CI seed-aware | per-seed ΔHM | verdict |",
                  "|---|---|---|---|---|---|---|---|"]

        def ci(v: Sequence[float | None] | None) -> str:
            return "n/a" if v is None or v[0] is None or v[1] is None else f"[{v[0]:+.3f}, {v[1]:+.3f}]"

        for c in doc["comparisons"]:
            per = ", ".join("n/a" if x is None else f"{x:+.3f}" for x in c["per_seed_diff"])
            d = "n/a" if c["hm_diff"] is None else f"{c['hm_diff']:+.3f}"
            seed_ci = c.get("ci95_seed_aware")
            mark = "" if seed_ci is not None else " ¹"
            lines.append(f"| {c['a']} | {c['b']} | {len(c['seeds'])} | {d} | {ci(c.get('ci95_image', c['ci95']))} | "
                         f"{ci(seed_ci) if seed_ci is not None else '– (1 seed)'} | {per} | {c['verdict']}{mark} |")
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
                "delta", "delta_source", "hm_default_delta", "bytes", "n_params", "wall_seconds",
                "selected_iteration", "test_images"]
    atomic_write_bytes(r / "runs.csv", _csv(doc["runs"], run_cols).encode("utf-8"))
    comp_rows = [{**c, "ci_low": c["ci95"][0], "ci_high": c["ci95"][1],
                  "image_ci_low": c["ci95_image"][0], "image_ci_high": c["ci95_image"][1],
                  "per_seed_diff": " ".join("" if x is None else f"{x:.6f}" for x in c["per_seed_diff"]),
                  "seeds": " ".join(map(str, c["seeds"]))} for c in doc["comparisons"]]
    atomic_write_bytes(r / "comparisons.csv", _csv(comp_rows, ["a", "b", "seeds", "hm_diff", "ci_low", "ci_high",
                                                               "interval_used", "image_ci_low", "image_ci_high",
                                                               "per_seed_diff", "verdict"]).encode("utf-8"))
    atomic_write_bytes(r / "results.json", (json.dumps({"study": study, **doc}, indent=1, allow_nan=False)
                                            + "\n").encode("utf-8"))
    plot_hm_vs_bytes(doc, r / "hm_vs_bytes.png", title=f"sldp study {doc['kind']}: test HM vs stored bytes")
    plot_comparisons(doc, r / "comparisons.png", title=f"sldp study {doc['kind']}: paired HM(A) - HM(B), 95 % "
                     "seed-aware CI (dots: seeds)")
    plot_montages(r, doc, results, r / "montages.png",
                  title=f"sldp study {doc['kind']}: distilled images per cell (rows: table rows; columns: seeds)")
    return doc
