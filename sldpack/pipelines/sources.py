"""Real-data sources for distillation and baseline training (numpy only, no torch).

The distiller never touches a data set directly: it asks a :class:`RealSource` for batches. Anything
that implements the protocol plugs in (the npz arrays here, a patch sampler over whole X-rays, a
synthetic phantom). A batch is already preprocessed: ``float32 [k, C, H, W]`` in network input space,
plus ``int64 [k]`` class indices.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sldpack.errors import DataError, UsageError
from sldpack.format.manifest import Preprocessing
from sldpack.medical.loaders import check_pixels, read_npz_split
from sldpack.medical.patches import balanced_counts
from sldpack.nn.source import RealSource

__all__ = [
    "ArraySource",
    "RealSource",
    "SourceFactory",
    "balanced_counts",
    "load_npz",
    "register_source",
    "resolve_source",
]


@dataclass
class ArraySource:
    """A labelled image array in memory, preprocessed as ``(x / scale - mean) / std`` per channel.

    Args:
        images: ``[N, H, W]``, ``[N, C, H, W]`` or ``[N, H, W, C]`` (``channels_last=True``); uint8 or float.
        labels: ``[N]`` or ``[N, 1]`` integer class indices in ``0..K-1``.
        class_names: names in logit order; default ``("0", "1", ...)``.
        mean, std: per-channel statistics in the ``x / scale`` space; default: computed from ``images``.
        scale: 255 for uint8 images, 1 for float images (default: chosen from the dtype).
        channels_last: the images are ``[N, H, W, C]``.
        num_classes: K when some classes are absent from ``labels``.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...] = ()
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    scale: float | None = None
    channels_last: bool = False
    num_classes: int = 0
    fingerprint: str | None = None
    _x: np.ndarray = field(init=False, repr=False)
    _y: np.ndarray = field(init=False, repr=False)
    _by_class: list[np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        imgs = np.asarray(self.images)
        if imgs.ndim == 3:
            imgs = imgs[:, None, :, :]
        elif imgs.ndim == 4 and self.channels_last:
            imgs = np.transpose(imgs, (0, 3, 1, 2))
        elif imgs.ndim != 4:
            raise DataError(f"images must be [N,H,W] or [N,C,H,W], got shape {imgs.shape}")
        labels = np.asarray(self.labels)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1 or labels.shape[0] != imgs.shape[0]:
            raise DataError(f"labels shape {np.asarray(self.labels).shape} does not match {imgs.shape[0]} images")
        if imgs.shape[0] == 0:
            raise DataError("the data set is empty")
        if not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"labels must be integers, got {labels.dtype}")
        y = labels.astype(np.int64)
        if y.min() < 0:
            raise DataError("labels must be >= 0")
        k = max(int(y.max()) + 1, self.num_classes, len(self.class_names))
        present = np.unique(y)
        if k == int(y.max()) + 1 and k > 2 * present.size:
            # labels such as {0, 1000}: not class indices 0..K-1 (a split may lack a class, not most of them)
            shown = ", ".join(str(int(v)) for v in present[:6]) + (", ..." if present.size > 6 else "")
            raise DataError(f"labels {{{shown}}} are not class indices 0..K-1: {k - present.size} of the {k} "
                            "classes they imply have no image; renumber the labels 0..K-1")
        self.num_classes = k
        if not self.class_names:
            self.class_names = tuple(str(c) for c in range(k))
        if len(self.class_names) != k:
            raise DataError(f"{len(self.class_names)} class names for {k} classes")
        if self.scale is None:
            self.scale = check_pixels(imgs, "images")  # the one image dtype rule (uint8, or float in [0, 1])
        # float64 statistics, then float32 arithmetic: the batch values are a documented function of
        # the stored mean/std, independent of how the statistics were obtained
        x01 = imgs.astype(np.float32) / np.float32(self.scale)
        if self.mean is None:
            self.mean = tuple(float(v) for v in x01.astype(np.float64).mean(axis=(0, 2, 3)))
        if self.std is None:
            self.std = tuple(float(v) for v in x01.astype(np.float64).std(axis=(0, 2, 3)))
        c = imgs.shape[1]
        if len(self.mean) != c or len(self.std) != c:
            raise DataError(f"mean/std need {c} values, got {len(self.mean)}/{len(self.std)}")
        if any(s <= 0 for s in self.std):
            raise DataError("std must be positive (is the data set constant?)")
        m = np.asarray(self.mean, dtype=np.float32).reshape(1, c, 1, 1)
        s = np.asarray(self.std, dtype=np.float32).reshape(1, c, 1, 1)
        self._x = np.ascontiguousarray((x01 - m) / s, dtype=np.float32)
        self._y = y
        self._by_class = [np.flatnonzero(y == cls) for cls in range(k)]
        if self.fingerprint is None:
            h = hashlib.sha256()
            h.update(np.ascontiguousarray(imgs).tobytes())
            h.update(y.tobytes())
            self.fingerprint = h.hexdigest()

    @property
    def channels(self) -> int:
        """C."""
        return int(self._x.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W)."""
        return (int(self._x.shape[2]), int(self._x.shape[3]))

    @property
    def preprocessing(self) -> Preprocessing:
        """``(x / scale - mean) / std`` with the stored statistics."""
        assert self.mean is not None
        assert self.std is not None
        return Preprocessing(mean=tuple(self.mean), std=tuple(self.std), image_size=self.image_size,
                             channels=self.channels, options={"scale": float(self.scale or 1.0)})

    def __len__(self) -> int:
        return int(self._y.shape[0])

    @property
    def inputs(self) -> np.ndarray:
        """All preprocessed images ``float32 [N, C, H, W]`` (read-only view)."""
        v = self._x.view()
        v.flags.writeable = False
        return v

    @property
    def targets(self) -> np.ndarray:
        """All labels ``int64 [N]``."""
        return self._y

    def class_count(self) -> list[int]:
        """Number of images of each class."""
        return [int(ix.size) for ix in self._by_class]

    def sample(self, k: int, rng: np.random.Generator, *, balanced: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """See :meth:`RealSource.sample`. Without replacement inside a batch unless a class is too small.

        Raises:
            DataError: a balanced batch needs a class that has no image.
        """
        if k < 1:
            raise UsageError(f"batch size must be >= 1, got {k}")
        if balanced:
            parts = []
            for cls, n in enumerate(balanced_counts(k, self.num_classes)):
                if n == 0:
                    continue
                pool = self._by_class[cls]
                if pool.size == 0:
                    raise DataError(f"class {self.class_names[cls]!r} has no image; cannot sample a balanced batch")
                parts.append(rng.choice(pool, size=n, replace=n > pool.size))
            idx = np.concatenate(parts)
        else:
            idx = rng.choice(len(self), size=k, replace=k > len(self))
        return self._x[idx], self._y[idx]

    def subset(self, cls: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` distinct preprocessed images of class ``cls`` (used to initialise distilled images)."""
        pool = self._by_class[cls]
        if pool.size == 0:
            raise DataError(f"class {self.class_names[cls]!r} has no image")
        out: np.ndarray = self._x[rng.choice(pool, size=n, replace=n > pool.size)]
        return out


def load_npz(path: str | Path, split: str = "train", *, class_names: Sequence[str] = (),
             mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> ArraySource:
    """Load a MedMNIST-style ``.npz`` (``{split}_images``, ``{split}_labels``).

    Args:
        path: the ``.npz`` file.
        split: ``train``, ``val`` or ``test`` (any prefix present in the file).
        class_names: names in logit order; default: the file's ``label_names`` array if any, else "0".."K-1".
        mean, std: preprocessing statistics; default: computed from this split (pass the train split's
            statistics when loading val/test so all splits share one preprocessing).

    Returns:
        The source; its ``fingerprint`` is the SHA-256 of the file.

    Raises:
        DataError: the file is missing, unreadable or lacks the split.
    """
    p = Path(path)
    arrays = read_npz_split(p, split, layouts=("medmnist",))  # applies the one image dtype rule
    assert arrays.labels is not None
    imgs = arrays.images
    # MedMNIST stores channels last ([N, H, W, 1] / [N, H, W, 3]); [N, C, H, W] with C in 1/3 is kept
    channels_last = imgs.ndim == 4 and imgs.shape[-1] in (1, 3) and imgs.shape[1] not in (1, 3)
    try:
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
    except OSError as exc:
        raise DataError(f"cannot read {p}: {exc}") from exc
    return ArraySource(images=imgs, labels=arrays.labels, channels_last=channels_last,
                       class_names=tuple(class_names) or arrays.label_names,
                       mean=None if mean is None else tuple(mean), std=None if std is None else tuple(std),
                       fingerprint=digest)


SourceFactory = Callable[[str | None, str], RealSource]
"""``factory(argument, split) -> RealSource``: how a named plug-in source is built."""

_REGISTRY: dict[str, SourceFactory | str] = {}


def register_source(name: str, factory: SourceFactory | str) -> None:
    """Make a data source available to ``sldp distill --source NAME[:ARG]``.

    Args:
        name: short name (e.g. ``"phantom"``).
        factory: the factory, or a lazy ``"module:function"`` reference to it.
    """
    _REGISTRY[name] = factory


# Built-in short names (lazy references: the medical glue is imported only when used).
register_source("phantom", "sldpack.pipelines.inputs:phantom_patch_source")
register_source("patches", "sldpack.pipelines.inputs:npz_patch_source")


def resolve_source(spec: str, split: str = "train") -> RealSource:
    """Build a source from ``NAME[:ARG]`` (registered name) or ``package.module:function[:ARG]``.

    Raises:
        UsageError: the name is unknown or the reference does not import.
    """
    head, _, arg = spec.partition(":")
    target: SourceFactory | str
    if head in _REGISTRY:
        target = _REGISTRY[head]
        argument = arg or None
    elif "." in head and arg:
        func, _, rest = arg.partition(":")
        target = f"{head}:{func}"
        argument = rest or None
    else:
        raise UsageError(f"unknown data source {spec!r}; registered: {sorted(_REGISTRY)}, "
                         "or use package.module:function[:ARG]")
    if isinstance(target, str):
        mod, _, attr = target.partition(":")
        try:
            factory = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as exc:
            raise UsageError(f"data source {target!r} cannot be loaded: {exc}") from exc
    else:
        factory = target
    src = factory(argument, split)
    if not isinstance(src, RealSource):
        raise UsageError(f"data source {spec!r} did not return a RealSource")
    return src
