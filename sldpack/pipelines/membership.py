"""Membership inference, measured: attack scores -> AUC, TPR at low FPR with bootstrap CIs, a verdict.

The image-similarity audit (:mod:`sldpack.pipelines.audit`) asks whether a distilled image *looks like* a
training image. A data-protection officer asks something else: can someone holding the file tell whether a
given patient's image was in the training set? That is answered the way privacy audits of trained models
are answered: a membership-inference attack on the network the file replays to, with known **members**
(training images) and **non-members** (held-out images of the same distribution), reported as the attack's
ROC AUC and its true-positive rate at a low false-positive rate (Carlini et al. 2022, "Membership
inference attacks from first principles").

This module is the torch-free half (numpy, Pillow for the plot):

* :func:`build_sets` draws the member and non-member sets: equal counts and the same class mix, at least
  ``min_per_class`` images per class, no image in both (same pixel digest: refused, naming the count), and
  -- when reference networks are wanted -- a disjoint part of the non-member pool kept for training them.
* :func:`evaluate_attack` turns per-example scores (higher = "member") into an :class:`AttackResult`: AUC,
  TPR at each FPR, each with a percentile-bootstrap CI (members and non-members resampled separately).
* :class:`MembershipReport` holds the attacks on the audited network and on the comparison network, the
  verdict (FLAG when the lower CI bound of any attack's AUC on the audited network exceeds
  ``flag_auc``, default 0.6) and renders text, JSON and an ROC plot with log-scale FPR.

The scores themselves (losses, calibrated confidences) need the network and live in
:mod:`sldpack.nn.membership`; :mod:`sldpack.pipelines.membership_audit` joins the two.

What the numbers mean: an AUC near 0.5 with a CI covering it says *this attack* could not tell members from
non-members on *these* sets; it bounds one attack, not all attacks, and it is not a differential-privacy
guarantee.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from sldpack.errors import DataError, UsageError
from sldpack.format.audit_schema import MembershipAttack, MembershipRecord

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "DEFAULT_FLAG_AUC",
    "DEFAULT_FPRS",
    "MIN_PER_CLASS",
    "AttackResult",
    "Interval",
    "MembershipConfig",
    "MembershipReport",
    "MembershipSets",
    "aggregate_by_group",
    "auc_score",
    "build_sets",
    "combine_reports",
    "evaluate_attack",
    "image_digests",
    "roc_curve",
    "save_roc_png",
    "tpr_at_fpr",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

DEFAULT_FLAG_AUC = 0.6
"""FLAG when the lower bound of the 95 % CI of an attack's AUC on the audited network exceeds this."""
DEFAULT_FPRS: tuple[float, ...] = (0.01, 0.001)
"""False-positive rates at which the true-positive rate is reported (1 %, 0.1 %)."""
DEFAULT_BOOTSTRAP = 1000
"""Bootstrap resamples per CI."""
MIN_PER_CLASS = 10
"""Fewest non-members (and members) per class for a CI to mean anything; fewer is a usage error."""
_ROC_POINTS = 200  # points of an ROC curve kept in the JSON report (the plot uses the full curve)


# --- the sets -------------------------------------------------------------------------------------------

def image_digests(images: Any) -> list[str]:
    """SHA-256 of every image's pixels (dtype and shape included), image by image; a memmap is read per row."""
    a = images
    out = []
    for i in range(int(a.shape[0])):
        row = np.ascontiguousarray(a[i])
        h = hashlib.sha256(f"{row.dtype.str}{row.shape}".encode("ascii"))
        h.update(row.tobytes())
        out.append(h.hexdigest())
    return out


@dataclass(frozen=True)
class MembershipSets:
    """Who is a member, who is not, and what the reference networks may learn from.

    Attributes:
        members: indices into the member (training) images, class by class.
        nonmembers: indices into the non-member images; same count and class mix as ``members``.
        reference: indices into the non-member images kept for training reference networks (disjoint from
            ``nonmembers``; empty when no reference network is wanted).
        classes: the class of every pair position (``members[i]`` and ``nonmembers[i]`` share ``classes[i]``).
        per_class: ``{class: count}`` of members (= of non-members).
        pool: sizes of what was available: member images, non-member images, duplicates dropped.
    """

    members: I64
    nonmembers: I64
    reference: I64
    classes: I64
    per_class: Mapping[int, int]
    pool: Mapping[str, int] = field(default_factory=dict)

    def describe(self, class_names: Sequence[str] = ()) -> str:
        """One line: counts per class and the reference pool."""
        def name(c: int) -> str:
            return class_names[c] if c < len(class_names) else str(c)

        mix = ", ".join(f"{name(c)} {n}" for c, n in sorted(self.per_class.items()))
        ref = f"; {self.reference.size} other non-members train the reference networks" if self.reference.size else ""
        return f"{self.members.size} members and {self.nonmembers.size} non-members ({mix} each){ref}"


def build_sets(member_labels: npt.ArrayLike, nonmember_labels: npt.ArrayLike, *,
               member_digests: Sequence[str], nonmember_digests: Sequence[str], seed: int = 0,
               min_per_class: int = MIN_PER_CLASS, max_per_class: int | None = None,
               reference_share: float = 0.0, class_names: Sequence[str] = ()) -> MembershipSets:
    """Draw equal-size member and non-member sets with the same class mix (seeded).

    Per class ``c``: the non-member pool is shuffled; when ``reference_share > 0`` that share of it (rounded
    down) is kept apart for the reference networks; of the rest, ``n_c = min(members of c, non-members of
    c, max_per_class)`` are drawn on both sides. Non-members not drawn also go to the reference pool (they
    are not evaluated). Exact duplicates inside the non-member pool are kept once.

    Args:
        member_labels, nonmember_labels: class index of every image (``[N]`` or ``[N, 1]``).
        member_digests, nonmember_digests: :func:`image_digests` of the two image arrays.
        seed: seed of the draws.
        min_per_class: fewest images per class on each side (every class that has members).
        max_per_class: cap per class and side (``None``: no cap).
        reference_share: share of each class's non-member pool kept for reference networks (0 <= s < 1).
        class_names: for messages.

    Raises:
        DataError: a non-member has the digest of a member (the count is named); lengths disagree.
        UsageError: fewer than ``min_per_class`` per class on either side; bad shares or caps.
    """
    ym = np.asarray(member_labels).reshape(-1).astype(np.int64)
    yn = np.asarray(nonmember_labels).reshape(-1).astype(np.int64)
    if ym.size != len(member_digests) or yn.size != len(nonmember_digests):
        raise DataError(f"{ym.size} member labels for {len(member_digests)} images, {yn.size} non-member labels "
                        f"for {len(nonmember_digests)} images")
    if not 0.0 <= reference_share < 1.0:
        raise UsageError(f"reference_share must be in [0, 1), got {reference_share}")
    if min_per_class < 1 or (max_per_class is not None and max_per_class < min_per_class):
        raise UsageError(f"need 1 <= min_per_class <= max_per_class, got {min_per_class}, {max_per_class}")
    known = set(member_digests)
    overlap = sum(1 for d in nonmember_digests if d in known)
    if overlap:
        raise DataError(f"{overlap} non-member image(s) are pixel-identical to member (training) images: a "
                        "membership test needs disjoint sets; give non-members the file was not trained on")

    def name(c: int) -> str:
        return repr(class_names[c]) if c < len(class_names) else str(c)

    rng = np.random.default_rng(seed)
    # duplicates inside the non-member pool would be counted twice: keep the first of each
    seen: set[str] = set()
    first = np.zeros(len(nonmember_digests), dtype=bool)
    for i, d in enumerate(nonmember_digests):
        if d not in seen:
            seen.add(d)
            first[i] = True
    members, nonmembers, reference, classes = [], [], [], []
    per_class: dict[int, int] = {}
    for c in sorted(set(ym.tolist())):
        m_pool = rng.permutation(np.flatnonzero(ym == c))
        n_pool = rng.permutation(np.flatnonzero((yn == c) & first))
        n_ref = math.floor(reference_share * n_pool.size)
        ref, n_eval = n_pool[:n_ref], n_pool[n_ref:]
        n = min(m_pool.size, n_eval.size, max_per_class if max_per_class is not None else n_eval.size)
        if n < min_per_class:
            kept = (f" ({n_ref} of {n_pool.size} kept apart to train the reference networks; --references 0 "
                    "uses them all)") if n_ref else ""
            raise UsageError(f"class {name(c)}: {m_pool.size} member and {n_eval.size} non-member image(s) for the "
                             f"attack{kept}; a membership CI needs at least {min_per_class} of each per class: "
                             "give more non-members (--nonmembers)")
        members.append(np.sort(m_pool[:n]))
        nonmembers.append(np.sort(n_eval[:n]))
        reference.append(np.concatenate([ref, n_eval[n:]]))
        classes.append(np.full(n, c, dtype=np.int64))
        per_class[int(c)] = int(n)
    return MembershipSets(members=np.concatenate(members).astype(np.int64),
                          nonmembers=np.concatenate(nonmembers).astype(np.int64),
                          reference=np.sort(np.concatenate(reference)).astype(np.int64),
                          classes=np.concatenate(classes), per_class=per_class,
                          pool={"members": int(ym.size), "nonmembers": int(yn.size),
                                "nonmember_duplicates": int((~first).sum())})


def aggregate_by_group(scores: npt.ArrayLike, groups: npt.ArrayLike, n_groups: int) -> F64:
    """Mean score of each group (an image's patches -> the image, as Eq. (9) decides an image by its patches).

    Raises:
        DataError: lengths disagree, a group id is out of range, or a group has no item.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    g = np.asarray(groups, dtype=np.int64).reshape(-1)
    if s.size != g.size:
        raise DataError(f"{s.size} scores for {g.size} group ids")
    if g.size and (g.min() < 0 or g.max() >= n_groups):
        raise DataError(f"group ids must be in 0..{n_groups - 1}")
    count = np.bincount(g, minlength=n_groups)
    if (count == 0).any():
        raise DataError(f"{int((count == 0).sum())} image(s) have no scored patch")
    out: F64 = np.bincount(g, weights=s, minlength=n_groups) / count
    return out


# --- the metrics ----------------------------------------------------------------------------------------

def _check_scores(member: npt.ArrayLike, nonmember: npt.ArrayLike) -> tuple[F64, F64]:
    m = np.asarray(member, dtype=np.float64).reshape(-1)
    n = np.asarray(nonmember, dtype=np.float64).reshape(-1)
    if m.size == 0 or n.size == 0:
        raise DataError(f"an attack needs members and non-members, got {m.size} and {n.size}")
    if not (np.isfinite(m).all() and np.isfinite(n).all()):
        raise DataError("attack scores contain NaN or infinite values")
    return m, n


def auc_score(member: npt.ArrayLike, nonmember: npt.ArrayLike) -> float:
    """ROC AUC of "higher score = member": P(member score > non-member score) + 0.5 P(equal)."""
    m, n = _check_scores(member, nonmember)
    ns = np.sort(n)
    below = np.searchsorted(ns, m, side="left")
    not_above = np.searchsorted(ns, m, side="right")
    return float((below.sum() + 0.5 * (not_above - below).sum()) / (m.size * n.size))


def tpr_at_fpr(member: npt.ArrayLike, nonmember: npt.ArrayLike, fpr: float) -> float:
    """The highest TPR of a rule "member when score > t" whose FPR is at most ``fpr``.

    With ``n`` non-members at most ``floor(fpr * n)`` of them may score above ``t``; when that is 0 (e.g. FPR
    0.1 % with fewer than 1000 non-members) this is the share of members above every non-member.
    """
    m, n = _check_scores(member, nonmember)
    if not 0.0 <= fpr <= 1.0:
        raise UsageError(f"fpr must be in [0, 1], got {fpr}")
    k = math.floor(fpr * n.size + 1e-9)
    if k >= n.size:
        return 1.0
    t = np.sort(n)[::-1][k]  # at most k non-members are strictly above t
    return float(np.mean(m > t))


def roc_curve(member: npt.ArrayLike, nonmember: npt.ArrayLike) -> tuple[F64, F64]:
    """(FPR, TPR) of "member when score >= t" over every distinct score, from (0, 0) to (1, 1)."""
    m, n = _check_scores(member, nonmember)
    s = np.concatenate([m, n])
    y = np.concatenate([np.ones(m.size), np.zeros(n.size)])
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # end of each run of equal scores
    tp = np.cumsum(y)[last]
    fp = np.cumsum(1 - y)[last]
    return np.r_[0.0, fp / n.size], np.r_[0.0, tp / m.size]


@dataclass(frozen=True)
class Interval:
    """A value and its bootstrap CI."""

    value: float
    low: float
    high: float

    def text(self, digits: int = 3) -> str:
        """``0.612 [0.571, 0.655]``."""
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    @property
    def width(self) -> float:
        """high - low."""
        return self.high - self.low


def _pct(fpr: float) -> str:
    return f"{100 * fpr:g}%"


@dataclass(frozen=True)
class AttackResult:
    """One attack on one network.

    Attributes:
        attack: ``loss`` (Yeom et al. 2018) or ``lira-offline`` (Carlini et al. 2022).
        target: which network (``distilled`` or ``trained``).
        auc: ROC AUC with its CI.
        tpr: ``{fpr: TPR at that FPR with its CI}``.
        n_members, n_nonmembers: set sizes.
        roc: (FPR, TPR) of the full curve (the plot's), thinned to at most a few hundred points in JSON.
        note: what the reader must know about this attack (e.g. how its reference networks were trained).
    """

    attack: str
    target: str
    auc: Interval
    tpr: Mapping[float, Interval]
    n_members: int
    n_nonmembers: int
    roc: tuple[F64, F64]
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the ROC thinned to at most 200 points, log-spaced in FPR)."""
        fpr, tpr = self.roc
        keep = _thin(fpr, _ROC_POINTS)
        return {"attack": self.attack, "target": self.target, "auc": asdict(self.auc),
                "tpr_at_fpr": {f"{f:g}": asdict(v) for f, v in self.tpr.items()},
                "n_members": self.n_members, "n_nonmembers": self.n_nonmembers,
                "roc": {"fpr": [round(float(v), 6) for v in fpr[keep]],
                        "tpr": [round(float(v), 6) for v in tpr[keep]]},
                "note": self.note}

    def line(self) -> str:
        """``loss attack on distilled: AUC 0.512 [0.47, 0.55]; TPR@1% 0.010 [...]; ...``."""
        tprs = "; ".join(f"TPR@{_pct(f)} FPR {v.text()}" for f, v in self.tpr.items())
        return f"AUC {self.auc.text()}; {tprs}"


def _thin(fpr: F64, k: int) -> I64:
    """Indices of at most ~k points spread evenly in log FPR (first and last kept)."""
    if fpr.size <= k:
        return np.arange(fpr.size, dtype=np.int64)
    grid = np.r_[0.0, np.logspace(-5, 0, k - 2)]
    idx = np.unique(np.r_[0, np.searchsorted(fpr, grid, side="left").clip(0, fpr.size - 1), fpr.size - 1])
    return idx.astype(np.int64)


def evaluate_attack(attack: str, target: str, member_scores: npt.ArrayLike, nonmember_scores: npt.ArrayLike, *,
                    fprs: Sequence[float] = DEFAULT_FPRS, bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0,
                    level: float = 0.95, note: str = "") -> AttackResult:
    """AUC and TPR at each FPR of one attack, each with a percentile-bootstrap CI.

    Each resample draws the members and the non-members with replacement, separately (so both set sizes
    stay fixed), and recomputes every metric; the CI is the central ``level`` share of the resampled values.

    Raises:
        DataError: empty or non-finite scores. UsageError: bad ``bootstrap``/``level``/``fprs``.
    """
    m, n = _check_scores(member_scores, nonmember_scores)
    if bootstrap < 10:
        raise UsageError(f"bootstrap needs at least 10 resamples, got {bootstrap}")
    if not 0.5 < level < 1.0:
        raise UsageError(f"CI level must be in (0.5, 1), got {level}")
    for f in fprs:
        if not 0.0 < f < 1.0:
            raise UsageError(f"FPR must be in (0, 1), got {f}")
    rng = np.random.default_rng(seed)
    aucs = np.empty(bootstrap)
    tprs = np.empty((len(fprs), bootstrap))
    for b in range(bootstrap):
        mb = m[rng.integers(0, m.size, m.size)]
        nb = n[rng.integers(0, n.size, n.size)]
        aucs[b] = auc_score(mb, nb)
        for j, f in enumerate(fprs):
            tprs[j, b] = tpr_at_fpr(mb, nb, f)
    lo_q, hi_q = 100 * (1 - level) / 2, 100 * (1 + level) / 2

    def interval(value: float, samples: F64) -> Interval:
        lo, hi = np.percentile(samples, [lo_q, hi_q])
        return Interval(float(value), float(lo), float(hi))

    return AttackResult(attack=attack, target=target, auc=interval(auc_score(m, n), aucs),
                        tpr={float(f): interval(tpr_at_fpr(m, n, f), tprs[j]) for j, f in enumerate(fprs)},
                        n_members=int(m.size), n_nonmembers=int(n.size), roc=roc_curve(m, n), note=note)


# --- the report -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MembershipConfig:
    """Knobs of the membership audit; every value is stated in the JSON report.

    Attributes:
        references: reference networks of the offline LiRA attack (0: loss attack only).
        reference_share: share of each class's non-member pool kept to train them (when references > 0).
        flag_auc: FLAG when the lower CI bound of an attack's AUC on the audited network exceeds this.
        fprs: FPRs at which TPR is reported.
        bootstrap: resamples per CI.
        level: CI level.
        min_per_class: fewest images per class and side.
        max_per_class: cap per class and side (``None``: as many as the non-members allow).
        seed: seed of the set draws, the bootstrap and the reference networks' init and batches.
        train_steps, train_batch, train_lr: training of the reference (and comparison) networks.
    """

    references: int = 4
    reference_share: float = 0.5
    flag_auc: float = DEFAULT_FLAG_AUC
    fprs: tuple[float, ...] = DEFAULT_FPRS
    bootstrap: int = DEFAULT_BOOTSTRAP
    level: float = 0.95
    min_per_class: int = MIN_PER_CLASS
    max_per_class: int | None = None
    seed: int = 0
    train_steps: int = 500
    train_batch: int = 64
    train_lr: float = 1e-3

    def check(self) -> None:
        """Raise :class:`UsageError` for out-of-range values."""
        if self.references < 0:
            raise UsageError(f"references must be >= 0, got {self.references}")
        if not 0.0 < self.reference_share < 1.0:
            raise UsageError(f"reference_share must be in (0, 1), got {self.reference_share}")
        if not 0.5 <= self.flag_auc < 1.0:
            raise UsageError(f"flag_auc must be in [0.5, 1), got {self.flag_auc}")
        if self.bootstrap < 10:
            raise UsageError(f"bootstrap must be >= 10, got {self.bootstrap}")
        if self.train_steps < 1 or self.train_batch < 1 or not self.train_lr > 0:
            raise UsageError("reference training needs steps >= 1, batch >= 1, lr > 0")

    def rule(self) -> str:
        """The verdict rule in words."""
        return (f"FLAG when the lower bound of the {100 * self.level:g}% bootstrap CI of any attack's AUC on the "
                f"audited network exceeds {self.flag_auc:g}")


_TARGET_NAMES = {"distilled": "distilled file", "trained": "normally trained network"}


@dataclass(frozen=True)
class MembershipReport:
    """The membership section of an audit report.

    Attributes:
        config: the knobs.
        sets: the member / non-member / reference sets (their description).
        attacks: every attack on every network (``target`` ``distilled`` is the audited one).
        level: ``image`` (whole images) or ``image (patch scores averaged per image, Eq. 9 style)``.
        notes: what the reader must know (data digest mismatch, small sets, TPR at zero false positives).
        source: what was read (file, member data, non-member data, comparison network).
    """

    config: MembershipConfig
    sets: str
    attacks: tuple[AttackResult, ...]
    level: str = "image"
    notes: tuple[str, ...] = ()
    source: Mapping[str, Any] = field(default_factory=dict)

    def audited(self) -> tuple[AttackResult, ...]:
        """The attacks on the audited (distilled) network."""
        return tuple(a for a in self.attacks if a.target == "distilled")

    @property
    def flagged(self) -> bool:
        """True when an attack on the audited network beats the rule."""
        return any(a.auc.low > self.config.flag_auc for a in self.audited())

    @property
    def verdict(self) -> str:
        """``"PASS"`` or ``"FLAG"``."""
        return "FLAG" if self.flagged else "PASS"

    def comparison_lines(self) -> list[str]:
        """One line per attack: ``distilled file: AUC a [ci]; normally trained network: AUC b [ci]``."""
        out = []
        for name in dict.fromkeys(a.attack for a in self.attacks):
            parts = [f"{_TARGET_NAMES.get(a.target, a.target)}: AUC {a.auc.text()}"
                     for a in self.attacks if a.attack == name]
            out.append(f"{name} attack: " + "; ".join(parts))
        return out

    def verdict_line(self) -> str:
        """One line a human can act on."""
        best = max(self.audited(), key=lambda a: a.auc.low)
        if self.flagged:
            return (f"FLAG: the {best.attack} attack tells members from non-members of the distilled file's network "
                    f"(AUC {best.auc.text()}, lower bound above {self.config.flag_auc:g})")
        return (f"PASS: no attack's AUC on the distilled file's network has a CI lower bound above "
                f"{self.config.flag_auc:g} (highest: {best.attack} AUC {best.auc.text()}); this bounds these "
                "attacks on these sets, not every attack")

    def lines(self) -> list[str]:
        """The text report."""
        out = [f"membership inference ({self.level}): {self.sets}"]
        for a in self.attacks:
            out.append(f"  {a.attack:<13} {_TARGET_NAMES.get(a.target, a.target):<25} {a.line()}")
        out += ["", *self.comparison_lines()]
        out += [f"note: {n}" for n in self.notes]
        out += ["", self.verdict_line()]
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        cfg = asdict(self.config)
        cfg["fprs"] = list(self.config.fprs)
        return {"verdict": self.verdict, "verdict_line": self.verdict_line(), "rule": self.config.rule(),
                "config": cfg, "sets": self.sets, "level": self.level,
                "attacks": [a.to_dict() for a in self.attacks], "comparison": self.comparison_lines(),
                "notes": list(self.notes), "source": dict(self.source)}

    def to_record(self) -> MembershipRecord:
        """What ``--record`` binds into the file (spec 5.3.2 ``membership``): the verdict, the threshold, and
        AUC with its CI (and TPR at FPR 1 %) of every attack on every network."""
        return MembershipRecord(
            verdict=self.verdict, flag_auc=self.config.flag_auc,
            attacks=tuple(MembershipAttack(attack=a.attack, target=a.target, auc=a.auc.value, auc_low=a.auc.low,
                                           auc_high=a.auc.high,
                                           tpr_at_1pct_fpr=a.tpr[0.01].value if 0.01 in a.tpr else None,
                                           n=a.n_members) for a in self.attacks))


def combine_reports(similarity: Mapping[str, Any], membership: MembershipReport | None,
                    roc_png: str | None = None) -> dict[str, Any]:
    """The audit report: the image-similarity audit's ``to_dict()`` and, when it ran, the membership section.

    With a membership section, ``verdict`` is ``FLAG`` when either part flags; the image-similarity verdict
    stays under ``image_similarity_verdict`` and the membership one under ``membership.verdict``.
    """
    doc = dict(similarity)
    if membership is None:
        return doc
    section = membership.to_dict()
    section["roc_png"] = roc_png
    doc["image_similarity_verdict"] = doc.get("verdict")
    doc["membership"] = section
    doc["verdict"] = "FLAG" if "FLAG" in (doc.get("verdict"), membership.verdict) else "PASS"
    return doc


# --- the plot -------------------------------------------------------------------------------------------

_COLOURS = {("loss", "distilled"): (31, 119, 180), ("lira-offline", "distilled"): (214, 39, 40),
            ("loss", "trained"): (127, 170, 210), ("lira-offline", "trained"): (240, 140, 140)}


def save_roc_png(report: MembershipReport, path: str | os.PathLike[str], *, size: int = 520) -> None:
    """ROC curves of every attack, FPR on a log scale (1e-3 .. 1; the low-FPR regime is what matters), TPR
    linear, chance as the diagonal TPR = FPR; written atomically (Pillow)."""
    import io

    from PIL import Image, ImageDraw, ImageFont

    from sldpack.atomic import atomic_write_bytes

    left, top, right, bottom = 60, 30, 20, 50
    legend_h = 16 * len(report.attacks) + 8
    w, h = size, size + legend_h
    img = Image.new("RGB", (w, h), (255, 255, 255))
    dr = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    pw, ph = w - left - right, size - top - bottom
    lo = -3.0

    def xy(fpr: float, tpr: float) -> tuple[float, float]:
        lx = (math.log10(max(fpr, 10 ** lo)) - lo) / -lo
        return left + lx * pw, top + (1 - tpr) * ph

    dr.rectangle([left, top, left + pw, top + ph], outline=(0, 0, 0))
    for e in range(int(lo), 1):
        x, _ = xy(10.0 ** e, 0)
        dr.line([x, top, x, top + ph], fill=(225, 225, 225))
        dr.text((x - 12, top + ph + 6), f"1e{e}" if e else "1", fill=(0, 0, 0), font=font)
    for t in (0.25, 0.5, 0.75, 1.0):
        _, y = xy(1, t)
        dr.line([left, y, left + pw, y], fill=(225, 225, 225))
        dr.text((left - 30, y - 5), f"{t:.2f}", fill=(0, 0, 0), font=font)
    chance = np.logspace(lo, 0, 100)
    dr.line([xy(float(f), float(f)) for f in chance], fill=(150, 150, 150), width=1)
    for a in report.attacks:
        fpr, tpr = a.roc
        pts = [xy(float(f), float(t)) for f, t in zip(fpr, tpr, strict=True) if f > 0]
        colour = _COLOURS.get((a.attack, a.target), (80, 80, 80))
        if len(pts) > 1:
            dr.line(pts, fill=colour, width=2)
    dr.text((left, 8), f"membership inference ROC ({report.verdict}); FPR log scale", fill=(0, 0, 0), font=font)
    dr.text((left + pw // 2 - 40, top + ph + 22), "false positive rate", fill=(0, 0, 0), font=font)
    dr.text((4, top - 18), "TPR", fill=(0, 0, 0), font=font)
    y = size
    for a in report.attacks:
        colour = _COLOURS.get((a.attack, a.target), (80, 80, 80))
        dr.line([left, y + 6, left + 24, y + 6], fill=colour, width=3)
        dr.text((left + 30, y), f"{a.attack}, {_TARGET_NAMES.get(a.target, a.target)}: AUC {a.auc.text()}",
                fill=(0, 0, 0), font=font)
        y += 16
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
