"""Normally trained models (the baselines of ``sldp train``): train, save as ``.safetensors``, load back."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sldpack.budget import check_allocation
from sldpack.errors import DataError, FormatError
from sldpack.format.manifest import ArchSpec, InitSpec, Preprocessing
from sldpack.format.safetensors_codec import read_checkpoint
from sldpack.pipelines.sources import RealSource

if TYPE_CHECKING:
    from torch import nn

__all__ = ["TrainedModel", "load_trained_model", "save_trained_model", "train_model"]


@dataclass
class TrainedModel:
    """A network with everything needed to evaluate it on raw images.

    Attributes:
        module: the network, eval mode.
        arch: its architecture (``arch.options`` complete).
        preprocessing: mean/std and, for patch models, the patch options.
        class_names: names of the outputs.
        metadata: the rest of the checkpoint's metadata (training settings).
    """

    module: nn.Module
    arch: ArchSpec
    preprocessing: Preprocessing
    class_names: tuple[str, ...]
    metadata: dict[str, Any] = field(default_factory=dict)


def train_model(source: RealSource, *, arch: str = "convnet@1", arch_options: Mapping[str, Any] | None = None,
                batchnorm: bool = False, steps: int = 500, batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
                device: str = "cpu", progress: Callable[[int, int, float], None] | None = None,
                checkpoint: str | Path | None = None, checkpoint_every: int = 100) -> TrainedModel:
    """Train ``arch`` normally on class-balanced batches of ``source`` (the baselines of the paper's tables).

    theta_0 comes from the portable init with ``seed`` (the same start a distilled file with that seed has);
    training is :func:`sldpack.nn.train.train_normal` (Adam, cosine decay), resumable from ``checkpoint``
    (saved every ``checkpoint_every`` steps).

    Returns:
        The trained model, eval mode, on ``device``.

    Raises:
        UsageError: bad architecture/options or training settings, divergence.
    """
    from sldpack.nn.network import build_module
    from sldpack.nn.train import train_normal
    from sldpack.nn.zoo import resolve_options

    spec = ArchSpec(id=arch, in_channels=source.channels, num_classes=source.num_classes,
                    image_size=tuple(source.image_size), batchnorm=batchnorm,  # type: ignore[arg-type]
                    options=resolve_options(arch, arch_options))
    h, w = source.image_size
    # a batch of float32 images, its gradient and the first layer's activations (width channels, x 2)
    width = int(spec.options.get("width", 64)) if isinstance(spec.options.get("width", 64), int) else 64
    check_allocation(batch_size * h * w * 4 * (2 * source.channels + 2 * width),
                     f"a batch of {batch_size} images of {source.channels}x{h}x{w} (--batch-size)")
    module, _ = build_module(spec, InitSpec(seed=seed))
    train_normal(module, lambda k, rng: source.sample(k, rng, balanced=True), steps=steps, batch_size=batch_size,
                 lr=lr, seed=seed, device=device, progress=progress, checkpoint=checkpoint,
                 checkpoint_every=checkpoint_every)
    meta = {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "optimizer": "adam, cosine decay",
            "init": "portable xavier_normal", "sampling": "class-balanced", "dataset_sha256": source.fingerprint}
    return TrainedModel(module=module, arch=spec, preprocessing=source.preprocessing,
                        class_names=tuple(source.class_names), metadata=meta)


def save_trained_model(path: str | Path, model: TrainedModel) -> int:
    """Write ``model`` as ``.safetensors`` (state_dict + ``sldp_*`` metadata that :func:`load_trained_model`
    reads back); atomic. Returns the bytes written."""
    from sldpack.nn.network import save_safetensors

    meta = {"format": "pt", "arch": model.arch.id,
            "sldp_arch": json.dumps(model.arch.to_obj(), sort_keys=True),
            "sldp_preprocessing": json.dumps(model.preprocessing.to_obj(), sort_keys=True),
            "sldp_labels": json.dumps(list(model.class_names)),
            "sldp_training": json.dumps(model.metadata, sort_keys=True, default=str)}
    return save_safetensors(path, model.module.state_dict(), metadata=meta)


def load_trained_model(path: str | Path, *, device: str = "cpu") -> TrainedModel:
    """Read a checkpoint written by :func:`save_trained_model` (``sldp train --save``).

    Raises:
        DataError: unreadable file, or a checkpoint without the ``sldp_arch``/``sldp_preprocessing``
            metadata (e.g. ``sldp replay``'s output: evaluate its ``.sldp`` file instead).
    """
    import torch

    from sldpack.nn.device import resolve_device
    from sldpack.nn.zoo import build_from_spec

    p = Path(path)
    try:
        arrays, meta = read_checkpoint(p)
    except FormatError as exc:
        raise DataError(f"{p}: not a readable safetensors checkpoint: {exc}") from exc
    try:
        arch_obj = json.loads(meta["sldp_arch"])
        pre_obj = json.loads(meta["sldp_preprocessing"])
        names = tuple(str(v) for v in json.loads(meta.get("sldp_labels", "[]")))
        training = json.loads(meta.get("sldp_training", "{}"))
        arch = ArchSpec(id=str(arch_obj["id"]), in_channels=int(arch_obj["in_channels"]),
                        num_classes=int(arch_obj["num_classes"]),
                        image_size=(int(arch_obj["image_size"][0]), int(arch_obj["image_size"][1])),
                        batchnorm=bool(arch_obj.get("batchnorm", False)), options=dict(arch_obj.get("options", {})))
        pre = Preprocessing(mean=tuple(float(v) for v in pre_obj["mean"]),
                            std=tuple(float(v) for v in pre_obj["std"]),
                            image_size=(int(pre_obj["image_size"][0]), int(pre_obj["image_size"][1])),
                            channels=int(pre_obj["channels"]), options=dict(pre_obj.get("options", {})))
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise DataError(f"{p}: not a checkpoint written by `sldp train --save` (missing or bad sldp_* metadata: "
                        f"{exc}); to evaluate a distilled network, pass its .sldp file") from exc
    module = build_from_spec(arch)
    try:
        module.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()}, strict=True)
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise DataError(f"{p}: tensors do not fit {arch.id}: {exc}") from exc
    module.sldp_input_shape = (arch.in_channels, arch.image_size[0], arch.image_size[1])  # type: ignore[assignment]
    module.eval()
    return TrainedModel(module=module.to(resolve_device(device)), arch=arch, preprocessing=pre, class_names=names,
                        metadata=training)
