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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from sldpack.errors import UsageError
from sldpack.medical.detection import DEFAULT_DELTA
from sldpack.medical.loaders import split_indices
from sldpack.pipelines.datasets import DataSelection
from sldpack.pipelines.inputs import DataSpec, OpenedSource, open_source
from sldpack.pipelines.patch_source import PatchSource, PatchTask
from sldpack.pipelines.sources import ArraySource, RealSource

if TYPE_CHECKING:
    from torch import nn

__all__ = ["DEFAULT_VAL_FRACTION", "VAL_METRICS", "Selection", "TrainVal", "make_val_scorer", "open_for_selection",
           "open_train_val"]

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


def make_val_scorer(val: DataSelection, source: RealSource, rule: str, *, settings: PatchTask | None = None,
                    delta: float = DEFAULT_DELTA, description: str = "") -> Callable[[nn.Module], float]:
    """A scorer for :func:`sldpack.nn.distill.distill`: evaluate a candidate on ``val`` and return the
    metric of ``rule`` (``val-hm``: image-level HM; ``val-acc``: patch/class accuracy; NaN -> 0).

    The returned callable has a ``description`` attribute (recorded in the file) and a ``rule`` one.

    Raises:
        UsageError: an unknown rule.
    """
    if rule not in VAL_METRICS:
        raise UsageError(f"validation rule must be one of {', '.join(VAL_METRICS)}, got {rule!r}")
    metric = VAL_METRICS[rule]

    def score(module: nn.Module) -> float:
        from sldpack.pipelines.evaluate import evaluate

        ev = evaluate(module, source.preprocessing, val.data, class_names=tuple(source.class_names),
                      settings=settings, delta=delta)
        value: float | None
        if metric == "hm":
            value = ev.image.hm if ev.image is not None else None
        else:
            value = ev.patch.accuracy if ev.patch is not None else None
        return 0.0 if value is None or math.isnan(value) else float(value)

    what = "image-level HM" if metric == "hm" else "patch accuracy"
    desc = f"{what} on {description or val.split_rule}"
    fn: Any = score
    fn.description = desc
    fn.rule = rule
    return score


@dataclass(frozen=True)
class Selection:
    """What :func:`open_for_selection` resolved: the training source, the scorer (``None``: the engine
    applies ``best``/``last``) and, for ``auto``, why a rule was taken (one line to show the user)."""

    opened: OpenedSource
    scorer: Callable[[nn.Module], float] | None
    note: str


def open_for_selection(spec: DataSpec, select: str, *, val_fraction: float = DEFAULT_VAL_FRACTION,
                       class_names: Sequence[str] = (), processes: int = 1, delta: float = DEFAULT_DELTA) -> Selection:
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
                             description=tv.rule)
    return Selection(tv.opened, scorer, f"selection: {rule}, {getattr(scorer, 'description', '')}")
