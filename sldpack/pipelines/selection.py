"""Choose the written iterate on held-out images, not on the training loss (``--select val-hm|val-acc``).

The distiller (:func:`sldpack.nn.distill.distill`) knows nothing about images or splits: it calls a
*scorer* on candidate networks. This module builds both halves above the engine:

* :func:`open_train_val`: the training source without a validation part, and that part. For data with
  its own validation split (MedMNIST ``val``) that split is used and the training split stays whole;
  otherwise ``val_fraction`` of the training images is held out **by image** (one image per patient in
  every set sldpack reads, so by patient), stratified by image label, with the one split helper
  :func:`sldpack.medical.loaders.split_indices`.
* :func:`make_val_scorer`: scores a candidate network on those images, the way ``sldp eval`` does
  (:func:`sldpack.pipelines.evaluate.evaluate`): image-level HM (``val-hm``) or patch accuracy
  (class accuracy for whole-image models; ``val-acc``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from sldpack.errors import UsageError
from sldpack.format.constants import DECISION_TARGET_PATTERN
from sldpack.format.decision import DecisionRule
from sldpack.medical.detection import DEFAULT_DELTA, DeltaCalibration, calibrate_delta
from sldpack.medical.loaders import split_indices
from sldpack.medical.patches import PATCH_CLASS_NAMES
from sldpack.pipelines.datasets import DataSelection
from sldpack.pipelines.inputs import DataSpec, OpenedSource, open_source
from sldpack.pipelines.patch_source import PatchSource, PatchTask
from sldpack.pipelines.sources import ArraySource, RealSource

if TYPE_CHECKING:
    from torch import nn

__all__ = ["DEFAULT_VAL_FRACTION", "VAL_METRICS", "HeldOutScorer", "Selection", "TrainVal", "make_val_scorer",
           "open_for_selection", "open_train_val"]

DEFAULT_VAL_FRACTION = 0.2
"""Share of the training images held out for selection when the data has no validation split."""

VAL_METRICS: dict[str, str] = {"val-hm": "hm", "val-acc": "acc"}
"""``select`` rule -> what is maximised on the held-out images."""


@dataclass(frozen=True)
class TrainVal:
    """A training source and the held-out images that choose its iterate.

    Attributes:
        opened: the training source (without the held-out images).
        val: the held-out images.
        rule: how they were held out, in words (recorded in the file's ``distill.options.selection``).
    """

    opened: OpenedSource
    val: DataSelection
    rule: str


def open_train_val(spec: DataSpec, *, val_fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0,
                   class_names: Sequence[str] = ()) -> TrainVal:
    """Split the training images of ``spec`` into a training source and a validation part.

    Raises:
        UsageError: a ``--source`` plug-in (no images to hold out), a fraction outside (0, 1), a
            validation part without both classes. DataError: as :func:`open_source`.
    """
    if spec.source is not None:
        raise UsageError("validation selection holds out images of --data/--phantom; a --source plug-in has none")
    if not 0.0 < val_fraction < 1.0:
        raise UsageError(f"the validation fraction must be in (0, 1), got {val_fraction}")
    split = spec.split_or("train")
    sel = spec.select(split)
    if sel.medmnist:
        val = spec.select("val") if split != "val" else None
        if val is None:
            raise UsageError("--split val is the held-out part; distil the train split")
        opened = open_source(spec, split, class_names=class_names, medmnist_as_stored=True)
        return TrainVal(opened, val, f"the file's own 'val' split ({len(val.data)} images)")
    labels = np.asarray(sel.data.labels)
    strat = labels if bool((labels >= 0).all()) else None
    tr, va = split_indices(len(sel.data), (1.0 - val_fraction, val_fraction), seed, labels=strat)
    if va.size == 0 or tr.size == 0:
        raise UsageError(f"holding out {val_fraction:.0%} of {len(sel.data)} training images leaves an empty part")
    rule = (f"{va.size} of {len(sel.data)} training images held out by image (= by patient), stratified by "
            f"image label, seed {seed} (split_indices)")
    tr_data, va_data = sel.data.subset(tr), sel.data.subset(va)
    train_sel = replace(sel, data=tr_data, split=f"{split} minus validation")
    val_sel = replace(sel, data=va_data, split="validation", split_rule=rule)
    source: RealSource
    settings: PatchTask | None = None
    if tr_data.masks is not None:
        settings = spec.patch_task()
        assert settings is not None
        psrc = PatchSource.from_image_set(tr_data, settings)
        source = psrc
        what = f"{len(psrc)} patches (I/N/P {'/'.join(map(str, psrc.counts()))})"
    else:
        tl = np.asarray(tr_data.labels)
        source = ArraySource(images=np.asarray(tr_data.images), labels=tl, class_names=tuple(class_names),
                             num_classes=int(tl.max()) + 1)
        what = f"{len(tr_data)} whole images"
    return TrainVal(OpenedSource(source, train_sel, settings, what), val_sel, rule)


class HeldOutScorer:
    """Scores candidate networks on held-out images for :func:`sldpack.nn.distill.distill` and, for the
    written iterate, gives the file's decision rule (:meth:`decision`).

    ``val-hm`` on patch data (Eq. 9) with ``calibrate`` set: a candidate's score is its held-out HM at the
    delta :func:`~sldpack.medical.detection.calibrate_delta` chooses for it, so the iterate and delta are
    chosen together, on the same images; the file records that delta (``delta_source: calibrated``).
    Without ``calibrate``: HM at ``delta`` (recorded as ``delta_source: default``). ``val-acc``: patch
    (class) accuracy; whole-image models decide by argmax (two classes: recorded as rule ``argmax``).
    """

    def __init__(self, val: DataSelection, source: RealSource, rule: str, *, settings: PatchTask | None,
                 delta: float, calibrate: str | None, description: str) -> None:
        if rule not in VAL_METRICS:
            raise UsageError(f"validation rule must be one of {', '.join(VAL_METRICS)}, got {rule!r}")
        self.val, self.source, self.rule, self.settings = val, source, rule, settings
        self.delta, self.calibrate = delta, calibrate
        metric = VAL_METRICS[rule]
        at = f", at the Eq. (9) delta chosen on them ({calibrate})" if calibrate and settings is not None else ""
        what = "image-level HM" if metric == "hm" else "patch accuracy"
        self.description = f"{what} on {description or val.split_rule}" + (at if metric == "hm" else "")

    def _evaluate(self, module: nn.Module) -> Any:
        from sldpack.pipelines.evaluate import evaluate

        return evaluate(module, self.source.preprocessing, self.val.data, class_names=tuple(self.source.class_names),
                        settings=self.settings, delta=self.delta)

    def _calibrated(self, ev: Any) -> DeltaCalibration | None:
        """The calibration of one evaluation (patch task, two image classes, ``calibrate`` set), else None."""
        det = ev.detection
        if self.calibrate is None or det is None:
            return None
        t = det.true_labels
        if not ((t == 0).any() and (t == 1).any()):
            return None
        return calibrate_delta(det.scores, t, target=self.calibrate, prefer=self.delta)

    def __call__(self, module: nn.Module) -> float:
        """The candidate's held-out score (NaN -> 0)."""
        ev = self._evaluate(module)
        value: float | None
        if VAL_METRICS[self.rule] == "hm":
            cal = self._calibrated(ev)
            value = cal.hm if cal is not None else (ev.image.hm if ev.image is not None else None)
        else:
            value = ev.patch.accuracy if ev.patch is not None else None
        return 0.0 if value is None or math.isnan(value) else float(value)

    def decision(self, module: nn.Module, iteration: int) -> DecisionRule | None:
        """The decision rule for the written network: Eq. (9) with the delta chosen on the held-out images
        (patch models), argmax (two-class whole-image models), or ``None`` (several image classes)."""
        names = tuple(self.source.class_names)
        if self.settings is None:  # whole images: the network's argmax is the decision
            return DecisionRule(rule="argmax", positive=names[1]) if len(names) == 2 else None
        cal = self._calibrated(self._evaluate(module))
        pos, neg, ign = PATCH_CLASS_NAMES[2], PATCH_CLASS_NAMES[1], (PATCH_CLASS_NAMES[0],)
        if cal is None:
            return DecisionRule(rule="eq9", positive=pos, negative=neg, ignored=ign, delta=self.delta,
                                delta_source="default")
        return DecisionRule(rule="eq9", positive=pos, negative=neg, ignored=ign, delta=cal.delta,
                            delta_source="calibrated", calibration=cal.as_calibration(iteration=iteration))


def make_val_scorer(val: DataSelection, source: RealSource, rule: str, *, settings: PatchTask | None = None,
                    delta: float = DEFAULT_DELTA, calibrate: str | None = "max_hm",
                    description: str = "") -> HeldOutScorer:
    """A scorer for :func:`sldpack.nn.distill.distill` (:class:`HeldOutScorer`): evaluate a candidate on
    ``val`` and return the metric of ``rule`` (``val-hm``: image-level HM, at the held-out delta when
    ``calibrate`` is a target; ``val-acc``: patch/class accuracy; NaN -> 0).

    Raises:
        UsageError: an unknown rule or calibration target.
    """
    if calibrate is not None and not re.match(DECISION_TARGET_PATTERN, calibrate):
        raise UsageError(f"calibration target must be max_hm or sensitivity>=X (X in [0, 1]), got {calibrate!r}")
    return HeldOutScorer(val, source, rule, settings=settings, delta=delta, calibrate=calibrate,
                         description=description)


@dataclass(frozen=True)
class Selection:
    """What :func:`open_for_selection` resolved: the training source, the scorer (``None``: the engine
    applies ``best``/``last``) and, for ``auto``, why a rule was taken (one line to show the user)."""

    opened: OpenedSource
    scorer: Callable[[nn.Module], float] | None
    note: str


def open_for_selection(spec: DataSpec, select: str, *, val_fraction: float = DEFAULT_VAL_FRACTION,
                       class_names: Sequence[str] = (), processes: int = 1, delta: float = DEFAULT_DELTA,
                       calibrate: str | None = "max_hm") -> Selection:
    """Open the training data for a distillation whose iterate rule is ``select`` (the one place
    ``sldp distill`` and ``sldp study`` resolve it).

    * ``val-hm``/``val-acc``: hold out validation images (:func:`open_train_val`) and score on them;
    * ``auto``: the same with ``val-hm`` for two-class image labels (``val-acc`` otherwise), or, when no
      validation part can be had (a ``--source`` plug-in, several processes, too few images), the whole
      training split with ``best``, saying why;
    * ``best``/``last``: the whole training split, no scorer.

    Raises:
        UsageError: ``val-*`` that cannot be had (the reason named). DataError: as :func:`open_source`.
    """
    def whole_split(note: str) -> Selection:
        return Selection(open_source(spec, spec.split_or("train"), class_names=class_names, medmnist_as_stored=True),
                         None, note)

    if select != "auto" and select not in VAL_METRICS:
        return whole_split(f"selection: {select}")
    why = ("several processes (held-out scoring runs in one)" if processes > 1 else
           "a --source plug-in has no images to hold out" if spec.source is not None else "")
    tv: TrainVal | None = None
    if not why:
        try:
            tv = open_train_val(spec, val_fraction=val_fraction, seed=spec.split_seed, class_names=class_names)
        except UsageError as exc:
            if select != "auto":
                raise
            why = str(exc)
    if tv is not None and np.unique(np.asarray(tv.val.data.labels)).size < 2:
        # a one-class held-out part scores every iterate the same (HM 0): it would pick an arbitrary one
        only = np.unique(np.asarray(tv.val.data.labels))
        why = (f"the held-out part ({len(tv.val.data)} images) holds one class only (label "
               f"{', '.join(str(int(v)) for v in only)}): its score cannot rank iterates")
        tv = None
    if tv is None:
        if select != "auto":
            raise UsageError(f"--select {select} cannot be used here: {why}")
        return whole_split(f"selection: best (training-loss average; no held-out part: {why})")
    rule = select
    if select == "auto":
        rule = "val-hm" if bool(np.isin(np.asarray(tv.val.data.labels), [0, 1]).all()) else "val-acc"
    scorer = make_val_scorer(tv.val, tv.opened.source, rule, settings=tv.opened.settings, delta=delta,
                             calibrate=calibrate, description=tv.rule)
    return Selection(tv.opened, scorer, f"selection: {rule}, {getattr(scorer, 'description', '')}")
