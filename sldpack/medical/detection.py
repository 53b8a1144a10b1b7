"""Image-level detection from patch classes, Eq. (9) of the seed paper, and per-image results.

An image's score is ``Num(P) / (Num(N) + Num(P))`` over its patches (I patches -- outside the organ -- are
ignored); the image is called positive (diseased) when ``score >= delta`` (default 0.4). When no patch is
N or P (``N + P = 0``, e.g. every patch was called I) the score is defined as 0, so the image is called
normal for every allowed ``delta`` (0 < delta <= 1).

The counts can come from a model's predicted patch classes (how the detector runs on new images) or from
the true patch labels (an oracle check of the pipeline).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sldpack.atomic import atomic_write_bytes
from sldpack.errors import DataError, UsageError
from sldpack.format.constants import DECISION_TARGET_PATTERN
from sldpack.format.manifest import Calibration
from sldpack.medical.metrics import BinaryMetrics, binary_metrics

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_DELTA",
    "DeltaCalibration",
    "DetectionResults",
    "ImageResult",
    "calibrate_delta",
    "count_patch_classes",
    "decide",
    "detect_images",
    "image_scores",
]

DEFAULT_DELTA = 0.4
CSV_COLUMNS = ("name", "true_label", "num_I", "num_N", "num_P", "score", "decision")
RULE = "positive when Num(P)/(Num(N)+Num(P)) >= delta; I patches ignored; score 0 when Num(N)+Num(P) = 0"


def _check_delta(delta: float) -> float:
    d = float(delta)
    if not (0.0 < d <= 1.0):
        raise UsageError(f"delta must be in (0, 1], got {delta!r}")
    return d


def count_patch_classes(
    image_ids: Sequence[int] | NDArray[np.integer[Any]],
    patch_classes: Sequence[int] | NDArray[np.integer[Any]],
    n_images: int,
) -> NDArray[np.int64]:
    """Per-image counts of patch classes I/N/P.

    Args:
        image_ids: image index of every patch.
        patch_classes: class id (0 I, 1 N, 2 P) of every patch, e.g. a model's argmax.
        n_images: number of images (images without patches get zero counts).

    Returns:
        int64 ``[n_images, 3]``.

    Raises:
        UsageError: length mismatch, ids out of range.
    """
    ii = np.asarray(image_ids, dtype=np.int64).reshape(-1)
    cc = np.asarray(patch_classes, dtype=np.int64).reshape(-1)
    if ii.shape != cc.shape:
        raise UsageError(f"{ii.size} image ids for {cc.size} patch classes")
    if ii.size and (ii.min() < 0 or ii.max() >= n_images):
        raise UsageError(f"image ids must be in 0..{n_images - 1}")
    if cc.size and (cc.min() < 0 or cc.max() > 2):
        raise UsageError("patch classes must be 0 (I), 1 (N) or 2 (P)")
    out = np.zeros((n_images, 3), dtype=np.int64)
    np.add.at(out, (ii, cc), 1)
    return out


def image_scores(counts: NDArray[np.integer[Any]]) -> NDArray[np.float64]:
    """Eq. (9) score ``P / (N + P)`` per image from ``[n, 3]`` I/N/P counts; 0 where ``N + P = 0``."""
    c = np.asarray(counts, dtype=np.int64)
    if c.ndim != 2 or c.shape[1] != 3:
        raise UsageError(f"counts must be [n_images, 3] (I, N, P), got shape {c.shape}")
    if c.size and c.min() < 0:
        raise UsageError("counts must be non-negative")
    n_p = c[:, 2].astype(np.float64)
    den = (c[:, 1] + c[:, 2]).astype(np.float64)
    # division only where defined: the undefined case is 0 by definition (see module docs)
    return np.divide(n_p, den, out=np.zeros_like(n_p), where=den > 0)


def decide(scores: NDArray[np.floating[Any]], delta: float = DEFAULT_DELTA) -> NDArray[np.uint8]:
    """1 (positive) where ``score >= delta``, else 0."""
    d = _check_delta(delta)
    return (np.asarray(scores, dtype=np.float64) >= d).astype(np.uint8)


@dataclass(frozen=True)
class ImageResult:
    """One image's detection result (``true_label`` is -1 when unknown)."""

    name: str
    true_label: int
    num_i: int
    num_n: int
    num_p: int
    score: float
    decision: int

    def to_row(self) -> dict[str, Any]:
        """Dict with the keys of :data:`CSV_COLUMNS` (class names upper-case: ``num_I`` ...)."""
        return {
            "name": self.name,
            "true_label": self.true_label,
            "num_I": self.num_i,
            "num_N": self.num_n,
            "num_P": self.num_p,
            "score": self.score,
            "decision": self.decision,
        }


@dataclass(frozen=True)
class DetectionResults:
    """Per-image results of one evaluation and the threshold used."""

    delta: float
    images: tuple[ImageResult, ...]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def scores(self) -> NDArray[np.float64]:
        """Per-image Eq. (9) scores."""
        return np.array([r.score for r in self.images], dtype=np.float64)

    @property
    def decisions(self) -> NDArray[np.uint8]:
        """Per-image decisions (1 positive)."""
        return np.array([r.decision for r in self.images], dtype=np.uint8)

    @property
    def true_labels(self) -> NDArray[np.int64]:
        """Per-image true labels (-1 unknown)."""
        return np.array([r.true_label for r in self.images], dtype=np.int64)

    def metrics(self) -> BinaryMetrics:
        """Sensitivity, specificity, HM, accuracy and ROC AUC of the score over images with a known label.

        Raises:
            DataError: no image has a known (0/1) label.
        """
        t = self.true_labels
        known = t >= 0
        if not known.any():
            raise DataError("no image has a known label: metrics need true labels")
        return binary_metrics(t[known], self.decisions[known], self.scores[known])

    def to_rows(self) -> list[dict[str, Any]]:
        """One dict per image with the keys of :data:`CSV_COLUMNS`."""
        return [r.to_row() for r in self.images]

    def to_json_obj(self, *, with_metrics: bool = True) -> dict[str, Any]:
        """JSON-ready dict: ``delta``, ``rule``, ``metrics`` (when labels are known), ``images``."""
        obj: dict[str, Any] = {"delta": self.delta, "rule": RULE}
        if with_metrics and (self.true_labels >= 0).any():
            obj["metrics"] = self.metrics().to_dict()
        obj["images"] = self.to_rows()
        return obj

    def to_csv_text(self) -> str:
        """CSV text, header :data:`CSV_COLUMNS`; scores written in shortest round-trip form."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for r in self.images:
            writer.writerow([r.name, r.true_label, r.num_i, r.num_n, r.num_p, repr(r.score), r.decision])
        return buf.getvalue()

    def write_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_csv_text` atomically; returns the path."""
        return atomic_write_bytes(path, self.to_csv_text().encode("utf-8"))

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_json_obj` atomically (NaN metrics as ``null``); returns the path."""
        text = json.dumps(self.to_json_obj(), indent=2, allow_nan=False) + "\n"
        return atomic_write_bytes(path, text.encode("utf-8"))

    @classmethod
    def read_csv(cls, path: str | os.PathLike[str], delta: float = DEFAULT_DELTA) -> DetectionResults:
        """Read a file written by :meth:`write_csv` (the CSV does not store ``delta``: pass it).

        Raises:
            DataError: missing columns or malformed values.
        """
        p = Path(path)
        try:
            with p.open(newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
                    raise DataError(f"{p}: header must be {','.join(CSV_COLUMNS)}, got {reader.fieldnames}")
                rows = [
                    ImageResult(
                        name=rec["name"],
                        true_label=int(rec["true_label"]),
                        num_i=int(rec["num_I"]),
                        num_n=int(rec["num_N"]),
                        num_p=int(rec["num_P"]),
                        score=float(rec["score"]),
                        decision=int(rec["decision"]),
                    )
                    for rec in reader
                ]
        except OSError as exc:
            raise DataError(f"{p}: cannot read ({exc})") from exc
        except (ValueError, TypeError) as exc:
            raise DataError(f"{p}: malformed results row ({exc})") from exc
        return cls(delta=_check_delta(delta), images=tuple(rows))


def detect_images(
    counts: NDArray[np.integer[Any]],
    *,
    names: Sequence[str] | None = None,
    true_labels: Sequence[int] | NDArray[np.integer[Any]] | None = None,
    delta: float = DEFAULT_DELTA,
) -> DetectionResults:
    """Apply Eq. (9) to per-image I/N/P counts.

    Args:
        counts: int ``[n_images, 3]`` counts of patches classified I, N, P (see :func:`count_patch_classes`).
        names: image names (default ``image_00000`` ...).
        true_labels: image labels 0/1 (default unknown, -1).
        delta: decision threshold in (0, 1].

    Returns:
        :class:`DetectionResults`.

    Raises:
        UsageError: bad shapes, lengths or delta.
    """
    d = _check_delta(delta)
    scores = image_scores(counts)
    c = np.asarray(counts, dtype=np.int64)
    n = c.shape[0]
    nm = [f"image_{i:05d}" for i in range(n)] if names is None else [str(x) for x in names]
    tl = np.full(n, -1, dtype=np.int64) if true_labels is None else np.asarray(true_labels, dtype=np.int64)
    if len(nm) != n or tl.shape != (n,):
        raise UsageError(f"{n} count rows, {len(nm)} names, {tl.size} true labels: lengths must agree")
    if np.setdiff1d(tl, [-1, 0, 1]).size:
        raise UsageError("true labels must be 0, 1 (or -1 for unknown)")
    dec = decide(scores, d)
    rows = tuple(
        ImageResult(
            name=nm[i],
            true_label=int(tl[i]),
            num_i=int(c[i, 0]),
            num_n=int(c[i, 1]),
            num_p=int(c[i, 2]),
            score=float(scores[i]),
            decision=int(dec[i]),
        )
        for i in range(n)
    )
    return DetectionResults(delta=d, images=rows)


# --- choosing delta on held-out images ------------------------------------------------------------------

@dataclass(frozen=True)
class DeltaCalibration:
    """The delta :func:`calibrate_delta` chose and what it gives on the images it was chosen on."""

    delta: float
    target: str           # "max_hm" or "sensitivity>=X"
    images: int           # held-out images (with a known label) it was chosen on
    hm: float
    sensitivity: float
    specificity: float
    reached: bool         # False: no delta reaches the target sensitivity (the most sensitive one is taken)

    def as_calibration(self, iteration: int | None = None) -> Calibration:
        """The manifest's ``decision.calibration`` record (spec 5.10), with the iterate chosen alongside."""
        return Calibration(target=self.target, images=self.images, hm=self.hm, iteration=iteration,
                           sensitivity=self.sensitivity, specificity=self.specificity)


def _candidate_deltas(scores: NDArray[np.float64]) -> NDArray[np.float64]:
    """One delta per distinct way of splitting the images by score, each halfway between the scores it
    separates (so a test image scoring a little off a held-out score is called the same way).

    Scores are in [0, 1]; delta must be in (0, 1]: a score of 0 is never positive, a score of 1 always.
    """
    v = np.unique(scores)                              # ascending distinct scores
    cuts = (v[:-1] + v[1:]) / 2                         # between neighbours: everything above is positive
    lowest = [v[0] / 2] if v[0] > 0 else []             # every image positive (only when no score is 0)
    highest = [(v[-1] + 1.0) / 2] if v[-1] < 1.0 else []  # no image positive (only when no score is 1)
    return np.concatenate([lowest, cuts, highest]).astype(np.float64)


def calibrate_delta(
    image_scores: Sequence[float] | NDArray[np.floating[Any]],
    labels: Sequence[int] | NDArray[np.integer[Any]],
    *,
    target: str = "max_hm",
    prefer: float = DEFAULT_DELTA,
) -> DeltaCalibration:
    """Choose Eq. (9)'s delta on held-out images.

    Args:
        image_scores: per-image Eq. (9) scores in [0, 1] (:func:`image_scores`).
        labels: per-image labels 0/1 (-1, unknown, is left out).
        target: ``max_hm`` -- the delta with the highest HM on these images; or ``sensitivity>=X`` -- among
            the deltas whose sensitivity is at least X, the one with the highest specificity (then the highest
            sensitivity); when none reaches X, the most sensitive delta, with ``reached=False``.
        prefer: ties (deltas giving the same HM, or the same sensitivity and specificity) go to the candidate
            nearest ``prefer`` (the paper's 0.4: the data set does not move it without a reason), then to the
            smaller delta. The candidates are the midpoints between neighbouring distinct scores, so the
            result is deterministic and does not depend on the images' order.

    Returns:
        :class:`DeltaCalibration`.

    Raises:
        UsageError: bad target, scores outside [0, 1], lengths that differ.
        DataError: fewer than one positive and one negative labelled image (HM undefined).
    """
    if not re.match(DECISION_TARGET_PATTERN, target):
        raise UsageError(f"calibration target must be max_hm or sensitivity>=X (X in [0, 1]), got {target!r}")
    sc = np.asarray(image_scores, dtype=np.float64).reshape(-1)
    lab = np.asarray(labels, dtype=np.int64).reshape(-1)
    if sc.shape != lab.shape:
        raise UsageError(f"{sc.size} scores for {lab.size} labels")
    if sc.size and (not np.isfinite(sc).all() or sc.min() < 0 or sc.max() > 1):
        raise UsageError("image scores must be in [0, 1]")
    known = lab >= 0
    sc, lab = sc[known], lab[known]
    n_pos, n_neg = int((lab == 1).sum()), int((lab == 0).sum())
    if n_pos == 0 or n_neg == 0:
        raise DataError(f"choosing delta needs positive and negative held-out images, got {n_pos} positive "
                        f"and {n_neg} negative")
    deltas = _candidate_deltas(sc)
    called = sc[None, :] >= deltas[:, None]                       # [candidates, images]
    sen = (called & (lab == 1)).sum(axis=1) / n_pos
    spe = (~called & (lab == 0)).sum(axis=1) / n_neg
    hm = np.where(sen + spe > 0, 2 * sen * spe / np.maximum(sen + spe, 1e-300), 0.0)
    reached = True
    if target == "max_hm":
        ok = hm >= hm.max() - 1e-12
    else:
        want = float(target.split(">=", 1)[1])
        ok = sen >= want - 1e-12
        if not ok.any():
            reached, ok = False, sen >= sen.max() - 1e-12
        else:  # the highest specificity among them, then the highest sensitivity
            ok &= spe >= spe[ok].max() - 1e-12
            ok &= sen >= sen[ok].max() - 1e-12
    # deterministic tie-break: nearest to `prefer`, then the smaller delta
    idx = np.flatnonzero(ok)
    near = np.round(np.abs(deltas[idx] - prefer), 12)  # equal distances must compare equal despite rounding
    best = int(idx[np.lexsort((deltas[idx], near))[0]])
    return DeltaCalibration(delta=float(deltas[best]), target=target, images=int(sc.size), hm=float(hm[best]),
                            sensitivity=float(sen[best]), specificity=float(spe[best]), reached=reached)
