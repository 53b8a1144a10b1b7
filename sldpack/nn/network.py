"""The network a manifest describes: build it with theta_0, its canonical state and digest, its output.

:func:`build_module` is the one way replay and the distiller build an architecture with theta_0 from the
portable init; :func:`canonical_state` and :func:`theta_digest` define the order and bytes the replay
fingerprint hashes; :func:`save_safetensors` writes a state dict through the one safetensors codec.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from sldpack.errors import UsageError
from sldpack.format.manifest import ArchSpec, InitSpec
from sldpack.nn.device import resolve_device

__all__ = ["buffer_names", "build_module", "canonical_state", "input_shape", "save_safetensors", "theta_digest"]


def build_module(arch: ArchSpec, init: InitSpec, *,
                 device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, str]]:
    """Build an architecture with theta_0 from the portable init.

    theta_0 is always drawn on the CPU by the portable init and then moved, never by a device RNG.

    Args:
        arch: the manifest's ``arch`` section.
        init: the manifest's ``init`` section (seed, scheme).
        device: where the module lives afterwards.

    Returns:
        ``(module, theta0_digests)``; the module carries ``sldp_input_shape = (C, H, W)``.
    """
    from sldpack.nn.init import init_module_
    from sldpack.nn.zoo import build_from_spec

    # on the CPU with zero parameters; the zoo avoids to_empty (it imports sympy: first build 1.5-5 s)
    module = build_from_spec(arch, device="cpu")
    digests = init_module_(module, init.seed, init.scheme)
    module.sldp_input_shape = (arch.in_channels, arch.image_size[0], arch.image_size[1])  # type: ignore[assignment]
    return module.to(resolve_device(device)), dict(digests)


def input_shape(module: nn.Module) -> tuple[int, int, int]:
    """``(C, H, W)`` of the inputs a module built by :func:`build_module` takes."""
    shape = getattr(module, "sldp_input_shape", None)
    if shape is None:
        raise UsageError("module has no sldp_input_shape; build it with sldpack.nn.replay.build_module")
    c, h, w = shape
    return int(c), int(h), int(w)


def buffer_names(module: nn.Module) -> list[str]:
    """Names of the floating-point buffers (batch-norm running mean/var), in ``named_buffers`` order.

    These are theta_bn: stored as ``bn.<name>`` tensors. Integer buffers (``num_batches_tracked``)
    play no part in eval mode and are not stored.
    """
    return [n for n, b in module.named_buffers() if b.is_floating_point()]


def canonical_state(module: nn.Module) -> list[tuple[str, Tensor]]:
    """theta_opt in canonical order: ``named_parameters`` order, then the float buffers (theta_bn)."""
    out = [(n, p.detach()) for n, p in module.named_parameters()]
    fb = set(buffer_names(module))
    out += [(n, b.detach()) for n, b in module.named_buffers() if n in fb]
    return out


def theta_digest(state: Sequence[tuple[str, Tensor]] | Mapping[str, Tensor]) -> str:
    """SHA-256 (hex) of the concatenated float32 little-endian C-order bytes, in the given order."""
    items = state.items() if isinstance(state, Mapping) else state
    h = hashlib.sha256()
    for _, t in items:
        a = t.detach().to("cpu", torch.float32).contiguous().numpy()
        h.update(a.astype("<f4", copy=False).tobytes())
    return h.hexdigest()


def save_safetensors(path: str | os.PathLike[str], state: Mapping[str, Tensor],
                     metadata: Mapping[str, str] | None = None) -> int:
    """Write ``state`` (e.g. ``module.state_dict()``) as a ``.safetensors`` file, atomically.

    Loadable with ``safetensors.torch.load_file`` and then ``module.load_state_dict``; written by the one
    codec (:func:`sldpack.format.safetensors_codec.encode_checkpoint`). ``metadata`` goes into
    ``__metadata__`` (string -> string).

    Returns:
        The number of bytes written.

    Raises:
        UsageError: a tensor dtype safetensors cannot carry here.
    """
    from sldpack.atomic import atomic_write_bytes
    from sldpack.format.safetensors_codec import encode_checkpoint, storage_dtype

    arrays: dict[str, np.ndarray] = {}
    for name, t in state.items():
        if storage_dtype(str(t.dtype)) in (None, "BF16"):
            raise UsageError(f"tensor {name!r}: dtype {t.dtype} cannot be written to safetensors here")
        arrays[name] = t.detach().to("cpu").contiguous().numpy()
    data = encode_checkpoint(arrays, metadata)
    atomic_write_bytes(path, data)
    return len(data)
