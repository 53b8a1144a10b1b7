"""The torch-free statistics of the membership audit: AUC, TPR at low FPR, bootstrap CIs, set building."""

from __future__ import annotations

import numpy as np
import pytest

from sldpack.errors import DataError, UsageError
from sldpack.pipelines.membership import (
    MembershipConfig,
    MembershipReport,
    aggregate_by_group,
    auc_score,
    build_sets,
    evaluate_attack,
    image_digests,
    roc_curve,
    save_roc_png,
    tpr_at_fpr,
)


def test_auc_counts_pairs_and_ties_by_hand() -> None:
    # pairs (m > n): 3 > 1, 3 > 2, 2 > 1, tie 2 = 2 -> (3 + 0.5) / 4
    assert auc_score([3.0, 2.0], [1.0, 2.0]) == pytest.approx(3.5 / 4)
    assert auc_score([5.0], [1.0, 2.0]) == 1.0
    assert auc_score([0.0], [1.0, 2.0]) == 0.0


def test_tpr_at_fpr_allows_floor_fpr_n_false_positives() -> None:
    non = np.arange(100, dtype=float)  # 0..99
    mem = np.array([99.5, 98.5, 97.5, 50.0])
    # FPR 1 %: one non-member (99) may be above t -> t = 98 -> members above: 99.5, 98.5
    assert tpr_at_fpr(mem, non, 0.01) == pytest.approx(0.5)
    # FPR 0.1 % of 100 non-members: no false positive allowed -> only 99.5 is above every non-member
    assert tpr_at_fpr(mem, non, 0.001) == pytest.approx(0.25)


def test_roc_curve_runs_from_origin_to_one_one_and_integrates_to_the_auc() -> None:
    rng = np.random.default_rng(0)
    m, n = rng.normal(1, 1, 50), rng.normal(0, 1, 60)
    fpr, tpr = roc_curve(m, n)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert float(np.trapezoid(tpr, fpr)) == pytest.approx(auc_score(m, n), abs=1e-12)


def test_separated_scores_give_a_ci_above_half_and_equal_distributions_one_covering_it() -> None:
    rng = np.random.default_rng(1)
    sep = evaluate_attack("loss", "distilled", rng.normal(3, 1, 40), rng.normal(0, 1, 40), bootstrap=300)
    assert sep.auc.value > 0.95 and sep.auc.low > 0.5
    same = evaluate_attack("loss", "distilled", rng.normal(0, 1, 40), rng.normal(0, 1, 40), bootstrap=300)
    assert same.auc.low < 0.5 < same.auc.high
    assert same.auc.low <= same.auc.value <= same.auc.high
    # a small set's CI is wide, and the width is reported as such
    small = evaluate_attack("loss", "distilled", rng.normal(0, 1, 10), rng.normal(0, 1, 10), bootstrap=300)
    assert small.auc.width > same.auc.width


def test_verdict_flags_only_when_the_lower_bound_exceeds_the_threshold() -> None:
    rng = np.random.default_rng(2)
    strong = evaluate_attack("loss", "distilled", rng.normal(3, 1, 40), rng.normal(0, 1, 40), bootstrap=200)
    trained = evaluate_attack("loss", "trained", rng.normal(3, 1, 40), rng.normal(0, 1, 40), bootstrap=200)
    weak = evaluate_attack("loss", "distilled", rng.normal(0, 1, 40), rng.normal(0, 1, 40), bootstrap=200)
    assert MembershipReport(MembershipConfig(), "s", (strong,)).verdict == "FLAG"
    # the comparison network never decides the verdict: it is the yardstick
    rep = MembershipReport(MembershipConfig(), "s", (weak, trained))
    assert rep.verdict == "PASS"
    assert any("distilled file: AUC" in line and "normally trained network: AUC" in line
               for line in rep.comparison_lines())
    assert MembershipReport(MembershipConfig(flag_auc=0.99), "s", (strong,)).verdict == "PASS"
    d = rep.to_dict()
    assert d["verdict"] == "PASS" and len(d["attacks"]) == 2 and "0.6" in d["rule"]


def test_build_sets_matches_counts_and_class_mix_and_keeps_the_reference_pool_apart() -> None:
    ym = np.array([0] * 50 + [1] * 30)
    yn = np.array([0] * 40 + [1] * 24)
    dm = [f"m{i}" for i in range(ym.size)]
    dn = [f"n{i}" for i in range(yn.size)]
    s = build_sets(ym, yn, member_digests=dm, nonmember_digests=dn, reference_share=0.5, seed=3)
    assert dict(s.per_class) == {0: 20, 1: 12}
    assert s.members.size == s.nonmembers.size == 32
    assert np.array_equal(np.bincount(ym[s.members]), np.bincount(yn[s.nonmembers]))
    assert not set(s.reference.tolist()) & set(s.nonmembers.tolist())
    assert s.reference.size == yn.size - 32
    again = build_sets(ym, yn, member_digests=dm, nonmember_digests=dn, reference_share=0.5, seed=3)
    assert np.array_equal(s.members, again.members) and np.array_equal(s.nonmembers, again.nonmembers)


def test_overlapping_sets_are_refused_naming_the_count() -> None:
    y = np.zeros(20, dtype=int)
    with pytest.raises(DataError, match=r"^2 non-member image"):
        build_sets(y, y, member_digests=[f"a{i}" for i in range(20)],
                   nonmember_digests=["a3", "a7"] + [f"b{i}" for i in range(18)])


def test_too_few_per_class_is_a_usage_error_naming_the_class() -> None:
    ym, yn = np.array([0] * 30 + [1] * 30), np.array([0] * 30 + [1] * 15)
    dm, dn = [f"m{i}" for i in range(60)], [f"n{i}" for i in range(45)]
    build_sets(ym, yn, member_digests=dm, nonmember_digests=dn)  # 15 >= 10 without references
    with pytest.raises(UsageError, match=r"class 'sick'.*at least 10"):
        build_sets(ym, yn, member_digests=dm, nonmember_digests=dn, reference_share=0.5,
                   class_names=("healthy", "sick"))


def test_digests_see_pixels_and_duplicates_in_the_nonmember_pool_count_once() -> None:
    imgs = np.zeros((3, 2, 2), dtype=np.uint8)
    imgs[2, 0, 0] = 1
    d = image_digests(imgs)
    assert d[0] == d[1] != d[2]
    ym = np.zeros(12, dtype=int)
    s = build_sets(ym, np.zeros(13, dtype=int), member_digests=[f"m{i}" for i in range(12)],
                   nonmember_digests=["x"] * 2 + [f"n{i}" for i in range(11)])
    assert s.nonmembers.size == 12 and s.pool["nonmember_duplicates"] == 1


def test_patch_scores_average_per_image() -> None:
    out = aggregate_by_group([1.0, 3.0, 10.0], [0, 0, 1], 2)
    assert out.tolist() == [2.0, 10.0]
    with pytest.raises(DataError, match="no scored patch"):
        aggregate_by_group([1.0], [0], 2)


def test_roc_png_is_written(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(4)
    a = evaluate_attack("loss", "distilled", rng.normal(1, 1, 30), rng.normal(0, 1, 30), bootstrap=50)
    p = tmp_path / "roc.png"
    save_roc_png(MembershipReport(MembershipConfig(), "s", (a,)), p)
    from PIL import Image

    with Image.open(p) as im:
        assert im.size[0] == 520 and im.size[1] > 520
