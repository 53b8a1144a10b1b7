"""``--select val-hm|val-acc``: the held-out part, the scorer hook of the distiller, what the file records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sldpack.errors import UsageError
from sldpack.nn.distill import DistillConfig, distill
from sldpack.pipelines.inputs import DataSpec
from sldpack.pipelines.selection import make_val_scorer, open_train_val

SPEC = DataSpec(phantom=16, phantom_size=64, patch_size=16, stride=8)


def tiny(**kw: object) -> DistillConfig:
    base: dict[str, object] = {"arch_options": {"depth": 2, "width": 8}, "steps": 2, "iterations": 6,
                               "batch_real": 12, "device": "cpu", "checkpoint_every": 2, "bn_batches": 2,
                               "bn_batch_size": 32, "lr": 0.05}
    base.update(kw)
    return DistillConfig(**base)  # type: ignore[arg-type]


def test_held_out_part_is_disjoint_and_stratified() -> None:
    tv = open_train_val(SPEC, val_fraction=0.25, seed=0)
    train_all = SPEC.select("train").data
    assert tv.opened.selection is not None
    tr, va = tv.opened.selection.data, tv.val.data
    assert len(tr) + len(va) == len(train_all)
    assert not set(tr.names) & set(va.names)
    assert set(np.unique(va.labels)) == {0, 1}  # both classes held out
    assert "held out by image" in tv.rule
    # the test split is untouched by the holdout
    assert not set(va.names) & set(SPEC.select("test").data.names)


def test_holdout_errors() -> None:
    with pytest.raises(UsageError, match="fraction"):
        open_train_val(SPEC, val_fraction=1.0)
    with pytest.raises(UsageError, match="plug-in"):
        open_train_val(DataSpec(source="phantom:n=10"))


def test_medmnist_uses_its_own_val_split(shared_data: Path) -> None:
    spec = DataSpec(data=str(shared_data / "breastmnist_28.npz"))
    tv = open_train_val(spec)
    assert len(tv.val.data) == 78 and "own 'val' split" in tv.rule
    assert len(tv.opened.source) == 546  # type: ignore[arg-type]


def test_val_selection_writes_the_best_scoring_iterate_and_records_the_rule(tmp_path: Path) -> None:
    tv = open_train_val(SPEC, val_fraction=0.25, seed=0)
    src = tv.opened.source
    scores = iter([0.2, 0.9, 0.5])  # candidates at iterations 2, 4, 6: iterate 4 must win

    def mock(module: torch.nn.Module) -> float:
        assert not module.training  # a finished network (eval mode) is scored
        return next(scores)

    mock.description = "mock scores"  # type: ignore[attr-defined]
    res = distill(src, tiny(select="val-hm", select_every=2), run_dir=tmp_path / "val", scorer=mock)
    opts = res.manifest.distill.options  # type: ignore[union-attr]
    assert opts["select"] == "val-hm" and opts["selected_iteration"] == 4
    assert opts["selection"] == {"rule": "val-hm", "score": 0.9, "every": 2, "held_out": "mock scores"}
    # the written images are iterate 4 of the same trajectory (a 4-iteration run with select=last)
    ref = distill(src, tiny(iterations=4, select="last"))
    np.testing.assert_array_equal(res.tensors["images"].array, ref.tensors["images"].array)
    np.testing.assert_array_equal(res.tensors["lrs"].array, ref.tensors["lrs"].array)


def test_val_selection_survives_a_resume(tmp_path: Path) -> None:
    tv = open_train_val(SPEC, val_fraction=0.25, seed=0)
    src = tv.opened.source
    table = {2: 0.7, 4: 0.1, 6: 0.3}
    calls: list[int] = []

    def by_iteration(_m: torch.nn.Module) -> float:
        calls.append(len(calls))
        return table[2 * len(calls)]

    class KilledError(Exception):
        pass

    def stop(done: int, _loss: float) -> None:
        if done == 4:
            raise KilledError

    with pytest.raises(KilledError):
        distill(src, tiny(select="val-acc", select_every=2), run_dir=tmp_path / "r", scorer=by_iteration,
                on_iteration=stop)
    res = distill(src, tiny(select="val-acc", select_every=2), run_dir=tmp_path / "r", resume=True,
                  scorer=by_iteration)
    # iterate 2 (0.7) was found before the kill; the checkpoint kept it
    assert res.manifest.distill.options["selected_iteration"] == 2  # type: ignore[union-attr]


def test_val_rule_needs_a_scorer() -> None:
    tv = open_train_val(SPEC, val_fraction=0.25, seed=0)
    with pytest.raises(UsageError, match="scorer"):
        distill(tv.opened.source, tiny(select="val-hm"))
    with pytest.raises(UsageError, match="select"):
        tiny(select="val-loss").validate()


def test_real_scorer_scores_hm_and_accuracy() -> None:
    tv = open_train_val(SPEC, val_fraction=0.25, seed=0)
    src = tv.opened.source
    res = distill(src, tiny(iterations=2, select="last"))
    hm = make_val_scorer(tv.val, src, "val-hm", settings=tv.opened.settings)
    acc = make_val_scorer(tv.val, src, "val-acc", settings=tv.opened.settings)
    assert 0.0 <= hm(res.module) <= 1.0 and 0.0 < acc(res.module) <= 1.0
    assert "HM" in hm.description and "accuracy" in acc.description  # type: ignore[attr-defined]
    with pytest.raises(UsageError):
        make_val_scorer(tv.val, src, "val-auc")


def test_auto_resolves_to_a_held_out_rule_or_to_best_and_says_why(tmp_path: Path) -> None:
    from sldpack.pipelines.selection import open_for_selection

    auto = open_for_selection(SPEC, "auto")
    assert auto.scorer is not None and getattr(auto.scorer, "rule", None) == "val-hm"  # two image classes
    assert auto.note.startswith("selection: val-hm, image-level HM on")
    res = distill(auto.opened.source, tiny(iterations=4, select_every=2), scorer=auto.scorer)
    assert res.manifest.distill is not None
    opts = res.manifest.distill.options
    assert opts["select"] == "val-hm" and opts["selection"]["rule"] == "val-hm"  # the rule applied, never auto
    # nothing can be held out: best, with the reason
    many = open_for_selection(SPEC, "auto", processes=2)
    assert many.scorer is None and "several processes" in many.note and "best" in many.note
    few = open_for_selection(DataSpec(phantom=4, phantom_size=64, patch_size=16, stride=8), "auto", val_fraction=0.1)
    assert few.scorer is None and "empty part" in few.note
    # an explicit val rule that cannot be had is an error, not a silent fallback
    with pytest.raises(UsageError, match="several processes"):
        open_for_selection(SPEC, "val-hm", processes=2)
    assert open_for_selection(SPEC, "best").scorer is None
    # the engine alone: auto without a scorer is best
    plain = distill(auto.opened.source, tiny(iterations=3))
    assert plain.manifest.distill is not None and plain.manifest.distill.options["select"] == "best"


def test_auto_uses_class_accuracy_for_more_than_two_image_classes(tmp_path: Path) -> None:
    from sldpack.pipelines.selection import open_for_selection

    rng = np.random.default_rng(0)
    labels = np.arange(60) % 3
    images = (rng.integers(0, 60, (60, 12, 12)) + 60 * labels[:, None, None]).astype(np.uint8)
    np.savez(tmp_path / "three.npz", images=images, labels=labels)
    chosen = open_for_selection(DataSpec(data=str(tmp_path / "three.npz")), "auto")
    assert getattr(chosen.scorer, "rule", None) == "val-acc"


def test_held_out_images_choose_the_delta_with_the_iterate_and_the_file_records_it(tmp_path: Path) -> None:
    import sldpack
    from sldpack.medical.detection import calibrate_delta
    from sldpack.pipelines.evaluate import evaluate

    tv = open_train_val(SPEC, val_fraction=0.25, seed=0)
    src = tv.opened.source
    scorer = make_val_scorer(tv.val, src, "val-hm", settings=tv.opened.settings)
    res = distill(src, tiny(select="val-hm", select_every=2), run_dir=tmp_path / "cal", scorer=scorer)
    f = sldpack.open(res.sldp_path)  # type: ignore[arg-type]
    d = f.manifest.decision
    assert f.header.version_minor == 1  # the file carries a 1.1 key
    assert d is not None and (d.rule, d.positive, d.negative, d.ignored) == ("eq9", "P", "N", ("I",))
    assert d.delta_source == "calibrated" and d.calibration is not None
    assert d.calibration.iteration == f.manifest.distill.options["selected_iteration"]  # type: ignore[union-attr]
    assert d.calibration.images == len(tv.val.data) and d.calibration.target == "max_hm"
    # the recorded delta is the one calibrate_delta picks for the written network on the held-out images,
    # and the held-out score that chose the iterate was the HM there
    ev = evaluate(res.module, src.preprocessing, tv.val.data, class_names=src.class_names,
                  settings=tv.opened.settings)
    assert ev.detection is not None
    cal = calibrate_delta(ev.detection.scores, ev.detection.true_labels)
    assert d.delta == cal.delta and d.calibration.hm == pytest.approx(cal.hm)
    assert scorer(res.module) == pytest.approx(cal.hm)
    assert f.manifest.distill.options["selection"]["score"] == pytest.approx(cal.hm)  # type: ignore[union-attr]
    f.close()
