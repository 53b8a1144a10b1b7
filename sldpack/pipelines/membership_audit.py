"""The membership audit of a ``.sldp`` file (``sldp audit --membership``): replay, attack, compare.

1. The file is replayed (:func:`sldpack.nn.replay.replay`): the network anyone holding the file gets.
2. Members are the training images (the data the file was distilled from), non-members held-out images
   of the same distribution; :func:`~sldpack.pipelines.membership.build_sets` draws equal counts with the
   same class mix and refuses overlapping sets. When reference networks are wanted, a part of the
   non-member pool that is not attacked trains them.
3. Every network scores every attacked image (:mod:`sldpack.nn.membership`): the loss attack (Yeom et al.
   2018) and, with references, the offline LiRA attack (Carlini et al. 2022). A patch model (the file
   records its patch geometry) classifies the labelled I/N/P windows of an image, cut as the distiller cut
   them; the image's membership score is the mean of its windows' scores, the way Eq. (9) decides an
   image from its windows.
4. The same attacks run on a network of the same architecture trained normally on the same training data
   (trained here, or a ``sldp train --save`` checkpoint), so the distilled file's AUC has a yardstick.

Nothing is written here: the caller writes the report (atomically) once everything finished.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from sldpack.errors import DataError, UsageError
from sldpack.format.manifest import ArchSpec, Manifest, Preprocessing
from sldpack.medical.imageset import ImageSet
from sldpack.medical.patches import build_patch_index, cut_patches
from sldpack.medical.similarity import area_resize
from sldpack.pipelines.audit_items import as_nchw, pixel_scale
from sldpack.pipelines.membership import (
    AttackResult,
    MembershipConfig,
    MembershipReport,
    MembershipSets,
    aggregate_by_group,
    build_sets,
    evaluate_attack,
    image_digests,
)
from sldpack.pipelines.patch_source import PatchSource, PatchTask, patch_task_from_manifest
from sldpack.pipelines.sources import ArraySource, RealSource

if TYPE_CHECKING:
    from torch import nn

    from sldpack.nn.membership import Signals
    from sldpack.pipelines.inputs import DataSpec
    from sldpack.pipelines.models import TrainedModel

__all__ = ["DEFAULT_PATCHES_PER_IMAGE", "LabelledImages", "MembershipProgress", "membership_audit", "read_labelled",
           "read_member_sets"]

MembershipProgress = Callable[[str], None]
"""``progress(line)``: one human line per stage (and every few training steps)."""

DEFAULT_PATCHES_PER_IMAGE = 64
"""Labelled windows scored per image of a patch model (seeded draw; all when fewer)."""

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class LabelledImages:
    """Real images with their labels (and organ masks, for a patch model), as read.

    Attributes:
        images: ``[N, H, W]``, ``[N, H, W, C]`` or ``[N, C, H, W]`` as stored (uint8, or float in [0, 1]).
        labels: int64 ``[N]`` class indices (image labels; 0/1 for a patch model).
        masks: ``[N, H, W]`` organ masks, or ``None``.
        name: where they came from (for the report).
    """

    images: Any
    labels: I64
    masks: Any | None = None
    name: str = ""

    @classmethod
    def from_image_set(cls, data: ImageSet, name: str) -> LabelledImages:
        """The images, labels and masks of an :class:`ImageSet`."""
        return cls(data.images, np.asarray(data.labels, dtype=np.int64).reshape(-1), data.masks, name)

    def __len__(self) -> int:
        return int(self.labels.size)

    def subset(self, idx: I64) -> LabelledImages:
        """The images at ``idx`` (copied into memory)."""
        i = np.asarray(idx, dtype=np.int64)
        return LabelledImages(np.asarray(self.images[i]), self.labels[i],
                              None if self.masks is None else np.asarray(self.masks[i]), self.name)

    def image_set(self) -> ImageSet:
        """As an :class:`ImageSet` (grayscale ``[N, H, W]`` with masks)."""
        imgs = np.asarray(self.images)
        if imgs.ndim != 3:
            raise DataError(f"{self.name}: a patch model needs grayscale [N, H, W] images, got {imgs.shape}")
        return ImageSet(imgs, None if self.masks is None else np.asarray(self.masks), self.labels,
                        tuple(f"{self.name}[{i}]" for i in range(len(self))))


class _Inputs:
    """How images become network inputs for one file, and what a network trains on."""

    level = "image"

    def __init__(self, pre: Preprocessing, num_classes: int) -> None:
        self.pre = pre
        self.num_classes = num_classes

    def _x01(self, data: LabelledImages) -> F32:
        raw = as_nchw(np.asarray(data.images), data.name)
        x = np.asarray(raw, dtype=np.float32) / np.float32(pixel_scale(np.asarray(data.images)))
        h, w = (int(v) for v in self.pre.image_size)
        if tuple(x.shape[2:]) != (h, w):
            if x.shape[2] < h or x.shape[3] < w:
                raise DataError(f"{data.name}: images are {x.shape[2]}x{x.shape[3]} px, the network expects "
                                f"{h}x{w}; they are not up-sampled")
            x = np.asarray(area_resize(x, (h, w)), dtype=np.float32)
        c = self.pre.channels
        if x.shape[1] != c:
            if x.shape[1] != 1:
                raise DataError(f"{data.name}: images have {x.shape[1]} channels, the network expects {c}")
            x = np.repeat(x, c, axis=1)
        return x

    def inputs(self, data: LabelledImages, seed: int) -> tuple[F32, I64, I64]:
        """``(network inputs, their labels, the image each belongs to)``."""
        x = self._x01(data)
        mu = np.asarray(self.pre.mean, dtype=np.float32).reshape(1, -1, 1, 1)
        sd = np.asarray(self.pre.std, dtype=np.float32).reshape(1, -1, 1, 1)
        return ((x - mu) / sd).astype(np.float32), data.labels, np.arange(len(data), dtype=np.int64)

    def source(self, data: LabelledImages) -> RealSource:
        """A training source over ``data`` with the file's preprocessing."""
        return ArraySource(images=self._x01(data), labels=data.labels, mean=tuple(self.pre.mean),
                           std=tuple(self.pre.std), scale=1.0, num_classes=self.num_classes)


class _PatchInputs(_Inputs):
    level = "image (a patch model: each image scored by the mean of its labelled windows' scores, as Eq. (9) " \
            "decides an image from its windows)"

    def __init__(self, pre: Preprocessing, settings: PatchTask, per_image: int) -> None:
        super().__init__(pre, 3)
        self.settings = settings
        self.per_image = per_image

    def inputs(self, data: LabelledImages, seed: int) -> tuple[F32, I64, I64]:
        ims = data.image_set()
        index = build_patch_index(ims.require_masks(), ims.labels, self.settings.config())
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x9A7C]))
        keep = []
        for i in range(len(ims)):
            mine = np.flatnonzero(index.image == i)
            if mine.size == 0:
                raise DataError(f"{ims.names[i]} has no labelled window with the file's patch geometry "
                                f"({self.settings.size} px, stride {self.settings.stride}): cannot score it")
            keep.append(np.sort(rng.choice(mine, size=min(mine.size, self.per_image), replace=False)))
        pos = np.concatenate(keep)
        patches = cut_patches(ims.images, index.image[pos], index.y[pos], index.x[pos], index.size,
                              out_size=self.settings.out_size)
        x = (patches - np.float32(self.pre.mean[0])) / np.float32(self.pre.std[0])
        return (np.ascontiguousarray(x[:, None], dtype=np.float32), index.label[pos].astype(np.int64),
                index.image[pos].astype(np.int64))

    def source(self, data: LabelledImages) -> RealSource:
        return PatchSource.from_image_set(data.image_set(), self.settings, mean=float(self.pre.mean[0]),
                                          std=float(self.pre.std[0]))


def _task(manifest: Manifest, per_image: int) -> _Inputs:
    pre = manifest.preprocessing
    if pre is None:
        raise UsageError("the file records no preprocessing (mean/std): cannot feed it real images")
    geometry = patch_task_from_manifest(manifest)
    if geometry is not None:
        return _PatchInputs(pre, geometry, per_image)
    return _Inputs(pre, manifest.arch.num_classes)


def _data_digest_note(manifest: Manifest, members: LabelledImages) -> str | None:
    from sldpack.format.provenance import training_data_sha256

    recorded = manifest.provenance.training_data_sha256
    if recorded is None:
        return ("the file records no training-data digest: that the member data is what it was distilled from "
                "is the caller's claim")
    try:
        mine = training_data_sha256(members.images, members.labels, members.masks)
    except DataError:
        return None
    if mine != recorded:
        return ("the member data's digest differs from the file's recorded training-data digest (spec 5.3.1): "
                "if the file was not distilled from exactly these images (another split, a --select val-* hold-"
                "out), some 'members' were never seen and the AUC understates the leak")
    return None


def _signals(module: nn.Module, x: F32, y: I64) -> Signals:
    from sldpack.nn.membership import example_signals

    return example_signals(module, x, y)


def _attacks(target: str, sig: Signals, refs: Sequence[Signals], groups: I64, n_images: int, n_members: int,
             cfg: MembershipConfig, ref_note: str) -> list[AttackResult]:
    from sldpack.nn.membership import lira_offline_scores, loss_attack_scores

    scores = [("loss", loss_attack_scores(sig), "")]
    if refs:
        scores.append(("lira-offline", lira_offline_scores(sig, refs), ref_note))
    out = []
    for name, s, note in scores:
        per_image = aggregate_by_group(s, groups, n_images)
        out.append(evaluate_attack(name, target, per_image[:n_members], per_image[n_members:], fprs=cfg.fprs,
                                   bootstrap=cfg.bootstrap, seed=cfg.seed, level=cfg.level, note=note))
    return out


def _train_progress(progress: MembershipProgress | None, what: str) -> Callable[[int, int, float], None]:
    def cb(step: int, steps: int, loss: float) -> None:
        if progress is not None and (step == steps or step % max(1, steps // 5) == 0):
            progress(f"{what}: step {step}/{steps}, loss {loss:.4f}")
    return cb


def membership_audit(path: str | os.PathLike[str], members: LabelledImages, nonmembers: LabelledImages, *,
                     config: MembershipConfig | None = None, compare: TrainedModel | str | None = "train",
                     device: str = "cpu", threads: int | None = None,
                     compare_name: str = "", patches_per_image: int = DEFAULT_PATCHES_PER_IMAGE,
                     progress: MembershipProgress | None = None) -> MembershipReport:
    """Membership-inference audit of the network ``path`` replays to.

    Args:
        path: the ``.sldp`` file.
        members: the training images (what the file was distilled from).
        nonmembers: held-out images of the same distribution (never trained on).
        config: the knobs (references, threshold, CI, training of the reference/comparison networks).
        compare: ``"train"``: train a network of the file's architecture normally on all of ``members``
            (``config.train_*``) and attack it too; a :class:`~sldpack.pipelines.models.TrainedModel`
            (``sldp train --save``): attack that one; ``None``: no comparison.
        compare_name: what ``compare`` is when it is a model (e.g. its path), for the report.
        device, threads: where and with how many CPU threads torch runs (replay, scoring, training).
        patches_per_image: labelled windows scored per image of a patch model.
        progress: called with one line per stage.

    Returns:
        The :class:`MembershipReport` (``source`` names the data; nothing is written).

    Raises:
        UsageError: too few images per class, no preprocessing, bad settings.
        DataError: overlapping sets, unreadable or mismatching data.
    """
    from sldpack.nn.device import resolve_device, thread_count
    from sldpack.nn.membership import train_references
    from sldpack.nn.replay import replay

    cfg = config or MembershipConfig()
    cfg.check()
    if patches_per_image < 1:
        raise UsageError(f"patches_per_image must be >= 1, got {patches_per_image}")

    def say(line: str) -> None:
        if progress is not None:
            progress(line)

    from sldpack.format.container import open as open_sldp

    with open_sldp(path) as f:
        manifest = f.manifest
    task = _task(manifest, patches_per_image)
    # a patch model's members are images labelled normal/diseased; a whole-image model's, the file's classes
    names = ("normal", "diseased") if isinstance(task, _PatchInputs) else (
        tuple(manifest.labels.names) if manifest.labels is not None else ())
    k = 2 if isinstance(task, _PatchInputs) else manifest.arch.num_classes
    for what, d in (("member", members), ("non-member", nonmembers)):
        if len(d) and (int(d.labels.min()) < 0 or int(d.labels.max()) >= k):
            raise DataError(f"{what} labels must be in 0..{k - 1} (the file's classes), got "
                            f"{int(d.labels.min())}..{int(d.labels.max())}")
    # the sets first: overlapping or too small sets are refused before any network runs
    say("hashing images to check that members and non-members are disjoint")
    sets: MembershipSets = build_sets(
        members.labels, nonmembers.labels, member_digests=image_digests(members.images),
        nonmember_digests=image_digests(nonmembers.images), seed=cfg.seed, min_per_class=cfg.min_per_class,
        max_per_class=cfg.max_per_class, reference_share=cfg.reference_share if cfg.references else 0.0,
        class_names=names)
    say(sets.describe(names))
    dev = resolve_device(device)
    with thread_count(threads):
        say(f"replaying {os.fspath(path)}")
        rep = replay(path, device=dev)
        attacked = _concat(members.subset(sets.members), nonmembers.subset(sets.nonmembers))
        x, y, groups = task.inputs(attacked, cfg.seed)
        n_img, n_mem = len(attacked), int(sets.members.size)

        refs: list[Signals] = []
        ref_note = ""
        if cfg.references:
            pool = nonmembers.subset(sets.reference)
            arch: ArchSpec = manifest.arch
            say(f"training {cfg.references} reference network(s) of {arch.id} on {len(pool)} non-member images "
                f"(not attacked), {cfg.train_steps} steps each")

            def ref_progress(r: int, n: int, step: int, steps: int) -> None:
                if step == steps or step % max(1, steps // 5) == 0:
                    say(f"reference {r + 1}/{n}: step {step}/{steps}")

            nets = train_references(arch, task.source(pool), cfg.references, steps=cfg.train_steps,
                                    batch_size=cfg.train_batch, lr=cfg.train_lr, seed=cfg.seed, device=dev,
                                    progress=ref_progress)
            refs = [_signals(net, x, y) for net in nets]
            ref_note = (f"{cfg.references} reference network(s) of {arch.id}, trained normally on {len(pool)} "
                        f"non-member images that are not attacked ({cfg.train_steps} steps, batch "
                        f"{cfg.train_batch}, lr {cfg.train_lr:g}); fixed global variance")
        say(f"scoring {x.shape[0]:,} input(s) of {n_img} images on the distilled file's network")
        attacks = _attacks("distilled", _signals(rep.module, x, y), refs, groups, n_img, n_mem, cfg, ref_note)
        source: dict[str, Any] = {"file": os.fspath(path), "members": members.name, "nonmembers": nonmembers.name,
                                  "pool": dict(sets.pool), "per_class": {str(c): n for c, n in
                                                                         sets.per_class.items()}}
        if compare is not None:
            cmp_module, cmp_x, what = _comparison(compare, task, members, attacked, manifest, cfg, dev, say, progress,
                                                  x, compare_name)
            attacks += _attacks("trained", _signals(cmp_module, cmp_x, y), refs, groups, n_img, n_mem, cfg,
                                ref_note)
            source["trained"] = what
    notes = []
    digest_note = _data_digest_note(manifest, members)
    if digest_note:
        notes.append(digest_note)
    if n_mem < 1000:
        small = [f for f in cfg.fprs if f * n_mem < 1]
        if small:
            notes.append(f"with {n_mem} non-members, TPR at FPR {'/'.join(f'{100 * f:g}%' for f in small)} is the "
                         "TPR at zero false positives (the smallest non-zero FPR is 1/n)")
    wide = [a for a in attacks if a.auc.width > 0.2]
    if wide:
        notes.append(f"small sets: AUC CIs up to {max(a.auc.width for a in wide):.2f} wide; the attacks are "
                     "poorly resolved (more non-members narrow them)")
    return MembershipReport(config=cfg, sets=sets.describe(names),
                            attacks=tuple(attacks), level=task.level, notes=tuple(notes), source=source)


def _concat(a: LabelledImages, b: LabelledImages) -> LabelledImages:
    return LabelledImages(np.concatenate([np.asarray(a.images), np.asarray(b.images)]),
                          np.concatenate([a.labels, b.labels]),
                          None if a.masks is None or b.masks is None else
                          np.concatenate([np.asarray(a.masks), np.asarray(b.masks)]), f"{a.name}+{b.name}")


def _comparison(compare: TrainedModel | str, task: _Inputs, members: LabelledImages, attacked: LabelledImages,
                manifest: Manifest, cfg: MembershipConfig, dev: Any, say: MembershipProgress,
                progress: MembershipProgress | None, x: F32, name: str) -> tuple[nn.Module, F32, str]:
    """The normally trained network, its inputs for the attacked images, and a line saying what it is."""
    from sldpack.pipelines.models import train_model

    if isinstance(compare, str):
        if compare != "train":
            raise UsageError(f"compare must be 'train', a TrainedModel or None, got {compare!r}")
        arch = manifest.arch
        say(f"training the comparison network: {arch.id} normally on all {len(members)} member (training) images, "
            f"{cfg.train_steps} steps")
        tm = train_model(task.source(members), arch=arch.id, arch_options=arch.options, batchnorm=arch.batchnorm,
                         steps=cfg.train_steps, batch_size=cfg.train_batch, lr=cfg.train_lr, seed=cfg.seed,
                         device=str(dev), progress=_train_progress(progress, "comparison network"))
        what = (f"{arch.id} trained normally here on the {len(members)} member images ({cfg.train_steps} steps, "
                f"batch {cfg.train_batch}, lr {cfg.train_lr:g}, seed {cfg.seed})")
        return tm.module, x, what
    if compare.arch.id != manifest.arch.id:
        raise UsageError(f"the comparison network is {compare.arch.id}, the file's is {manifest.arch.id}: compare "
                         "networks of the same architecture")
    # the checkpoint's own preprocessing feeds it (its mean/std may differ from the file's)
    if isinstance(task, _PatchInputs):
        other: _Inputs = _PatchInputs(compare.preprocessing, task.settings, task.per_image)
    else:
        other = _Inputs(compare.preprocessing, task.num_classes)
    cx, _, _ = other.inputs(attacked, cfg.seed)
    return compare.module.to(dev), cx, f"normally trained checkpoint {name}".rstrip()


# --- reading the sets -----------------------------------------------------------------------------------

def read_labelled(spec: DataSpec, split: str) -> LabelledImages:
    """One split of the data ``spec`` names, with labels (and masks when the data has them).

    A MedMNIST file is read as stored (channels kept; its own ``train``/``val``/``test`` splits); every other
    layout and ``--phantom`` through the shared loader and split rule (:meth:`DataSpec.select`).

    Raises:
        UsageError: no or several sources, a ``--source`` plug-in, a ``.npy`` array (no labels).
        DataError: unreadable data, or no labels for the split.
    """
    from sldpack.pipelines.audit_items import load_real_images
    from sldpack.pipelines.datasets import detect_format

    if spec.source is not None:
        raise UsageError("the membership audit reads --data PATH or --phantom N, not a --source plug-in")
    if spec.data is not None and spec.data.endswith(".npy"):
        raise UsageError(f"{spec.data}: a .npy image array has no labels; the membership audit needs labelled "
                         "images (an .npz, a folder, or a MedMNIST file)")
    if spec.data is not None and spec.format in ("auto", "medmnist") and detect_format(spec.data) == "medmnist":
        images, labels = load_real_images(spec.data, split)
        if labels is None:
            raise DataError(f"{spec.data}: no {split}_labels: the membership audit needs labels")
        return LabelledImages(images, np.asarray(labels, dtype=np.int64).reshape(-1), None, f"{spec.data} [{split}]")
    sel = spec.select(split)
    return LabelledImages.from_image_set(sel.data, f"{sel.source} [{split}]")


def read_member_sets(spec: DataSpec, split: str, nonmembers: str | None = None,
                     nonmember_split: str | None = None) -> tuple[LabelledImages, LabelledImages]:
    """The members (``split`` of the data, the training images) and the non-members.

    Non-members: ``nonmember_split`` (default ``all``; ``test`` for a MedMNIST file) of ``nonmembers`` read
    with the same data options, or -- without ``nonmembers`` -- the held-out split of the same data
    (``test``: a MedMNIST file's own test split, else the part the split rule keeps out of training).

    Raises:
        UsageError: members and non-members named as the same split of the same data.
    """
    from dataclasses import replace

    from sldpack.pipelines.datasets import detect_format

    members = read_labelled(spec, split)
    if nonmembers is None:
        nsplit = nonmember_split or "test"
        if nsplit == split:
            raise UsageError(f"members and non-members are both split {split!r} of the same data: give "
                             "--nonmember-split or --nonmembers")
        return members, read_labelled(spec, nsplit)
    nspec = replace(spec, data=nonmembers, phantom=None, source=None)
    medmnist = spec.format in ("auto", "medmnist") and detect_format(nonmembers) == "medmnist"
    return members, read_labelled(nspec, nonmember_split or ("test" if medmnist else "all"))
