"""What a data-reading command reads: the one data vocabulary, as a dataclass (numpy only, no torch).

:class:`DataSpec` is the single definition of the data options of every command that reads training or
test data (``sldp distill``, ``train``, ``eval``, ``audit``, ``demo``): its field names, defaults and help
are turned into click options by :mod:`sldpack.cli.options`, so a new command cannot drift. The same
spec builds the distiller's / trainer's :class:`~sldpack.pipelines.sources.RealSource`
(:func:`open_source`) and says what was read (:func:`describe_data`).

``--source NAME[:ARG]`` stays the extension point for other data: see
:func:`~sldpack.pipelines.sources.register_source`; :func:`phantom_patch_source` and
:func:`npz_patch_source` are the built-in plug-ins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from sldpack.errors import DataError, UsageError
from sldpack.medical.loaders import IMAGE_DTYPE_RULE
from sldpack.medical.patches import DEFAULT_INSIDE_MIN, DEFAULT_OUTSIDE_MAX, PATCH_CLASS_NAMES, build_patch_index
from sldpack.pipelines.datasets import DATA_FORMATS, DataSelection, load_data, phantom_data
from sldpack.pipelines.patch_source import PatchSource, PatchTask
from sldpack.pipelines.sources import ArraySource, RealSource, load_npz, resolve_source

__all__ = [
    "DEFAULT_PATCH_SIZE",
    "DEVICES",
    "DataSpec",
    "OpenedSource",
    "RuntimeSpec",
    "describe_data",
    "npz_patch_source",
    "open_source",
    "parse_key_values",
    "phantom_patch_source",
]

DEFAULT_PATCH_SIZE = 32
"""Patch side when data with masks is read and no ``--patch-size`` (nor a file's geometry) says otherwise."""
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


def _opt(help_text: str, **extra: Any) -> dict[str, Any]:
    return {"help": help_text, **extra}


MAX_THREADS = 1024
"""The most torch CPU threads an option takes (far more would only exhaust the machine's thread limit)."""

@dataclass(frozen=True)
class DataSpec:
    """The data options of every data-reading command (one definition; see :mod:`sldpack.cli.options`).

    Each field is the option ``--field-name``; ``metadata["help"]`` is its help text.
    """

    data: str | None = field(default=None, metadata=_opt(
        "Data: MedMNIST .npz ({split}_images/{split}_labels), .npz with images/masks/labels (e.g. "
        "montgomery_512.npz), a folder (images + masks/ + labels.csv; PNG/JPEG/TIFF/DICOM) or one image file; "
        f"the layout is detected (or --format). Pixels: {IMAGE_DTYPE_RULE}, finite; anything else is refused "
        "naming the problem.", metavar="PATH"))
    format: str = field(default="auto", metadata=_opt("Layout of --data.", choices=DATA_FORMATS))
    source: str | None = field(default=None, metadata=_opt(
        "Plug-in data source instead of --data: a registered name (phantom, patches) or "
        "package.module:function, then :ARG, e.g. --source phantom:n=60,size=128 or "
        "--source mypkg.data:my_source:/path/to/data (sldpack.pipelines.sources.register_source).",
        metavar="NAME[:ARG]"))
    phantom: int | None = field(default=None, metadata=_opt(
        "Use N built-in phantom X-rays (with organ masks) instead of --data.", metavar="N", min=2))
    phantom_size: int = field(default=128, metadata=_opt("Phantom image side in px.", min=16))
    phantom_seed: int = field(default=0, metadata=_opt("Phantom seed.", min=0))
    split: str | None = field(default=None, metadata=_opt(
        "train, test or all (by the split rule: --train-fraction, --split-seed); for a MedMNIST file one of its "
        "own splits (train, val, test) [default: test for eval, train otherwise]."))
    train_fraction: float = field(default=0.7, metadata=_opt(
        "Split rule: share of images in 'train' (stratified by image label).", min=0.0, max=1.0, min_open=True,
        max_open=True))
    split_seed: int = field(default=0, metadata=_opt("Split rule: seed.", min=0))
    resize: int | None = field(default=None, metadata=_opt("Folders only: resize images to this side.", min=1))
    unlabelled: str = field(default="error", metadata=_opt(
        "Folders only: an image without a labels.csv row is an error, or (skip) left out and counted in the "
        "output.", choices=("error", "skip")))
    patch_size: int | None = field(default=None, metadata=_opt(
        f"Data with organ masks: patch (window) side in px [default: the file's for eval, else "
        f"{DEFAULT_PATCH_SIZE}].", min=1))
    stride: int | None = field(default=None, metadata=_opt("Window step in px [default: half the patch size].",
                                                            min=1))
    out_size: int | None = field(default=None, metadata=_opt(
        "Shrink patches to this side by area averaging (the network input) [default: the patch size].", min=1))
    outside_max: float | None = field(default=None, metadata=_opt(
        f"Patch label I below this organ fraction [{DEFAULT_OUTSIDE_MAX}].", min=0.0, max=1.0))
    inside_min: float | None = field(default=None, metadata=_opt(
        f"Patch label N/P above this organ fraction [{DEFAULT_INSIDE_MIN}].", min=0.0, max=1.0))

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> DataSpec:
        """The spec from a command's keyword arguments (extra keys are ignored)."""
        return cls(**{f.name: kwargs[f.name] for f in fields(cls) if f.name in kwargs})

    @property
    def patch_given(self) -> bool:
        """True when any patch geometry option was given."""
        return any(v is not None for v in (self.patch_size, self.stride, self.out_size))

    def split_or(self, default: str) -> str:
        """``split``, or ``default`` when none was given."""
        return self.split if self.split is not None else default

    def check_one_source(self, *, allow_source: bool = True) -> None:
        """Exactly one of --data, --phantom (and --source when allowed).

        Raises:
            UsageError: none or several given, or a phantom of fewer than 2 images.
        """
        given = [n for n, v in (("--data", self.data), ("--phantom", self.phantom), ("--source", self.source))
                 if v is not None]
        names = "--data PATH, --phantom N" + (" or --source NAME[:ARG]" if allow_source else "")
        if not allow_source and self.source is not None:
            raise UsageError("this command takes --data PATH or --phantom N (no --source)")
        if len(given) != 1:
            raise UsageError(f"give exactly one data source: {names}" +
                             (f" (got {' and '.join(given)})" if given else ""))
        if self.phantom is not None and self.phantom < 2:
            raise UsageError(f"--phantom needs at least 2 images, got {self.phantom}")
        if self.resize is not None and not (self.data is not None and Path(self.data).is_dir()):
            # only a folder's images are resized: anywhere else --resize would be silently ignored
            what = f"--data {self.data} is not a folder" if self.data is not None else "the data are not a folder"
            raise UsageError(f"--resize resizes the images of a folder (--data DIR); {what}: drop --resize")

    def select(self, split: str) -> DataSelection:
        """The images of ``split`` from --data or --phantom (see :func:`~sldpack.pipelines.datasets.load_data`).

        Raises:
            UsageError: no or several sources, a bad split. DataError: unreadable data.
        """
        self.check_one_source(allow_source=False)
        if self.phantom is not None:
            return phantom_data(self.phantom, self.phantom_size, self.phantom_seed, split=split,
                                train_fraction=self.train_fraction, split_seed=self.split_seed)
        assert self.data is not None
        return load_data(self.data, split=split, train_fraction=self.train_fraction, split_seed=self.split_seed,
                         resize=self.resize, fmt=self.format, unlabelled=self.unlabelled)

    def patch_task(self, base: PatchTask | None = None, *,
                   default_size: int | None = DEFAULT_PATCH_SIZE) -> PatchTask | None:
        """Patch geometry: options given here over ``base`` (e.g. a file's) over the defaults.

        Returns ``None`` when neither a patch size, ``base`` nor ``default_size`` is known.
        """
        if base is None and self.patch_size is None and default_size is None:
            return None
        size = self.patch_size if self.patch_size is not None else (base.size if base is not None else default_size)
        assert size is not None
        if self.stride is not None:
            stride = self.stride
        elif base is not None and self.patch_size is None:
            stride = base.stride
        else:
            stride = max(1, size // 2)
        out = self.out_size if self.out_size is not None else (
            base.out_size if base is not None and self.patch_size is None else None)
        return PatchTask(
            size=size, stride=stride, out_size=out,
            outside_max=self.outside_max if self.outside_max is not None else (
                base.outside_max if base is not None else DEFAULT_OUTSIDE_MAX),
            inside_min=self.inside_min if self.inside_min is not None else (
                base.inside_min if base is not None else DEFAULT_INSIDE_MIN))


@dataclass(frozen=True)
class RuntimeSpec:
    """Where torch runs: ``--device`` and ``--threads`` (the same on every command)."""

    device: str = field(default="auto", metadata=_opt(
        "Where torch runs: auto (cuda when available, else cpu), cpu or cuda.", choices=DEVICES))
    threads: int | None = field(default=None, metadata=_opt(
        "torch CPU threads, >= 1 [default: torch's]; a replay check uses the file's reference count.", min=1,
        max=MAX_THREADS))

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> RuntimeSpec:
        """The spec from a command's keyword arguments (extra keys are ignored)."""
        return cls(**{f.name: kwargs[f.name] for f in fields(cls) if f.name in kwargs})


@dataclass(frozen=True)
class OpenedSource:
    """A training source and how it was made.

    Attributes:
        source: what the distiller / trainer samples from.
        selection: the images it was cut from (``None`` for a ``--source`` plug-in).
        settings: the patch geometry (``None`` for whole images).
        what: one human line ("1234 patches (I/N/P 500/400/334)", "97 whole images").
    """

    source: RealSource
    selection: DataSelection | None
    settings: PatchTask | None
    what: str


def _whole_images(sel: DataSelection, per_class: int | None, seed: int, names: tuple[str, ...]) -> ArraySource:
    labels = np.asarray(sel.data.labels)
    idx = np.arange(len(sel.data))
    if per_class is not None:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC1A5]))
        idx = np.sort(np.concatenate([
            rng.choice(np.flatnonzero(labels == c), size=min(per_class, int((labels == c).sum())), replace=False)
            for c in np.unique(labels)]))
    return ArraySource(images=np.asarray(sel.data.images)[idx], labels=labels[idx], class_names=names,
                       num_classes=int(labels.max()) + 1 if labels.size else 0)


def open_source(spec: DataSpec, split: str, *, class_names: Sequence[str] = (), per_class: int | None = None,
                subset_seed: int = 0, medmnist_as_stored: bool = False) -> OpenedSource:
    """The :class:`RealSource` of ``split`` that ``spec`` names.

    * ``--source NAME[:ARG]``: the plug-in (:func:`~sldpack.pipelines.sources.resolve_source`).
    * data with organ masks (images/masks/labels npz, folder with ``masks/``, phantom): I/N/P patches
      (:class:`PatchSource`, geometry from :meth:`DataSpec.patch_task`).
    * data without masks (MedMNIST): whole images (:class:`ArraySource`); with ``medmnist_as_stored`` a
      MedMNIST file is read as stored (channels kept, ``label_names``, file digest as fingerprint: what
      ``sldp distill`` has always recorded).

    Args:
        class_names: names in label order (whole images only; checked against a plug-in's).
        per_class: at most this many random patches (images) per class.
        subset_seed: seed of that subset.

    Raises:
        UsageError: contradictory options (patch options on data without masks). DataError: bad data.
    """
    spec.check_one_source()
    names = tuple(class_names)
    if spec.source is not None:
        if spec.patch_given or per_class is not None:
            raise UsageError("--patch-size/--stride/--out-size and --per-class apply to --data/--phantom; a "
                             "--source plug-in takes its own options in ARG")
        src = resolve_source(spec.source, split)
        if names and tuple(src.class_names) != names:
            raise UsageError(f"--class-names {names} differ from the source's {tuple(src.class_names)}")
        return OpenedSource(src, None, getattr(src, "settings", None), f"{spec.source} [{split}]")
    sel = spec.select(split)
    if sel.data.masks is not None:
        if names and names != PATCH_CLASS_NAMES:
            raise UsageError(f"data with organ masks gives the patch classes {PATCH_CLASS_NAMES}, not {names}")
        settings = spec.patch_task()
        assert settings is not None
        psrc = PatchSource.from_image_set(sel.data, settings, per_class=per_class, subset_seed=subset_seed)
        counts = psrc.counts()
        _require_classes(sel.source, split, dict(zip(PATCH_CLASS_NAMES, counts, strict=True)), "patches")
        return OpenedSource(psrc, sel, settings, f"{len(psrc)} patches (I/N/P {'/'.join(map(str, counts))})")
    if spec.patch_given:
        raise UsageError(f"{sel.source} has no organ masks: patches need masks (drop --patch-size/--stride/"
                         "--out-size)")
    vals, cnt = np.unique(np.asarray(sel.data.labels), return_counts=True)
    _require_classes(sel.source, split, {str(v): int(c) for v, c in zip(vals, cnt, strict=True) if v >= 0},
                     "images")
    if sel.medmnist and medmnist_as_stored and per_class is None and spec.data is not None:
        asrc = load_npz(spec.data, split, class_names=names)
        return OpenedSource(asrc, sel, None, f"{len(asrc)} whole images")
    wsrc = _whole_images(sel, per_class, subset_seed, names)
    return OpenedSource(wsrc, sel, None, f"{len(wsrc)} whole images")


def _require_classes(source: str, split: str, counts: Mapping[str, int], what: str) -> None:
    """Training needs two classes: a one-class split would learn to say one thing (and eval would then
    report a perfect score)."""
    present = {k: v for k, v in counts.items() if v > 0}
    if len(present) < 2:
        raise DataError(f"{source} [{split}]: the {what} hold {len(present)} class(es) ({present}); distilling or "
                        "training needs at least two classes")


def _class_counts(labels: np.ndarray) -> str:
    vals, counts = np.unique(np.asarray(labels), return_counts=True)
    return ", ".join(f"{'?' if v < 0 else int(v)}: {int(c)}" for v, c in zip(vals, counts, strict=True))


def describe_data(spec: DataSpec, opened: OpenedSource | None = None) -> list[str]:
    """Say what was read, before long work starts: images per split and class; for patch data the I/N/P
    patch counts per split (every split of the rule, so the held-out part is stated too).

    Raises:
        UsageError / DataError: as :meth:`DataSpec.select`.
    """
    if spec.source is not None:
        line = f"data: plug-in source {spec.source}"
        if opened is not None:
            src = opened.source
            counts = getattr(src, "counts", None)
            extra = f"; per class {dict(zip(src.class_names, counts(), strict=True))}" if callable(counts) else ""
            line += f": {src.num_classes} classes {list(src.class_names)}, inputs {src.channels}x" \
                    f"{src.image_size[0]}x{src.image_size[1]}{extra}"
        return [line]
    first = spec.select(spec.split_or("train")) if opened is None or opened.selection is None else opened.selection
    if first.medmnist:
        assert spec.data is not None
        from sldpack.medical.loaders import load_medmnist_npz

        splits = load_medmnist_npz(spec.data)
        lines = [f"data: {first.source} (MedMNIST layout, the file's own splits)"]
        for name, part in splits.items():
            lines.append(f"  {name:<6} {len(part)} images; per class {_class_counts(part.labels)}")
        return lines
    settings = opened.settings if opened is not None else (spec.patch_task() if first.data.masks is not None
                                                           else None)
    lines = [f"data: {first.source}, {first.total} images ({first.split_rule})" +
             (f"; {first.note}" if first.note else "")]
    for name in ("train", "test") if first.split != "all" or first.total > 1 else ("all",):
        try:
            chosen = first if name == first.split else spec.select(name)
        except UsageError:
            continue
        images = chosen.data
        text = f"  {name:<6} {len(images)} images; per class {_class_counts(images.labels)}"
        if settings is not None and images.masks is not None and bool((np.asarray(images.labels) >= 0).all()):
            idx = build_patch_index(images.masks, images.labels, settings.config())
            c = idx.counts()
            text += (f"; patches {settings.size} px stride {settings.stride}: I {int(c[0])} / N {int(c[1])} / "
                     f"P {int(c[2])}")
        lines.append(text)
    return lines


# --- plug-in data sources for `--source` (built on the same DataSpec) ---------------------------------

def parse_key_values(items: Sequence[str], *, option: str, first_key: str | None = None,
                     convert_ints: bool = True) -> dict[str, Any]:
    """The one ``KEY=VALUE`` parser (``--arch-option width=64``, ``--source NAME:a=1,b=2``).

    Args:
        items: the ``KEY=VALUE`` strings.
        option: named in errors.
        first_key: a first item without ``=`` is the value of this key (``patches:FILE.npz,patch=64``).
        convert_ints: integer values become ``int``.

    Raises:
        UsageError: an item without ``=`` (or with an empty key).
    """
    out: dict[str, Any] = {}
    for k, item in enumerate(items):
        key, sep, val = item.partition("=")
        if not sep and k == 0 and first_key is not None:
            out[first_key] = item
            continue
        key, val = key.strip(), val.strip()
        if not sep or not key:
            raise UsageError(f"{option} wants KEY=VALUE, got {item!r}")
        try:
            out[key] = int(val) if convert_ints else val
        except ValueError:
            out[key] = val
    return out


def _kv(argument: str | None, first_key: str) -> dict[str, str]:
    return parse_key_values(argument.split(",") if argument else [], option="a source option",
                            first_key=first_key, convert_ints=False)


def _int_opt(opts: Mapping[str, str], key: str, default: int | None) -> int | None:
    if key not in opts:
        return default
    try:
        return int(opts[key])
    except ValueError:
        raise UsageError(f"source option {key}={opts[key]!r} is not an integer") from None


def _float_opt(opts: Mapping[str, str], key: str) -> float | None:
    if key not in opts:
        return None
    try:
        return float(opts[key])
    except ValueError:
        raise UsageError(f"source option {key}={opts[key]!r} is not a number") from None


_SOURCE_KEYS = {"patch", "stride", "out", "outside_max", "inside_min", "fraction", "split_seed", "per_class"}


def _check_keys(opts: Mapping[str, str], allowed: set[str]) -> None:
    bad = sorted(set(opts) - allowed)
    if bad:
        raise UsageError(f"unknown source option(s) {', '.join(bad)}; accepted: {', '.join(sorted(allowed))}")


def _plugin_spec(opts: Mapping[str, str], patch_default: int, **where: Any) -> DataSpec:
    return DataSpec(patch_size=_int_opt(opts, "patch", patch_default), stride=_int_opt(opts, "stride", None),
                    out_size=_int_opt(opts, "out", None), outside_max=_float_opt(opts, "outside_max"),
                    inside_min=_float_opt(opts, "inside_min"),
                    train_fraction=float(opts.get("fraction", 0.7)), **where)


def phantom_patch_source(argument: str | None, split: str) -> RealSource:
    """``--source phantom:n=60,size=128,patch=32`` (same as ``--phantom 60 --phantom-size 128 --patch-size 32``).

    Options (``KEY=VALUE``, comma-separated; the first may be just the image count): ``n`` (60), ``size``
    (128), ``seed`` (0), ``patch`` (32), ``stride`` (patch/2), ``out`` (patch side fed to the network),
    ``outside_max``/``inside_min`` (thresholds), ``fraction`` (0.7, train share), ``split_seed`` (seed),
    ``per_class`` (at most N patches per class). ``split`` is ``train``/``test``/``all``.
    """
    opts = _kv(argument, "n")
    _check_keys(opts, _SOURCE_KEYS | {"n", "size", "seed"})
    seed = _int_opt(opts, "seed", 0) or 0
    spec = _plugin_spec(opts, 32, phantom=_int_opt(opts, "n", 60) or 60, phantom_size=_int_opt(opts, "size", 128)
                        or 128, phantom_seed=seed, split_seed=_int_opt(opts, "split_seed", seed) or 0)
    return open_source(spec, split, per_class=_int_opt(opts, "per_class", None)).source


def npz_patch_source(argument: str | None, split: str) -> RealSource:
    """``--source patches:PATH,patch=64,stride=32,out=32`` (same as ``--data PATH --patch-size 64 ...``).

    Patches of an ``.npz`` with images/masks/labels (or a folder). Options as :func:`phantom_patch_source`
    (``patch`` default 64) plus the leading ``PATH`` (or ``path=``) and ``resize`` (folders only).
    """
    opts = _kv(argument, "path")
    _check_keys(opts, _SOURCE_KEYS | {"path", "resize"})
    if "path" not in opts:
        raise UsageError("npz_patch_source needs a path: --source patches:FILE.npz,patch=64")
    spec = _plugin_spec(opts, 64, data=opts["path"], split_seed=_int_opt(opts, "split_seed", 0) or 0,
                        resize=_int_opt(opts, "resize", None))
    return open_source(spec, split, per_class=_int_opt(opts, "per_class", None)).source
