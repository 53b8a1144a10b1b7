"""What an exported MONAI bundle runs: the network plus the file's preprocessing and image-level decision.

``configs/inference.json`` of a bundle written by ``sldp export --to monai-bundle`` builds the network with
:func:`load_network` (the zoo architecture + ``models/model.pt``) and an :class:`ImageDecision` that takes one
whole image and answers like ``sldp eval --windows all`` does for it: for a patch model every window of the
sliding grid is cut, shrunk, normalised and classified, and the image is decided by Eq. (9) over the
predicted classes; for a whole-image model the image is resized (square images only), normalised and
decided by argmax. The same functions as ``sldp eval`` cut and shrink the patches
(:func:`sldpack.medical.patches.cut_patches`), so the bundle and ``sldp eval`` give the same decision.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from sldpack.errors import DataError, UsageError

__all__ = ["ImageDecision", "as_uint8_image", "load_network"]


def load_network(network: nn.Module, weights: str | os.PathLike[str], device: Any = "cpu") -> nn.Module:
    """``network`` with the state dict at ``weights`` (``models/model.pt``) loaded, in eval mode."""
    state = torch.load(str(weights), map_location="cpu", weights_only=True)
    network.load_state_dict(state, strict=True)
    return network.to(device).eval()


def as_uint8_image(image: Any) -> NDArray[np.uint8]:
    """One grayscale image as uint8 ``[H, W]``: uint8 as is; whole numbers 0..255 of any dtype (what MONAI's
    ``LoadImage`` gives for a PNG) converted exactly; a leading channel axis of 1 dropped.

    Raises:
        DataError: another shape, or values that are not whole numbers in 0..255 (the file's networks read
            8-bit images, spec 5.8: x / 255).
    """
    a = np.asarray(image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else image)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise DataError(f"the bundle takes one grayscale image [H, W] (or [1, H, W]), got shape {a.shape}")
    if a.dtype == np.uint8:
        return a
    f = a.astype(np.float64)
    if not np.all(np.isfinite(f)) or f.min() < 0 or f.max() > 255 or not np.array_equal(f, np.round(f)):
        raise DataError("the bundle takes 8-bit pixel values (whole numbers 0..255); got values "
                        f"{float(np.nanmin(f)):g}..{float(np.nanmax(f)):g} of dtype {a.dtype}")
    return f.astype(np.uint8)


class ImageDecision:
    """Decide one image the way ``sldp eval --windows all`` does.

    Args:
        network: the replayed network (eval mode).
        mean, std: the file's normalisation (``preprocessing.mean/std``; first channel).
        class_names: the network's classes in logit order.
        rule: ``eq9`` (patch model) or ``argmax`` (whole-image model).
        positive: the class that makes the image positive.
        negative: ``eq9``: the class counted against it.
        delta: ``eq9``: the threshold on ``Num(positive) / (Num(negative) + Num(positive))``.
        patch_size, stride, out_size: ``eq9``: the window geometry.
        input_size: ``argmax``: the network's input (height, width).
        chunk: patches per forward pass.
    """

    def __init__(self, network: nn.Module, *, mean: float, std: float, class_names: Sequence[str], rule: str,
                 positive: str, negative: str | None = None, delta: float | None = None,
                 patch_size: int | None = None, stride: int | None = None, out_size: int | None = None,
                 input_size: Sequence[int] | None = None, chunk: int = 512) -> None:
        names = tuple(class_names)
        if rule not in ("eq9", "argmax"):
            raise UsageError(f"rule must be eq9 or argmax, got {rule!r}")
        if positive not in names or (negative is not None and negative not in names):
            raise UsageError(f"positive/negative classes {positive!r}/{negative!r} are not among {names}")
        if rule == "eq9" and (negative is None or delta is None or patch_size is None or stride is None):
            raise UsageError("eq9 needs negative, delta, patch_size and stride")
        if rule == "argmax" and input_size is None:
            raise UsageError("argmax needs input_size")
        self.network, self.names, self.rule = network, names, rule
        self.mean, self.std = np.float32(mean), np.float32(std)
        self.positive, self.negative, self.delta = positive, negative, delta
        self.patch_size, self.stride, self.out_size = patch_size, stride, out_size
        self.input_size = None if input_size is None else (int(input_size[0]), int(input_size[1]))
        self.chunk = chunk

    def _logits(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        dev = next(self.network.parameters()).device
        with torch.no_grad():
            out = self.network(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(dev))
        return np.asarray(out.detach().to("cpu", torch.float32).numpy(), dtype=np.float32)

    def __call__(self, image: Any) -> Mapping[str, Any]:
        """``{"decision": 0|1, "positive": name, "score": float, ...}`` for one image (see the class docs)."""
        img = as_uint8_image(image)
        if self.rule == "eq9":
            return self._eq9(img)
        return self._argmax(img)

    def _eq9(self, img: NDArray[np.uint8]) -> dict[str, Any]:
        from sldpack.medical.patches import cut_patches, grid_positions

        assert self.patch_size is not None and self.stride is not None and self.delta is not None
        h, w = img.shape
        if h < self.patch_size or w < self.patch_size:
            raise DataError(f"the image is {h}x{w} px, smaller than the {self.patch_size} px patches")
        gy, gx = grid_positions(h, w, self.patch_size, self.stride)
        ys, xs = np.repeat(gy, gx.size), np.tile(gx, gy.size)
        counts = np.zeros(len(self.names), dtype=np.int64)
        for start in range(0, ys.size, self.chunk):
            sl = slice(start, start + self.chunk)
            p = cut_patches(img[None], np.zeros(ys[sl].size, dtype=np.int64), ys[sl], xs[sl], self.patch_size,
                            out_size=self.out_size)
            pred = self._logits(((p - self.mean) / self.std)[:, None, :, :]).argmax(axis=1)
            counts += np.bincount(pred, minlength=len(self.names))
        n_pos = int(counts[self.names.index(self.positive)])
        n_neg = int(counts[self.names.index(str(self.negative))])
        score = n_pos / (n_neg + n_pos) if n_neg + n_pos > 0 else 0.0
        return {"decision": int(score >= self.delta), "positive": self.positive, "score": score,
                "rule": f"eq9: {self.positive}/({self.negative}+{self.positive}) >= {self.delta:g}",
                "counts": {n: int(c) for n, c in zip(self.names, counts, strict=True)}, "windows": int(ys.size)}

    def _argmax(self, img: NDArray[np.uint8]) -> dict[str, Any]:
        from sldpack.medical.similarity import area_resize

        assert self.input_size is not None
        h, w = img.shape
        x = img.astype(np.float32)[None] / np.float32(255.0)
        if (h, w) != self.input_size:
            if h != w or self.input_size[0] != self.input_size[1]:
                raise DataError(f"the image is {h}x{w} px, the network takes {self.input_size[0]}x"
                                f"{self.input_size[1]}; only square images are resized")
            x = area_resize(x, self.input_size[0])
        logits = self._logits(((x - self.mean) / self.std)[:, None, :, :])[0]
        z = logits.astype(np.float64) - float(logits.max())
        prob = np.exp(z) / np.exp(z).sum()
        top = int(np.argmax(logits))
        return {"decision": int(self.names[top] == self.positive), "positive": self.positive,
                "score": float(prob[self.names.index(self.positive)]), "rule": f"argmax: positive when the top "
                f"class is {self.positive}", "probabilities": {n: float(v) for n, v in zip(self.names, prob,
                                                                                         strict=True)}}
