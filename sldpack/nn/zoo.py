"""The architecture zoo: versioned registry ids -> float32 PyTorch modules with specified tensor names.

A ``.sldp`` file names its network by ``arch.id`` (e.g. ``resnet18@1``) plus ``in_channels``,
``num_classes``, ``image_size``, ``batchnorm`` and ``options``. This module turns that into a
``torch.nn.Module`` whose ``named_parameters()`` / ``named_buffers()`` list is fixed by the normative
annex ``spec/SLDP-1-architectures.md``: the portable init draws theta0 per canonical tensor name, so
the names, their order and their shapes are part of the format. An id never changes meaning; a
changed network gets a new version (``@2``).

Construction is cheap: the module is built on the ``meta`` device (no memory, no PyTorch random
init), then materialised with zero tensors of the same shapes (not ``to_empty``, which imports sympy; see
``_materialize_zero_``) and filled deterministically: every parameter is **zero**
and every BN buffer is PyTorch's reset state (running_mean 0, running_var 1, num_batches_tracked 0).
Zero weights are not a usable network: run ``sldpack.nn.init.init_module_`` (the portable init) first.

Run ``python -m sldpack.nn.zoo table`` to print the annex's count tables and
``python -m sldpack.nn.zoo names ID`` to print one configuration's tensor list.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import math
import numbers
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

import torch
from torch import nn

from sldpack.errors import UsageError
from sldpack.format.constants import DTYPE_FOR_NUMPY_NAME
from sldpack.format.manifest import ArchSpec
from sldpack.nn.archs import alexnet, convnet, googlenet, lenet, resnet, vgg
from sldpack.nn.archs._common import Op, trace

__all__ = [
    "ARCHITECTURES",
    "ArchInfo",
    "buffer_shapes",
    "build",
    "build_from_spec",
    "checkpoint_bytes",
    "min_image_size",
    "param_count",
    "param_shapes",
    "resolve_options",
    "tensor_list_sha256",
]

Shape = tuple[int, ...]
_Maker = Callable[[int, int, tuple[int, int], bool, Mapping[str, int]], nn.Module]
_OpsFn = Callable[[Mapping[str, int]], list[Op]]

# the largest image side the zoo accepts (same bound as the manifest's image_size)
_MAX_SIDE = 1 << 16


@dataclass(frozen=True)
class ArchInfo:
    """One registry entry.

    Attributes:
        id: the versioned registry id, ``name@version``.
        description: one line.
        default_options: every option the id accepts, with its default value (all options are ints).
        option_ranges: inclusive ``(min, max)`` per option.
        min_image_size: smallest (H, W) accepted with the default options.
        maker: builds the module (the zoo's own use; call :func:`build`).
        spatial_ops: the per-axis conv/pool chain for given options (the zoo's own use).
    """

    id: str
    description: str
    default_options: Mapping[str, int]
    option_ranges: Mapping[str, tuple[int, int]]
    min_image_size: tuple[int, int]
    maker: _Maker = field(repr=False, compare=False)
    spatial_ops: _OpsFn = field(repr=False, compare=False)


def _min_side(ops: Sequence[Op]) -> int:
    # every op's output length is non-decreasing in its input length, so the first n that survives
    # the whole chain is the minimum
    n = 1
    while trace(n, ops) < 1:
        n += 1
        if n > _MAX_SIDE:  # pragma: no cover - no registered chain needs this
            raise AssertionError("no input size is large enough")
    return n


def _entry(arch_id: str, description: str, maker: _Maker, ops: _OpsFn,
           options: Mapping[str, tuple[int, int, int]] | None = None) -> ArchInfo:
    opts = options or {}
    defaults = {k: v[0] for k, v in opts.items()}
    side = _min_side(ops(defaults))
    return ArchInfo(id=arch_id, description=description,
                    default_options=MappingProxyType(defaults),
                    option_ranges=MappingProxyType({k: (v[1], v[2]) for k, v in opts.items()}),
                    min_image_size=(side, side), maker=maker, spatial_ops=ops)


def _registry() -> dict[str, ArchInfo]:
    entries = [
        _entry("convnet@1", "dataset-distillation baseline ConvNet: depth x (conv3x3-BN?-ReLU-avgpool2), linear",
               lambda c, k, s, bn, o: convnet.ConvNet(c, k, s, bn, o["depth"], o["width"]),
               lambda o: convnet.spatial_ops(o["depth"]),
               {"depth": (3, 1, 16), "width": (128, 1, 16384)}),
        _entry("lenet@1", "LeNet-5 (ReLU, max pooling): conv5-conv5-fc120-fc84-fc",
               lambda c, k, s, bn, o: lenet.LeNet(c, k, s, bn), lambda o: lenet.spatial_ops()),
        _entry("alexnet@1", "AlexNet, torchvision single-tower variant, adaptive 6x6 pool, no dropout",
               lambda c, k, s, bn, o: alexnet.AlexNet(c, k, bn), lambda o: alexnet.spatial_ops()),
        _entry("vgg16@1", "VGG16 (configuration D), adaptive 7x7 pool, no dropout",
               lambda c, k, s, bn, o: vgg.VGG(16, c, k, bn), lambda o: vgg.spatial_ops(16)),
        _entry("vgg19@1", "VGG19 (configuration E), adaptive 7x7 pool, no dropout",
               lambda c, k, s, bn, o: vgg.VGG(19, c, k, bn), lambda o: vgg.spatial_ops(19)),
        _entry("resnet18@1", "ResNet18 (basic blocks 2-2-2-2), torchvision layout and names",
               lambda c, k, s, bn, o: resnet.ResNet(18, c, k, bn), lambda o: resnet.spatial_ops(18)),
        _entry("resnet34@1", "ResNet34 (basic blocks 3-4-6-3), torchvision layout and names",
               lambda c, k, s, bn, o: resnet.ResNet(34, c, k, bn), lambda o: resnet.spatial_ops(34)),
        _entry("googlenet@1", "GoogLeNet / Inception-v1 (5x5 branch, conv biases), no auxiliary classifiers",
               lambda c, k, s, bn, o: googlenet.GoogLeNet(c, k, bn), lambda o: googlenet.spatial_ops()),
    ]
    return {e.id: e for e in entries}


ARCHITECTURES: Mapping[str, ArchInfo] = MappingProxyType(_registry())


# --- argument checking ----------------------------------------------------------------------------

def _info(arch_id: Any) -> ArchInfo:
    if not isinstance(arch_id, str):
        raise UsageError(f"architecture id must be a string like 'convnet@1', got {type(arch_id).__name__}")
    info = ARCHITECTURES.get(arch_id)
    if info is None:
        known = ", ".join(ARCHITECTURES)
        name = arch_id.split("@", 1)[0]
        same = [k for k in ARCHITECTURES if k.split("@", 1)[0] == name]
        hint = (f" (this sldpack knows {', '.join(same)}; a newer version needs a newer sldpack)"
                if same else "")
        raise UsageError(f"unknown architecture id {arch_id!r}{hint}; known ids: {known}")
    return info


def _int_arg(what: str, v: Any, lo: int, hi: int) -> int:
    # numpy integers are fine (normalised to int); bools and floats are not, even 3.0
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise UsageError(f"{what} must be an integer, got {v!r}")
    n = int(v)
    if not lo <= n <= hi:
        raise UsageError(f"{what} must be in {lo}..{hi}, got {n}")
    return n


def resolve_options(arch_id: str, options: Mapping[str, Any] | None = None) -> dict[str, int]:
    """Check ``options`` for ``arch_id`` and fill in the defaults.

    Writers should store the returned, complete mapping in ``arch.options`` so that a file never
    depends on a default.

    Args:
        arch_id: a registry id.
        options: option name -> value; ``None`` or missing keys take the defaults.

    Returns:
        A new dict with every option of the id.

    Raises:
        UsageError: unknown id, unknown option name, or a value of the wrong type / out of range.
    """
    info = _info(arch_id)
    given = dict(options or {})
    unknown = sorted(set(given) - set(info.default_options))
    if unknown:
        accepted = ", ".join(info.default_options) or "none"
        raise UsageError(f"{arch_id} does not accept option(s) {', '.join(map(repr, unknown))}; "
                         f"accepted: {accepted}")
    out: dict[str, int] = {}
    for key, default in info.default_options.items():
        lo, hi = info.option_ranges[key]
        out[key] = _int_arg(f"{arch_id} option {key!r}", given.get(key, default), lo, hi)
    return out


def min_image_size(arch_id: str, options: Mapping[str, Any] | None = None) -> tuple[int, int]:
    """Smallest (H, W) that ``arch_id`` accepts with these options (H and W are independent).

    Raises:
        UsageError: unknown id or bad options.
    """
    info = _info(arch_id)
    side = _min_side(info.spatial_ops(resolve_options(arch_id, options)))
    return (side, side)


class _Checked(NamedTuple):
    info: ArchInfo
    in_channels: int
    num_classes: int
    size: tuple[int, int]
    opts: dict[str, int]


def _check(arch_id: str, in_channels: Any, num_classes: Any, image_size: Any, batchnorm: Any,
           options: Mapping[str, Any] | None) -> _Checked:
    info = _info(arch_id)
    cin = _int_arg("in_channels", in_channels, 1, 1 << 16)
    ncls = _int_arg("num_classes", num_classes, 1, 1 << 20)
    if not isinstance(batchnorm, bool):
        raise UsageError(f"batchnorm must be True or False, got {batchnorm!r}")
    try:
        if isinstance(image_size, (str, bytes, Mapping)):
            raise TypeError
        h, w = image_size  # a tuple, list or 2-element array
    except (TypeError, ValueError):
        raise UsageError(f"image_size must be (height, width), got {image_size!r}") from None
    size = (_int_arg("image height", h, 1, _MAX_SIDE), _int_arg("image width", w, 1, _MAX_SIDE))
    opts = resolve_options(arch_id, options)
    ops = info.spatial_ops(opts)
    if trace(size[0], ops) < 1 or trace(size[1], ops) < 1:
        side = _min_side(ops)
        raise UsageError(f"{arch_id} needs an input of at least {side}x{side} pixels "
                         f"(options {opts}), got {size[0]}x{size[1]}")
    return _Checked(info, cin, ncls, size, opts)


# --- building -------------------------------------------------------------------------------------

def _build_meta(arch_id: str, in_channels: int, num_classes: int, image_size: Any, batchnorm: bool,
                options: Mapping[str, Any] | None) -> nn.Module:
    c = _check(arch_id, in_channels, num_classes, image_size, batchnorm, options)
    # on "meta" no memory is allocated and PyTorch's (non-portable) random init costs nothing
    with torch.device("meta"):
        return c.info.maker(c.in_channels, c.num_classes, c.size, batchnorm, c.opts)


def build(arch_id: str, *, in_channels: int, num_classes: int, image_size: tuple[int, int],
          batchnorm: bool = False, options: Mapping[str, Any] | None = None,
          device: str | torch.device = "cpu") -> nn.Module:
    """Build a registered network.

    The module's ``forward`` maps float32 ``[N, in_channels, H, W]`` to logits ``[N, num_classes]``.
    Every parameter is float32 and **zero** (call ``sldpack.nn.init.init_module_`` before use); BN
    buffers hold PyTorch's reset values. With ``device="meta"`` the module has shapes but no storage.

    Args:
        arch_id: registry id, a key of :data:`ARCHITECTURES`.
        in_channels: input channels (1 for grayscale).
        num_classes: number of logits.
        image_size: (H, W) of the input; sizes the flatten of LeNet/ConvNet, and is checked against
            :func:`min_image_size` for every architecture.
        batchnorm: insert ``BatchNorm2d`` after every convolution.
        options: architecture options (see ``ARCHITECTURES[id].default_options``).
        device: where the parameters live.

    Returns:
        The module, in training mode.

    Raises:
        UsageError: unknown id, bad options, bad sizes, or an input too small for the network.
    """
    module = _build_meta(arch_id, in_channels, num_classes, image_size, batchnorm, options)
    dev = torch.device(device)
    if dev.type == "meta":
        return module
    _materialize_zero_(module, dev)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
    return module


def _materialize_zero_(module: nn.Module, device: torch.device) -> None:
    """Replace every meta parameter/buffer of ``module`` by a zero tensor of the same shape on ``device``.

    Not ``module.to_empty``: for meta tensors it runs ``torch.empty_like`` through the Python reference
    ``torch._refs.empty_like``, which imports ``torch.fx.experimental.symbolic_shapes`` and with it sympy:
    0.4 s warm and 1.5-5 s cold on the first build of every process (benchmarks/bench_replay.py).
    ``torch.zeros`` with an explicit shape allocates directly. The result is the same state ``to_empty``
    followed by zeroing gave: fresh ``nn.Parameter`` objects (shared ones stay shared), same dtypes and
    ``requires_grad`` flags, buffers zero (BN statistics are reset by the caller).
    """
    with torch.no_grad():
        new_params: dict[int, nn.Parameter] = {}
        for m in module.modules():
            for name, p in m._parameters.items():
                if p is None:
                    continue
                q = new_params.get(id(p))
                if q is None:
                    q = nn.Parameter(torch.zeros(p.shape, dtype=p.dtype, device=device),
                                     requires_grad=p.requires_grad)
                    new_params[id(p)] = q
                m._parameters[name] = q
            for name, b in m._buffers.items():
                if b is not None:
                    m._buffers[name] = torch.zeros(b.shape, dtype=b.dtype, device=device)


def build_from_spec(spec: ArchSpec, device: str | torch.device = "cpu") -> nn.Module:
    """Build the network a manifest's ``arch`` section names; see :func:`build`.

    Raises:
        UsageError: as :func:`build`.
    """
    return build(spec.id, in_channels=spec.in_channels, num_classes=spec.num_classes,
                 image_size=spec.image_size, batchnorm=spec.batchnorm, options=spec.options, device=device)


# --- shapes and sizes (meta device: no memory) ----------------------------------------------------

@dataclass(frozen=True)
class _Entry:
    kind: str  # "param" or "buffer"
    name: str
    dtype: str  # "F32" or "I64"
    shape: Shape
    itemsize: int


# storage codes from the one dtype table (format/constants.py)
_DTYPE_CODES = {t: DTYPE_FOR_NUMPY_NAME[str(t).removeprefix("torch.")] for t in (torch.float32, torch.int64)}


@functools.lru_cache(maxsize=128)
def _layout_cached(arch_id: str, in_channels: int, num_classes: int, size: tuple[int, int], batchnorm: bool,
                   opts: tuple[tuple[str, int], ...]) -> tuple[_Entry, ...]:
    info = ARCHITECTURES[arch_id]
    with torch.device("meta"):
        m = info.maker(in_channels, num_classes, size, batchnorm, dict(opts))
    out = [_Entry("param", n, _DTYPE_CODES[p.dtype], tuple(p.shape), p.element_size())
           for n, p in m.named_parameters()]
    out += [_Entry("buffer", n, _DTYPE_CODES[b.dtype], tuple(b.shape), b.element_size())
            for n, b in m.named_buffers()]
    return tuple(out)


def _layout(arch_id: str, in_channels: int, num_classes: int, image_size: Any, batchnorm: bool,
            options: Mapping[str, Any] | None) -> tuple[_Entry, ...]:
    # validate on every call; cache only the (immutable) tensor list of a validated configuration
    c = _check(arch_id, in_channels, num_classes, image_size, batchnorm, options)
    return _layout_cached(arch_id, c.in_channels, c.num_classes, c.size, batchnorm, tuple(sorted(c.opts.items())))


def param_shapes(arch_id: str, *, in_channels: int, num_classes: int, image_size: tuple[int, int],
                 batchnorm: bool = False, options: Mapping[str, Any] | None = None) -> list[tuple[str, Shape]]:
    """``(name, shape)`` of every parameter, in ``named_parameters()`` order (the canonical order).

    Raises:
        UsageError: as :func:`build`.
    """
    return [(e.name, e.shape) for e in _layout(arch_id, in_channels, num_classes, image_size, batchnorm, options)
            if e.kind == "param"]


def buffer_shapes(arch_id: str, *, in_channels: int, num_classes: int, image_size: tuple[int, int],
                  batchnorm: bool = False, options: Mapping[str, Any] | None = None) -> list[tuple[str, Shape]]:
    """``(name, shape)`` of every buffer (BN running stats), in ``named_buffers()`` order.

    Raises:
        UsageError: as :func:`build`.
    """
    return [(e.name, e.shape) for e in _layout(arch_id, in_channels, num_classes, image_size, batchnorm, options)
            if e.kind == "buffer"]


def param_count(arch_id: str, *, in_channels: int, num_classes: int, image_size: tuple[int, int],
                batchnorm: bool = False, options: Mapping[str, Any] | None = None) -> int:
    """Number of parameter elements (what papers call "parameters"; BN running stats excluded).

    Raises:
        UsageError: as :func:`build`.
    """
    return sum(math.prod(e.shape) for e in _layout(arch_id, in_channels, num_classes, image_size, batchnorm,
                                                   options) if e.kind == "param")


def checkpoint_bytes(arch_id: str, *, in_channels: int, num_classes: int, image_size: tuple[int, int],
                     batchnorm: bool = False, options: Mapping[str, Any] | None = None) -> int:
    """Tensor bytes of a full ``state_dict`` checkpoint: fp32 parameters and running stats, int64 counters.

    This is what storing the trained network itself would cost (container headers excluded), the
    figure a ``.sldp`` file is compared against.

    Raises:
        UsageError: as :func:`build`.
    """
    return sum(math.prod(e.shape) * e.itemsize
               for e in _layout(arch_id, in_channels, num_classes, image_size, batchnorm, options))


def tensor_list_sha256(arch_id: str, *, in_channels: int, num_classes: int, image_size: tuple[int, int],
                       batchnorm: bool = False, options: Mapping[str, Any] | None = None) -> str:
    """SHA-256 (hex) of the canonical tensor list, so two implementations can compare in one line.

    The hashed text is one line per tensor, parameters first then buffers, each in module order::

        <kind> TAB <name> TAB <dtype> TAB <dims joined by ','> LF

    with kind ``param`` or ``buffer``, dtype ``F32`` or ``I64``, and an empty dims field for a scalar
    (``num_batches_tracked``). UTF-8, no header, nothing after the last LF.

    Raises:
        UsageError: as :func:`build`.
    """
    text = "".join(f"{e.kind}\t{e.name}\t{e.dtype}\t{','.join(map(str, e.shape))}\n"
                   for e in _layout(arch_id, in_channels, num_classes, image_size, batchnorm, options))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- annex tables -----------------------------------------------------------------------------------

def _table(in_channels: int, num_classes: int, size: tuple[int, int]) -> str:
    kw: dict[str, Any] = {"in_channels": in_channels, "num_classes": num_classes, "image_size": size}
    rows = ["| id | batchnorm | parameters | buffer elements | tensors | checkpoint bytes | tensor-list SHA-256 |",
            "|---|---|---:|---:|---:|---:|---|"]
    for arch_id in ARCHITECTURES:
        for bn in (False, True):
            ps = param_shapes(arch_id, batchnorm=bn, **kw)
            bs = buffer_shapes(arch_id, batchnorm=bn, **kw)
            rows.append(f"| `{arch_id}` | {str(bn).lower()} | {sum(math.prod(s) for _, s in ps):,} | "
                        f"{sum(math.prod(s) for _, s in bs):,} | {len(ps) + len(bs)} | "
                        f"{checkpoint_bytes(arch_id, batchnorm=bn, **kw):,} | "
                        f"`{tensor_list_sha256(arch_id, batchnorm=bn, **kw)}` |")
    return "\n".join(rows)


def _main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sldpack.nn.zoo", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("table", help="print the annex's count table (markdown)")
    t.add_argument("--in-channels", type=int, default=1)
    t.add_argument("--num-classes", type=int, default=3)
    t.add_argument("--size", type=int, nargs=2, default=(227, 227), metavar=("H", "W"))
    n = sub.add_parser("names", help="print one configuration's canonical tensor list")
    n.add_argument("arch_id")
    n.add_argument("--in-channels", type=int, default=1)
    n.add_argument("--num-classes", type=int, default=3)
    n.add_argument("--size", type=int, nargs=2, default=(227, 227), metavar=("H", "W"))
    n.add_argument("--batchnorm", action="store_true")
    args = ap.parse_args(argv)
    size = (args.size[0], args.size[1])
    if args.cmd == "table":
        print(_table(args.in_channels, args.num_classes, size))
        return 0
    kw: dict[str, Any] = {"in_channels": args.in_channels, "num_classes": args.num_classes, "image_size": size,
                          "batchnorm": args.batchnorm}
    for name, shape in param_shapes(args.arch_id, **kw):
        print(f"param\t{name}\t{list(shape)}")
    for name, shape in buffer_shapes(args.arch_id, **kw):
        print(f"buffer\t{name}\t{list(shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
