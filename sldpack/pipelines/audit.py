"""Privacy audit: is any distilled image a (near) copy of a real training image?

For every distilled image the audit finds its nearest real training image (or patch) under two
similarities, at the distilled resolution:

* **NCC**, normalised cross-correlation over all pixels and channels (Pearson correlation of the
  two images). It is invariant to brightness and contrast changes, so a copy that was shifted or
  scaled in intensity is still caught. Computed on the distilled values as stored (de-normalised
  with the manifest's mean/std, *not* clipped), against every real image.
* **SSIM** (Wang et al. 2004) with a uniform (default) or Gaussian (sigma 1.5) 7 x 7 window,
  K1 = 0.01, K2 = 0.03, data range L = 1, "valid" windows only (no padding), weighted population
  (co)variances, mean over windows and channels. Both images are clipped to [0, 1] first: SSIM needs a
  data range, and what could leak is what a viewer sees. The SSIM nearest neighbour is searched among
  the ``ssim_candidates`` best NCC neighbours of each image (exact when that is >= the number of
  real images); the JSON output states the value used.

Whether a similarity is *high* depends on the data (chest X-rays all look alike), so each distilled
image's nearest-neighbour similarity is compared with the distribution of nearest-neighbour similarity
between *distinct* real images: a seeded sample of real images, each against all the other real
images. Items from the same source image (overlapping patches) and exact pixel duplicates (real data
sets contain them: PneumoniaMNIST's training split has 18 duplicate pairs) are excluded from that
reference, because they are the same picture, not two patients.

Verdict rule (documented in the CLI help and the JSON): an image is **flagged** when its NCC or its
SSIM to the nearest real item is above the ``percentile``-th percentile (default 99) of the real-real
distribution of that measure, or when its NCC is >= ``copy_ncc`` (default 0.99, a near-exact copy
whatever the distribution says). ``sldp audit`` exits with code 1 when anything is flagged.

Limitation of patch mode (``patch_stride``): background windows (outside the body) look alike across
patients, so the real-real reference is nearly 1 there (Montgomery, 64 px windows at stride 32: NCC
99th percentile 0.99997) and a distilled I-class patch may be flagged by the copy rule without showing
anyone; read the sheet before acting on a patch-mode FLAG.

Memory is bounded: the real set is streamed in chunks of ``chunk`` items (converted to float and
resized per chunk), no real-by-real similarity matrix is ever materialised; what is kept is the top-k
neighbour list per query. The source array itself stays as stored: an ``.npz`` member is loaded once
in its own dtype (uint8 for MedMNIST), an ``.npy`` file is memory-mapped and read chunk by chunk.
The module is torch-free (numpy only; Pillow, through :mod:`sldpack.medical.montage`, for the sheet).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from sldpack.errors import DataError, UsageError
from sldpack.medical.imageset import ImageSet
from sldpack.medical.patches import PatchSampler, build_patch_index
from sldpack.medical.similarity import (
    Window,
    area_resize,
    ncc,
    ncc_matrix,
    ssim,
    ssim_batch,
    unit_rows,
)
from sldpack.pipelines.audit_items import (
    RealImages,
    RealItems,
    RealPatches,
    RealPatchesAsDistilled,
    as_nchw,
    load_real_images,
)
from sldpack.pipelines.inputs import DataSpec
from sldpack.pipelines.patch_source import PatchTask

__all__ = [
    "AuditConfig",
    "AuditData",
    "AuditResult",
    "Distribution",
    "ImageFinding",
    "Neighbour",
    "RealImages",
    "RealItems",
    "RealPatches",
    "RealPatchesAsDistilled",
    "area_resize",
    "audit_data_for",
    "audit_file",
    "audit_images",
    "distilled_pixels",
    "load_real_images",
    "ncc",
    "ncc_matrix",
    "patches_as_distilled",
    "save_sheet",
    "ssim",
    "ssim_batch",
]

F64 = npt.NDArray[np.float64]

# --- results ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AuditConfig:
    """Knobs of the audit; every default is stated in the JSON output.

    Attributes:
        percentile: reference percentile of the real-real nearest-neighbour distribution (99).
        copy_ncc: NCC at or above which an image is a near-exact copy regardless (0.99).
        k: real neighbours shown per distilled image in the sheet and JSON (3).
        real_sample: real images sampled (seeded) for the real-real distribution (1000; all if fewer).
        ssim_candidates: SSIM is searched among this many best NCC neighbours (64).
        chunk: real items resized and compared at a time (memory bound) (512).
        window, win_size: SSIM window (uniform, 7).
        seed: seed of the real-sample draw (0).
        patch_stride: when set, real images are cut into windows of the distilled size at this stride
            instead of being resized.
    """

    percentile: float = 99.0
    copy_ncc: float = 0.99
    k: int = 3
    real_sample: int = 1000
    ssim_candidates: int = 64
    chunk: int = 512
    window: Window = "uniform"
    win_size: int = 7
    seed: int = 0
    patch_stride: int | None = None

    def check(self) -> None:
        """Raise :class:`UsageError` for out-of-range values."""
        if not 0.0 < self.percentile <= 100.0:
            raise UsageError(f"percentile must be in (0, 100], got {self.percentile}")
        if not -1.0 <= self.copy_ncc <= 1.0:
            raise UsageError(f"copy_ncc must be in [-1, 1], got {self.copy_ncc}")
        for name in ("k", "real_sample", "ssim_candidates", "chunk"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class Neighbour:
    """One real item near a distilled image."""

    index: int
    name: str
    ncc: float
    ssim: float | None
    label: int | None = None


@dataclass(frozen=True)
class Distribution:
    """Summary of the real-real nearest-neighbour similarities (one measure)."""

    count: int
    min: float
    p50: float
    p90: float
    p99: float
    max: float
    threshold: float  # value at the configured percentile


@dataclass(frozen=True)
class ImageFinding:
    """The audit of one distilled image."""

    index: int
    nn_ncc: Neighbour
    nn_ssim: Neighbour
    ncc_percentile: float  # % of real-real NN NCC values strictly below this image's NN NCC
    ssim_percentile: float
    neighbours: tuple[Neighbour, ...]
    flagged: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class AuditResult:
    """Everything the audit found; ``to_dict()`` is the ``--json`` output."""

    config: AuditConfig
    n_distilled: int
    n_real: int
    n_real_sample: int
    duplicates_excluded: int
    resolution: tuple[int, int]
    channels: int
    mode: str
    real_real_ncc: Distribution
    real_real_ssim: Distribution
    findings: tuple[ImageFinding, ...]
    sheet: str | None = None
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def flagged(self) -> bool:
        """True when any distilled image is flagged."""
        return any(f.flagged for f in self.findings)

    @property
    def verdict(self) -> str:
        """``"PASS"`` or ``"FLAG"``."""
        return "FLAG" if self.flagged else "PASS"

    def verdict_line(self) -> str:
        """One line a human can act on."""
        q = _fmt_pct(self.config.percentile)
        if self.flagged:
            parts = []
            for f in self.findings:
                if f.flagged:
                    parts.append(f"image {f.index} is a near copy of {f.nn_ncc.name} "
                                 f"(NCC {f.nn_ncc.ncc:.3f}, SSIM {f.nn_ssim.ssim:.3f}; {'; '.join(f.reasons)})")
            return "FLAG: " + " | ".join(parts)
        best = max(self.findings, key=lambda f: f.nn_ncc.ncc)
        return (f"PASS: no distilled image is closer to a training image than the {q} percentile of "
                f"real-real nearest neighbours (NCC {self.real_real_ncc.threshold:.3f}, SSIM "
                f"{self.real_real_ssim.threshold:.3f}); closest: image {best.index} ~ {best.nn_ncc.name} "
                f"NCC {best.nn_ncc.ncc:.3f} (real-real percentile {best.ncc_percentile:.1f})")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "verdict": self.verdict,
            "verdict_line": self.verdict_line(),
            "rule": (f"flag when NN NCC or NN SSIM > the {self.config.percentile:g}th percentile of the "
                     f"real-real NN distribution, or NN NCC >= {self.config.copy_ncc:g}"),
            "config": asdict(self.config),
            "n_distilled": self.n_distilled,
            "n_real": self.n_real,
            "n_real_sample": self.n_real_sample,
            "duplicates_excluded": self.duplicates_excluded,
            "resolution": list(self.resolution),
            "channels": self.channels,
            "mode": self.mode,
            "real_real": {"ncc": asdict(self.real_real_ncc), "ssim": asdict(self.real_real_ssim)},
            "images": [asdict(f) for f in self.findings],
            "sheet": self.sheet,
            "source": dict(self.source),
        }


def _fmt_pct(q: float) -> str:
    n = f"{q:g}"
    if n.endswith("1") and not n.endswith("11"):
        return n + "st"
    if n.endswith("2") and not n.endswith("12"):
        return n + "nd"
    if n.endswith("3") and not n.endswith("13"):
        return n + "rd"
    return n + "th"


def _distribution(values: F64, q: float) -> Distribution:
    v = np.asarray(values, dtype=np.float64)
    return Distribution(count=int(v.size), min=float(v.min()), p50=float(np.percentile(v, 50)),
                        p90=float(np.percentile(v, 90)), p99=float(np.percentile(v, 99)), max=float(v.max()),
                        threshold=float(np.percentile(v, q)))


# --- the audit ----------------------------------------------------------------------------------

def _merge_topk(best_v: F64, best_i: npt.NDArray[np.int64], v: F64, i0: int, k: int
                ) -> tuple[F64, npt.NDArray[np.int64]]:
    """Keep the k largest of the running best and a new block of scores (columns i0, i0+1, ...)."""
    idx = np.broadcast_to(np.arange(i0, i0 + v.shape[1], dtype=np.int64), v.shape)
    allv = np.concatenate([best_v, v], axis=1)
    alli = np.concatenate([best_i, idx], axis=1)
    kk = min(k, allv.shape[1])
    part = np.argpartition(-allv, kk - 1, axis=1)[:, :kk]
    pv = np.take_along_axis(allv, part, axis=1)
    pi = np.take_along_axis(alli, part, axis=1)
    order = np.argsort(-pv, axis=1, kind="stable")
    return np.take_along_axis(pv, order, axis=1), np.take_along_axis(pi, order, axis=1)


def audit_images(distilled: npt.ArrayLike, real: RealItems, *, config: AuditConfig | None = None,
                 labels: npt.ArrayLike | None = None, mode: str = "resize") -> AuditResult:
    """Audit distilled images against a real source (the core of ``sldp audit``).

    Args:
        distilled: ``[M, C, h, w]`` in pixel scale (real images map to [0, 1]); not clipped for NCC,
            clipped to [0, 1] for SSIM.
        real: the real training items at the distilled resolution (:class:`RealImages`,
            :class:`RealPatches` or any :class:`RealItems`).
        config: audit knobs (defaults: :class:`AuditConfig`).
        labels: optional per-source-image labels, reported beside the neighbours.
        mode: free text recorded in the result (``resize`` or ``patches``).

    Returns:
        The :class:`AuditResult`.

    Raises:
        DataError: fewer than 2 real items, or no distilled images.
        UsageError: bad configuration.
    """
    cfg = config or AuditConfig()
    cfg.check()
    d = np.asarray(distilled, dtype=np.float64)
    if d.ndim != 4 or d.shape[0] == 0:
        raise DataError(f"distilled images must be [M, C, H, W] with M >= 1, got {d.shape}")
    if not np.isfinite(d).all():
        raise DataError("distilled images contain NaN or infinite values")
    m = d.shape[0]
    n = len(real)
    if n < 2:
        raise DataError(f"the audit needs at least 2 real images, got {n}")
    lab = None if labels is None else np.asarray(labels).reshape(-1)

    # the real-real reference: a seeded sample of real items, each against all the others
    rng = np.random.default_rng(cfg.seed)
    s = min(cfg.real_sample, n)
    sample_idx = np.sort(rng.choice(n, size=s, replace=False)).astype(np.int64)
    sample = real.take(sample_idx)
    sample_groups = np.concatenate([real.groups(int(i), int(i) + 1) for i in sample_idx])

    queries = np.concatenate([d, sample], axis=0)
    qn = unit_rows(queries.reshape(queries.shape[0], -1))
    q = queries.shape[0]
    keep = max(cfg.k, cfg.ssim_candidates)
    best_v = np.empty((q, 0), dtype=np.float64)
    best_i = np.empty((q, 0), dtype=np.int64)
    dup_pairs: set[tuple[int, int]] = set()

    # pass 1: NCC against every real item, streamed
    for start in range(0, n, cfg.chunk):
        stop = min(start + cfg.chunk, n)
        block = real.batch(start, stop)
        bn = unit_rows(block.reshape(block.shape[0], -1))
        sc = np.clip(qn @ bn.T, -1.0, 1.0)
        # a sample query never counts itself, its own source image, or an exact pixel duplicate
        same = sample_groups[:, None] == real.groups(start, stop)[None, :]
        ss = sc[m:]
        ss[same] = -np.inf
        for a, b in zip(*np.nonzero(ss >= 1.0 - 1e-9), strict=True):
            if np.array_equal(sample[a], block[b]):
                ss[a, b] = -np.inf
                i, j = int(sample_idx[a]), start + int(b)
                dup_pairs.add((min(i, j), max(i, j)))
        best_v, best_i = _merge_topk(best_v, best_i, sc, start, keep)

    # pass 2: SSIM among each query's best NCC candidates (clipped to the displayable range)
    ssim_v = np.empty(q, dtype=np.float64)
    ssim_i = np.empty(q, dtype=np.int64)
    ssim_by_pair: dict[tuple[int, int], float] = {}
    for j in range(q):
        valid = np.isfinite(best_v[j])
        cand = best_i[j][valid][: cfg.ssim_candidates]
        if cand.size == 0:
            raise DataError("no distinct real item to compare with (all real items are duplicates?)")
        vals = ssim_batch(np.clip(queries[j], 0.0, 1.0), np.clip(real.take(cand), 0.0, 1.0),
                          win_size=cfg.win_size, window=cfg.window)
        t = int(np.argmax(vals))
        ssim_v[j], ssim_i[j] = vals[t], cand[t]
        if j < m:
            for c, v in zip(cand.tolist(), vals.tolist(), strict=True):
                ssim_by_pair[(j, c)] = v

    rr_ncc = _distribution(best_v[m:, 0], cfg.percentile)
    rr_ssim = _distribution(ssim_v[m:], cfg.percentile)

    def neighbour(j: int, idx: int, ncc_value: float) -> Neighbour:
        grp = int(real.groups(idx, idx + 1)[0])
        return Neighbour(index=idx, name=real.describe(idx), ncc=float(ncc_value),
                         ssim=ssim_by_pair.get((j, idx)),
                         label=None if lab is None or grp >= lab.size else int(lab[grp]))

    ref_ncc, ref_ssim = best_v[m:, 0], ssim_v[m:]
    findings = []
    for j in range(m):
        nn_n = neighbour(j, int(best_i[j, 0]), float(best_v[j, 0]))
        nn_s_ncc = float(best_v[j][best_i[j] == ssim_i[j]][0])
        nn_s = neighbour(j, int(ssim_i[j]), nn_s_ncc)
        reasons = []
        if nn_n.ncc >= cfg.copy_ncc:
            reasons.append(f"NCC >= copy threshold {cfg.copy_ncc:g}")
        if nn_n.ncc > rr_ncc.threshold:
            reasons.append(f"NCC above the {_fmt_pct(cfg.percentile)} percentile of real-real NN "
                           f"({rr_ncc.threshold:.3f})")
        if float(ssim_v[j]) > rr_ssim.threshold:
            reasons.append(f"SSIM above the {_fmt_pct(cfg.percentile)} percentile of real-real NN "
                           f"({rr_ssim.threshold:.3f})")
        neigh = tuple(neighbour(j, int(i), float(v)) for i, v in zip(best_i[j, :cfg.k], best_v[j, :cfg.k],
                                                                      strict=True))
        findings.append(ImageFinding(
            index=j, nn_ncc=nn_n, nn_ssim=nn_s,
            ncc_percentile=float(100.0 * np.mean(ref_ncc < nn_n.ncc)),
            ssim_percentile=float(100.0 * np.mean(ref_ssim < ssim_v[j])),
            neighbours=neigh, flagged=bool(reasons), reasons=tuple(reasons)))

    return AuditResult(config=cfg, n_distilled=m, n_real=n, n_real_sample=s, duplicates_excluded=len(dup_pairs),
                       resolution=(d.shape[2], d.shape[3]), channels=d.shape[1], mode=mode,
                       real_real_ncc=rr_ncc, real_real_ssim=rr_ssim, findings=tuple(findings))


def distilled_pixels(images: npt.ArrayLike, mean: Sequence[float] | None, std: Sequence[float] | None) -> F64:
    """Undo the preprocessing ``(x - mean) / std`` so distilled images are on the real [0, 1] scale.

    Args:
        images: ``[M, C, H, W]`` as stored in the file.
        mean, std: per-channel values from the manifest's preprocessing (one value broadcasts);
            ``None`` when the file has no preprocessing (images are then taken as already in [0, 1]).
    """
    x = np.asarray(images, dtype=np.float64)
    if mean is None or std is None:
        return x
    mu = np.asarray(mean, dtype=np.float64).reshape(1, -1, 1, 1)
    sd = np.asarray(std, dtype=np.float64).reshape(1, -1, 1, 1)
    if mu.shape[1] not in (1, x.shape[1]) or sd.shape[1] not in (1, x.shape[1]):
        raise DataError(f"preprocessing has {mu.shape[1]} mean / {sd.shape[1]} std values for "
                        f"{x.shape[1]}-channel images")
    return np.asarray(x * sd + mu, dtype=np.float64)


def audit_file(path: str | os.PathLike[str], data: str | os.PathLike[str], *, split: str = "train",
               config: AuditConfig | None = None, sheet: str | os.PathLike[str] | None = None,
               real: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any] | None] | None = None,
               items: tuple[RealItems, str] | None = None) -> AuditResult:
    """Audit the distilled images of a ``.sldp`` file against a real training set.

    Args:
        path: the ``.sldp`` file (its ``images`` tensor and preprocessing are used).
        data: real images (``.npz``/``.npy``, see :func:`load_real_images`).
        split: which split of a MedMNIST-style ``.npz``.
        config: audit knobs.
        sheet: where to write the PNG sheet (``None``: no sheet).
        real: the real images and labels, already read (e.g. a split of
            :func:`sldpack.pipelines.datasets.load_data`); ``data`` then only names them in the output.
        items: the real items already built, with the line that says what they are (e.g.
            :func:`patches_as_distilled` for a patch model); overrides ``real`` and ``config.patch_stride``.

    Returns:
        The :class:`AuditResult` (with ``sheet`` set when one was written).

    Raises:
        FormatError: the file is not a valid ``.sldp``.
        DataError: the data cannot be read or do not match the distilled images.
    """
    from sldpack.format.container import open as open_sldp

    cfg = config or AuditConfig()
    with open_sldp(path) as f:
        manifest = f.manifest
        names = list(f.iter_roles("images"))
        if not names:
            raise DataError(f"{path}: the file has no tensor with role 'images'")
        # np.array copies out of the memory map before it closes; digests are checked on the way
        imgs = np.concatenate([np.array(f.tensor(k), dtype=np.float64) for k in names], axis=0)
    if imgs.ndim != 4:
        raise DataError(f"{path}: images tensor must be [M, C, H, W], got shape {imgs.shape}")
    pre = manifest.preprocessing
    pix = distilled_pixels(imgs, pre.mean if pre else None, pre.std if pre else None)
    size = (pix.shape[2], pix.shape[3])
    src: RealItems
    labels: np.ndarray[Any, Any] | None = None
    if items is not None:
        src, mode = items
        probe = src.take(np.zeros(1, dtype=np.int64)) if len(src) else None
        if probe is not None and tuple(probe.shape[2:]) != size:
            raise DataError(f"the real patches are {probe.shape[2]}x{probe.shape[3]} px, the distilled images "
                            f"{size[0]}x{size[1]}")
        return _finish_audit(path, data, split, cfg, sheet, pix, src, labels, mode, manifest)
    raw, labels = load_real_images(data, split) if real is None else real
    if cfg.patch_stride is not None:
        src = RealPatches(raw, size, pix.shape[1], cfg.patch_stride, name=split)
        mode = f"patches (stride {cfg.patch_stride})"
    else:
        src = RealImages(raw, size, pix.shape[1], name=split)
        native = tuple(as_nchw(raw, split).shape[2:])
        mode = (f"whole images resized {native[0]}x{native[1]} -> {size[0]}x{size[1]} px (area averaging)"
                if native != size else "native resolution")
    return _finish_audit(path, data, split, cfg, sheet, pix, src, labels, mode, manifest)


def patches_as_distilled(images: ImageSet, settings: PatchTask, channels: int,
                         name: str = "train") -> tuple[RealItems, str]:
    """The real side of a patch model's audit: the labelled I/N/P windows of ``images`` (which need organ
    masks) with the file's patch geometry, resized as the distiller resized them, and the line that says so.

    Raises:
        DataError: no masks, or no labelled window.
    """
    index = build_patch_index(images.require_masks(), images.labels, settings.config())
    if len(index) == 0:
        raise DataError("no labelled patches in the real images with the file's patch geometry")
    sampler = PatchSampler(images.images, index, out_size=settings.out_size)
    shrink = f", area-resized to {settings.input_size} px" if settings.input_size != settings.size else ""
    mode = (f"patches as distilled (the file's geometry): {settings.size} px windows, stride {settings.stride}, "
            f"I/N/P by the organ mask (I < {settings.outside_max:g}, N/P > {settings.inside_min:g}){shrink}; "
            f"{len(index):,} labelled windows")
    return RealPatchesAsDistilled(sampler, channels, name=name), mode


@dataclass(frozen=True)
class AuditData:
    """What a file is audited against: the real images (and labels) or items built from them, and a name.

    Attributes:
        data: names the real data in the output (a path or a data source's description).
        real: the real images and labels, when ``items`` is ``None``.
        items: the real items already built, with the line that says what they are (a patch model).
    """

    data: str
    real: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any] | None]
    items: tuple[RealItems, str] | None = None


def audit_data_for(path: str | os.PathLike[str], spec: DataSpec, split: str, *,
                   patch_stride: int | None = None) -> AuditData:
    """Decide which real data the file at ``path`` is audited against, and read it.

    A patch model (the file records a patch geometry) without ``patch_stride``: the real patches cut,
    mask-labelled and resized as the distiller saw them (:func:`patches_as_distilled`; the data needs organ
    masks). Otherwise a ``.npy`` image array or a MedMNIST ``.npz`` is read as stored (channels kept,
    :func:`load_real_images`), and every other layout through the shared loader and split rule
    (``spec.select``).

    Raises:
        UsageError: a plug-in source, a patch geometry given (the windows have the distilled images' size),
            or a patch model with data that has no organ masks.
        DataError: unreadable data.
    """
    from sldpack.format.container import open as open_sldp
    from sldpack.pipelines.datasets import detect_format
    from sldpack.pipelines.patch_source import patch_task_from_manifest

    if spec.source is not None:
        raise UsageError("sldp audit reads --data PATH or --phantom N, not a --source plug-in")
    if spec.patch_size is not None or spec.out_size is not None:
        raise UsageError("audit windows have the distilled images' size: give --stride only "
                         "(drop --patch-size/--out-size)")
    with open_sldp(path) as sf:
        geometry = patch_task_from_manifest(sf.manifest)
        channels = sf.manifest.arch.in_channels
    if geometry is not None and patch_stride is None:
        if spec.data is not None and spec.data.endswith(".npy"):
            raise UsageError(f"{path} is a patch model ({geometry.size} px windows): give --data with organ "
                             "masks to cut its patches, or --stride N to compare native windows")
        sel = spec.select(split)
        if sel.data.masks is None:
            raise UsageError(f"{path} is a patch model ({geometry.size} px windows, stride {geometry.stride}); "
                             f"{sel.source} has no organ masks to cut and label them as the distiller did: give "
                             "the data with masks, or --stride N to compare native windows instead")
        items = patches_as_distilled(sel.data, geometry, channels, name=split)
        return AuditData(sel.source, (np.asarray(sel.data.images[:0]), None), items)
    if spec.data is not None and (spec.data.endswith(".npy") or (spec.format in ("auto", "medmnist")
                                                                 and detect_format(spec.data) == "medmnist")):
        return AuditData(spec.data, load_real_images(spec.data, split))
    sel = spec.select(split)
    return AuditData(sel.source, (np.asarray(sel.data.images), np.asarray(sel.data.labels)))


def _finish_audit(path: str | os.PathLike[str], data: str | os.PathLike[str], split: str, cfg: AuditConfig,
                  sheet: str | os.PathLike[str] | None, pix: F64, src: RealItems,
                  labels: np.ndarray[Any, Any] | None, mode: str, manifest: Any) -> AuditResult:
    result = audit_images(pix, src, config=cfg, labels=labels, mode=mode)
    sheet_path = None
    if sheet is not None:
        save_sheet(result, pix, src, sheet, label_names=manifest.labels.names if manifest.labels else None)
        sheet_path = os.fspath(sheet)
    return replace(result, sheet=sheet_path,
                   source={"file": os.fspath(path), "data": os.fspath(data), "split": split})


# --- the PNG sheet ------------------------------------------------------------------------------

def _to_u8(img: F64) -> np.ndarray[Any, Any]:
    """[C, h, w] in [0, 1] -> uint8 [h, w] or [h, w, 3]."""
    x = np.clip(img, 0.0, 1.0)
    x = x[0] if x.shape[0] != 3 else np.moveaxis(x, 0, -1)
    return np.asarray(np.round(x * 255.0), dtype=np.uint8)


def save_sheet(result: AuditResult, distilled: npt.ArrayLike, real: RealItems, path: str | os.PathLike[str],
               *, label_names: Sequence[str] | None = None, tile: int = 112) -> None:
    """Write a PNG: one row per distilled image, then its k nearest real items with NCC/SSIM captions.

    Tiles are shown on the real [0, 1] pixel scale (clipped), not min-max stretched, so a distilled
    image looks the way it would to anyone who opens the file. Drawn by
    :func:`sldpack.medical.montage.save_montage`.

    Args:
        result: the audit result (neighbour indices come from it).
        distilled: the distilled images in pixel scale (as audited).
        real: the same real source the audit used.
        path: output PNG path.
        label_names: class names for the neighbour captions.
        tile: tile edge in pixels (images are scaled up by an integer factor to about this size).
    """
    from sldpack.medical.montage import save_montage

    d = np.asarray(distilled, dtype=np.float64)
    h, w = d.shape[2:]
    tiles: list[np.ndarray[Any, Any]] = []
    captions: list[str] = []
    for f in result.findings:
        tiles.append(_to_u8(d[f.index]))
        captions.append(f"distilled {f.index}\n{'FLAG' if f.flagged else 'ok'}\n\n")
        imgs = real.take(np.asarray([nb.index for nb in f.neighbours], dtype=np.int64))
        for nb, im in zip(f.neighbours, imgs, strict=True):
            lab = "label n/a"
            if nb.label is not None:
                lab = label_names[nb.label] if label_names and nb.label < len(label_names) else f"label {nb.label}"
            ss = "n/a" if nb.ssim is None else f"{nb.ssim:.3f}"
            tiles.append(_to_u8(im))
            captions.append(f"{nb.name}\n{lab}\nNCC {nb.ncc:.3f}\nSSIM {ss}")
        # rows are 1 + k wide even when a source has fewer than k items
        for _ in range(result.config.k - len(f.neighbours)):
            tiles.append(np.full((h, w), 255, dtype=np.uint8))
            captions.append("")
    save_montage(tiles, captions, path, ncols=1 + result.config.k, scale=max(1, tile // max(h, w)),
                 title=f"{result.verdict}: each distilled image (left), then its nearest real items by NCC")
