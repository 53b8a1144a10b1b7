"""How a study cell's test evaluation is recorded (torch-free): the per-image rows the paired intervals
resample, Eq. (9)'s delta (the grid's, else the file's decision rule, else the paper's) and the metrics at
the paper's delta beside it, and the ``trivial`` row, which has no network to evaluate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from sldpack.medical.detection import DEFAULT_DELTA
from sldpack.pipelines.inputs import DataSpec

__all__ = ["cell_delta", "fixed_delta", "metrics_at", "per_image", "trivial_cell"]


def per_image(ev: Any) -> dict[str, list[Any]]:
    """Per test image: true label, decision, score (what the paired bootstrap resamples)."""
    if ev.detection is not None:
        det = ev.detection
        return {"names": [str(row["name"]) for row in ev.per_image],
                "true": [int(v) for v in det.true_labels], "pred": [int(v) for v in det.decisions],
                "score": [float(v) if math.isfinite(v) else None for v in det.scores]}
    names = [str(r["name"]) for r in ev.per_image]
    p_keys = [k for k in (ev.per_image[0].keys() if ev.per_image else ()) if k.startswith("p_")]
    return {"names": names, "true": [int(r["true_label"]) for r in ev.per_image],
            "pred": [int(r["predicted"]) for r in ev.per_image],
            "score": [float(ev.per_image[i][p_keys[-1]]) for i in range(len(ev.per_image))] if p_keys else []}


def fixed_delta(cfg: Mapping[str, Any]) -> float:
    """The grid's ``[eval] delta``, or the paper's when it leaves the delta to the file."""
    d = cfg["eval"].get("delta", "file")
    return DEFAULT_DELTA if d == "file" else float(d)


def cell_delta(cfg: Mapping[str, Any], decision: Mapping[str, Any] | None) -> tuple[float, str]:
    """Eq. (9)'s delta for the test images and where it came from: the grid's ``[eval] delta`` when set,
    else the file's decision rule (``calibrated`` or ``default``), else the paper's 0.4."""
    d = cfg["eval"].get("delta", "file")
    if d != "file":
        return float(d), "grid"
    if decision is not None and decision.get("rule") == "eq9":
        return float(decision["delta"]), str(decision.get("delta_source", "default"))
    return DEFAULT_DELTA, "default"


def metrics_at(det: Any, delta: float) -> dict[str, float | None]:
    """Sen/Spe/HM of Eq. (9) at another delta, from the same image scores (no second forward pass)."""
    from sldpack.medical.detection import decide
    from sldpack.medical.metrics import binary_metrics

    t = det.true_labels
    known = t >= 0
    if not known.any():
        return {"delta": delta, "sen": None, "spe": None, "hm": None}
    m = binary_metrics(t[known], decide(det.scores[known], delta))

    def num(v: float) -> float | None:
        return float(v) if math.isfinite(v) else None

    return {"delta": delta, "sen": num(m.sensitivity), "spe": num(m.specificity), "hm": num(m.hm)}


def trivial_cell(cfg: Mapping[str, Any], spec: DataSpec, t0: float, out: Callable[[str], None]) -> dict[str, Any]:
    """The ``trivial`` row: mean intensity inside the organ, threshold and direction fitted on the training
    split, evaluated on the test images like every row (:mod:`sldpack.medical.baselines`)."""
    from sldpack.medical.baselines import trivial_baseline

    train, test = spec.select(spec.split_or("train")), spec.select("test")
    res = trivial_baseline(train.data, test.data)
    m = res.metrics

    def num(v: float) -> float | None:
        return float(v) if math.isfinite(v) else None

    hm = num(m.hm)
    out(f"result: test HM {'n/a' if hm is None else f'{hm:.4f}'} (threshold {res.rule.threshold:.2f}, "
        f"{'high' if res.rule.direction > 0 else 'low'} is positive, train HM {res.rule.train_hm:.4f}), "
        f"{time.perf_counter() - t0:.1f} s")
    scores = res.rule.scores(res.feature)
    return {"id": cfg["id"], "config": dict(cfg), "metrics": {
                "sen": num(m.sensitivity), "spe": num(m.specificity), "hm": hm, "auc": num(m.auc),
                "acc": num(m.accuracy), "patch_acc": None},
            "bytes": None, "n_params": 0, "train_seconds": 0.0, "eval_seconds": 0.0,
            "wall_seconds": round(time.perf_counter() - t0, 2),
            "test": {"split": test.split, "images": len(test.data), "rule": test.split_rule},
            "per_image": {"names": list(res.names), "true": [int(v) for v in res.true],
                          "pred": [int(v) for v in res.pred], "score": [float(v) for v in scores]},
            "trivial_rule": res.rule.to_obj(), "stored": None}
