"""The protocol through which the engine (distiller, baseline trainer) reads real data.

It belongs to the engine that consumes it, so the engine never imports the pipelines that implement it
(:mod:`sldpack.pipelines.sources`, :mod:`sldpack.pipelines.patch_source`). Torch-free.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from sldpack.format.manifest import Preprocessing

__all__ = ["RealSource"]


@runtime_checkable
class RealSource(Protocol):
    """What the distiller and the baseline trainer need from real data.

    Attributes:
        num_classes: K, size of the label space.
        class_names: K names in logit order (go into the manifest's ``labels.names``).
        channels: C of every batch.
        image_size: (H, W) of every batch.
        preprocessing: how raw images became network inputs (goes into the manifest).
        fingerprint: SHA-256 hex of the underlying data (provenance), or ``None``.
    """

    @property
    def num_classes(self) -> int: ...

    @property
    def class_names(self) -> tuple[str, ...]: ...

    @property
    def channels(self) -> int: ...

    @property
    def image_size(self) -> tuple[int, int]: ...

    @property
    def preprocessing(self) -> Preprocessing: ...

    @property
    def fingerprint(self) -> str | None: ...

    def sample(self, k: int, rng: np.random.Generator, *, balanced: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``k`` preprocessed images ``float32 [k,C,H,W]`` and their labels ``int64 [k]``.

        With ``balanced`` every class contributes ``balanced_counts(k, K)`` images; otherwise images are
        drawn uniformly from the whole set (the natural class mix).
        """
        ...
