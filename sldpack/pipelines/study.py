"""``sldp study``: run a declared grid (methods x images per class x seeds) on one data set, one protocol.

A study is a folder. ``study.json`` holds the grid and the data options; every *cell* (one row of the
table x one seed: ``SLDD(2)`` seed 1, ``normal(all)`` seed 0, ...) is a separate job:

* ``cells/<id>/cell.json``: everything the cell needs (data options, method, settings), written first;
* the job (``python -m sldpack.pipelines.study CELL.json RESULT.json -- COMMAND...``, up to ``jobs`` at a
  time) trains or distils in ``cells/<id>/`` (a distillation's run directory ``cells/<id>/run`` resumes
  from its checkpoint), evaluates on the test split exactly like ``sldp eval`` and writes
  ``cells/<id>.json`` atomically, with the per-image decisions the paired bootstrap needs; its lines (what
  runs, "resumed from iteration N of M", progress with loss, held-out score and ETA, the result) go to
  ``cells/<id>/job.log``, which the scheduler reads and shows; the user's command (``sldp study ...``) is
  the ``command_line`` in the provenance of the file it writes;
* a cell whose result file exists with the same ``cell.json`` is skipped: a killed study started again
  continues where it stopped; a result made with other settings is an error (use another folder). A
  distillation cell's settings include the distiller's defaults, so a result made by a version with other
  defaults counts as other settings.

The scheduler (:mod:`sldpack.pipelines.study_scheduler`) runs the cells and shows their progress; the tables
(:mod:`sldpack.pipelines.study_report`, pictures: :mod:`sldpack.pipelines.study_plots`) are rebuilt from the
result files after every run.

Kinds (what rows the grid makes, what the report adds):

* ``table1`` (seed paper Table 1): SLDD(k) and DD(k) for every k, normal training on all images and on
  N per class, and the baselines (below);
* ``min-images`` (Table 5, with each architecture's parameter count as in Table 6): SLDD(k)/DD(k) per
  architecture; the report names the smallest k whose mean HM reaches ``target_hm``;
* ``batchnorm`` (Table 3): every row with and without batch norm;
* ``ablation``: every distillation row once with the grid's settings (the *baseline*) and once per named
  *variant* (``[variants.NAME]``: distiller settings and/or architecture options that replace the grid's);
  the report compares each variant with the baseline, paired by seed.

Baseline rows (``baselines``, on by default in ``table1`` and ``min-images``; ``baselines = []`` turns them
off): ``trivial`` -- the organ's mean intensity (the whole image's without masks), thresholded on the
training split (:mod:`sldpack.medical.baselines`): a table that cannot beat it proves little; ``random(k)``
-- k real training images per class drawn with the cell's seed, hard labels, replayed from the same theta0
with the same T steps, only the step sizes learned (``mode = "dd"``, ``train_images = false``), packed as a
``.sldp`` like any other row: does SLDD(k) beat sending k real images per class?

Decision threshold: a distilled file that carries a calibrated Eq. (9) delta (``--select val-*`` on patch
data chooses it on the held-out images) is evaluated at that delta unless ``[eval] delta`` is set; every
patch cell also reports its metrics at the paper's delta 0.4 (``metrics_default_delta``).
"""

from __future__ import annotations

import importlib
import json
import math
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence, Sized
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from sldpack.atomic import atomic_write_bytes
from sldpack.errors import DataError, UsageError
from sldpack.medical.detection import DEFAULT_DELTA
from sldpack.nn.config import DistillConfig  # torch-free: the one list of distiller settings and defaults
from sldpack.pipelines import study_eval
from sldpack.pipelines.inputs import DataSpec, RuntimeSpec
from sldpack.pipelines.selection import DEFAULT_VAL_FRACTION
from sldpack.pipelines.study_report import row_label

if TYPE_CHECKING:
    from sldpack.format.manifest import Preprocessing
    from sldpack.nn.distill import Progress

__all__ = [
    "BASELINES",
    "STUDY_KINDS",
    "Cell",
    "CellProgress",
    "Row",
    "StudyGrid",
    "cell_config",
    "execute_cell",
    "hms",
    "plan_cells",
    "run_cell",
    "toml_reader",
]

STUDY_KINDS: tuple[str, ...] = ("table1", "min-images", "batchnorm", "ablation")
METHODS: tuple[str, ...] = ("sldd", "dd")
BASELINES: tuple[str, ...] = ("trivial", "random")
"""Baseline rows: the mean-intensity threshold and k real images per class with learned step sizes."""
_BASELINE_KINDS = frozenset({"table1", "min-images"})

_TRAIN_KEYS = frozenset({"steps", "batch_size", "lr"})
_EVAL_KEYS = frozenset({"delta", "windows", "chunk"})
_DISTILL_EXTRA = frozenset({"val_fraction"})
# set per cell or per study, never in the [distill] table
_DISTILL_FIXED = frozenset({"arch", "arch_options", "batchnorm", "mode", "images_per_class", "seed", "device"})
_VARIANT_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{0,39}")


def _check_distill_keys(table: Mapping[str, Any], where: str, *, also: str = "") -> None:
    """Distiller settings of a grid table: known names only, none of those the grid sets per cell."""
    bad = sorted(set(table) - {f.name for f in fields(DistillConfig)} - _DISTILL_EXTRA)
    if bad:
        raise UsageError(f"{where} has unknown settings {bad} (DistillConfig fields and val_fraction{also})")
    fixed = sorted(set(table) & _DISTILL_FIXED)
    if fixed:
        raise UsageError(f"{where} may not set {fixed}: the grid sets them per cell")


def _distill_config(settings: Mapping[str, Any]) -> DistillConfig:
    """The :class:`~sldpack.nn.config.DistillConfig` of grid settings (study-only keys left out)."""
    return DistillConfig(**{k: v for k, v in settings.items() if k not in _DISTILL_EXTRA})


def _ints(v: Any, what: str) -> tuple[int, ...]:
    vals = v if isinstance(v, (list, tuple)) else [v]
    try:
        out = tuple(int(x) for x in vals)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{what} must be integers, got {v!r}") from exc
    return out


@dataclass(frozen=True)
class StudyGrid:
    """What a study runs (a TOML file, ``--grid``, or the flags of ``sldp study``).

    Attributes:
        kind: one of :data:`STUDY_KINDS`.
        seeds: seeds of every row (theta0, the run's sampling, the per-class subset of normal training).
        images_per_class: the k of SLDD(k)/DD(k).
        methods: distillation methods (``sldd``, ``dd``).
        normal: normal-training rows: ``"all"`` (every training patch/image) and/or N per class.
        archs: architecture ids (``min-images``: one group per architecture).
        arch_options: options for every architecture, or ``{arch: {...}}`` per architecture.
        batchnorm: batch-norm variant (``batchnorm`` kind: both).
        target_hm: ``min-images``: the HM a row must reach (mean over seeds).
        distill: :class:`~sldpack.nn.distill.DistillConfig` fields (iterations, steps, select, ...) plus
            ``val_fraction`` (``select = "val-*"``).
        train: normal training: ``steps``, ``batch_size``, ``lr``.
        eval: ``delta`` (Eq. 9), ``windows``, ``chunk``.
        bootstrap: bootstrap resamples of the paired CIs; ``bootstrap_seed`` their seed.
        variants: ``ablation``: ``{name: settings}``; settings are ``[distill]`` keys and optionally an
            ``arch_options`` table, replacing the grid's for that variant's rows (name: lower-case letters,
            digits, ``.`` and ``-``).
        baselines: baseline rows among :data:`BASELINES` (``None``: both in ``table1`` and ``min-images``,
            none in the other kinds).
    """

    kind: str = "table1"
    seeds: tuple[int, ...] = (0,)
    images_per_class: tuple[int, ...] = (1,)
    methods: tuple[str, ...] = METHODS
    normal: tuple[str | int, ...] = ("all",)
    archs: tuple[str, ...] = ("convnet@1",)
    arch_options: Mapping[str, Any] = field(default_factory=dict)
    batchnorm: bool = False
    target_hm: float = 0.8
    distill: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)
    eval: Mapping[str, Any] = field(default_factory=dict)
    bootstrap: int = 2000
    bootstrap_seed: int = 0
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    baselines: tuple[str, ...] | None = None

    @property
    def baseline_rows(self) -> tuple[str, ...]:
        """The baseline rows this grid makes (``baselines``, or the kind's default)."""
        if self.baselines is not None:
            return self.baselines
        return BASELINES if self.kind in _BASELINE_KINDS else ()

    def validate(self) -> None:
        """Reject an unusable grid.

        Raises:
            UsageError: naming the field.
        """
        if self.kind not in STUDY_KINDS:
            raise UsageError(f"study kind must be one of {', '.join(STUDY_KINDS)}, got {self.kind!r}")
        if not self.seeds:
            raise UsageError("a study needs at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise UsageError(f"seeds repeat: {list(self.seeds)}")
        if any(k < 1 for k in self.images_per_class):
            raise UsageError(f"images per class must be >= 1, got {list(self.images_per_class)}")
        for m in self.methods:
            if m not in METHODS:
                raise UsageError(f"methods must be among {', '.join(METHODS)}, got {m!r}")
        for n in self.normal:
            if n != "all" and (not isinstance(n, int) or n < 1):
                raise UsageError(f"normal rows are 'all' or N per class >= 1, got {n!r}")
        if not self.archs:
            raise UsageError("a study needs at least one architecture")
        for b in self.baselines or ():
            if b not in BASELINES:
                raise UsageError(f"baselines must be among {', '.join(BASELINES)}, got {b!r}")
        _check_distill_keys(self.distill, "[distill]")
        for name, keys, table in (("train", _TRAIN_KEYS, self.train), ("eval", _EVAL_KEYS, self.eval)):
            bad = sorted(set(table) - keys)
            if bad:
                raise UsageError(f"[{name}] has unknown settings {bad} (known: {sorted(keys)})")
        if self.bootstrap < 100:
            raise UsageError(f"bootstrap needs >= 100 resamples, got {self.bootstrap}")
        rows = plan_rows(self)
        if not rows:
            raise UsageError("the grid makes no rows (no methods and no normal rows)")
        _distill_config(self.distill).validate()
        if (self.kind == "ablation") != bool(self.variants):
            raise UsageError("an ablation study needs [variants.NAME] tables" if self.kind == "ablation"
                             else f"[variants] belong to kind = \"ablation\", not {self.kind!r}")
        if self.kind == "ablation" and not self.methods:
            raise UsageError("an ablation study needs at least one distillation method")
        for vname, over in self.variants.items():
            if not _VARIANT_NAME.fullmatch(vname) or vname == "baseline":
                raise UsageError(f"variant name {vname!r}: use 1-40 lower-case letters, digits, '.' or '-' "
                                 "(and not 'baseline')")
            if not isinstance(over, Mapping) or not over:
                raise UsageError(f"[variants.{vname}] must be a table with at least one setting")
            nested = sorted(k for k, v in over.items() if k != "arch_options" and isinstance(v, Mapping))
            if nested:
                raise UsageError(f"[variants.{vname}] holds tables {nested}: a variant name with a '.' must be "
                                 f"quoted in TOML ([variants.\"{vname}.{nested[0]}\"])")
            settings = {k: v for k, v in over.items() if k != "arch_options"}
            _check_distill_keys(settings, f"[variants.{vname}]", also=" and arch_options")
            if "arch_options" in over and not isinstance(over["arch_options"], Mapping):
                raise UsageError(f"[variants.{vname}] arch_options must be a table")
            try:
                _distill_config({**self.distill, **settings}).validate()
            except UsageError as exc:
                raise UsageError(f"[variants.{vname}]: {exc}") from exc

    def options_for(self, arch: str) -> dict[str, Any]:
        """The architecture options of ``arch``."""
        if self.arch_options and all(isinstance(v, Mapping) for v in self.arch_options.values()):
            return dict(self.arch_options.get(arch, {}))
        return dict(self.arch_options)

    def to_obj(self) -> dict[str, Any]:
        """JSON-ready form."""
        d = asdict(self)
        for k in ("seeds", "images_per_class", "methods", "normal", "archs"):
            d[k] = list(d[k])
        if not self.variants:
            del d["variants"]  # studies made before ablations keep their study.json
        else:
            d["variants"] = {k: dict(v) for k, v in self.variants.items()}
        if self.baselines is None:
            del d["baselines"]  # the kind's default (and the study.json of studies made before baselines)
        else:
            d["baselines"] = list(self.baselines)
        return d

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any], *, where: str = "grid") -> StudyGrid:
        """From a mapping (a parsed TOML file or :meth:`to_obj`).

        Raises:
            UsageError: unknown keys or values of the wrong type.
        """
        names = {f.name for f in fields(cls)}
        bad = sorted(set(obj) - names)
        if bad:
            raise UsageError(f"{where}: unknown keys {bad} (known: {sorted(names)})")
        kw: dict[str, Any] = dict(obj)
        for k in ("seeds", "images_per_class"):
            if k in kw:
                kw[k] = _ints(kw[k], f"{where}: {k}")
        for k in ("methods", "archs", "baselines"):
            if k in kw:
                v = kw[k]
                kw[k] = tuple(str(x) for x in (v if isinstance(v, (list, tuple)) else [v]))
        if "normal" in kw:
            v = kw["normal"]
            kw["normal"] = tuple(x if x == "all" else int(x) for x in (v if isinstance(v, (list, tuple)) else [v]))
        for k in ("distill", "train", "eval", "arch_options", "variants"):
            if k in kw and not isinstance(kw[k], Mapping):
                raise UsageError(f"{where}: {k} must be a table")
        return cls(**kw)

    @classmethod
    def from_toml(cls, path: str | Path) -> StudyGrid:
        """Read a grid file.

        Raises:
            UsageError: unreadable or malformed TOML, unknown keys.
        """
        p = Path(path)
        toml = toml_reader()
        try:
            obj = toml.loads(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"{p}: cannot read the grid file: {exc}") from exc
        except toml.TOMLDecodeError as exc:
            raise UsageError(f"{p}: not valid TOML: {exc}") from exc
        return cls.from_obj(obj, where=str(p))


def toml_reader() -> ModuleType:
    """The TOML parser: ``tomllib`` (Python 3.11+), else its backport ``tomli`` (same API; a dependency on 3.10).

    Raises:
        UsageError: neither is importable (Python 3.10 without ``tomli``).
    """
    try:
        return importlib.import_module("tomllib")
    except ModuleNotFoundError:
        pass
    try:
        return importlib.import_module("tomli")
    except ModuleNotFoundError:
        raise UsageError("reading a study grid on Python < 3.11 needs tomli (pip install 'tomli>=2')") from None


@dataclass(frozen=True)
class Row:
    """One row of the table: a method with its size, on one architecture, with or without batch norm.

    ``method`` is ``sldd``, ``dd`` or ``normal``; ``k`` is the images per class (distillation) or the
    patches/images per class of normal training (``None``: all of them); ``variant`` names an ablation
    variant (``""``: the grid's own settings).
    """

    method: str
    k: int | None
    arch: str
    batchnorm: bool
    variant: str = ""

    def label(self, *, show_arch: bool = False, show_bn: bool = False) -> str:
        """The row's name in the tables (:func:`~sldpack.pipelines.study_report.row_label`)."""
        return row_label(self.method, self.k, self.arch, self.batchnorm, show_arch=show_arch, show_bn=show_bn,
                         variant=self.variant)

    @property
    def slug(self) -> str:
        """File-name-safe id."""
        k = "all" if self.k is None else str(self.k)
        arch = self.arch.replace("@", "v").replace("/", "_")
        return f"{self.method}-{k}-{arch}" + ("-bn" if self.batchnorm else "") + \
            (f"-v-{self.variant}" if self.variant else "")


@dataclass(frozen=True)
class Cell:
    """One job: a row and a seed."""

    row: Row
    seed: int

    @property
    def id(self) -> str:
        """``<row slug>-s<seed>``."""
        return f"{self.row.slug}-s{self.seed}"


def plan_rows(grid: StudyGrid) -> list[Row]:
    """The rows of ``grid`` in table order."""
    bns = (False, True) if grid.kind == "batchnorm" else (grid.batchnorm,)
    rows: list[Row] = []
    for arch in grid.archs:
        for bn in bns:
            for m in grid.methods:
                for k in sorted(grid.images_per_class):
                    rows.append(Row(m, k, arch, bn))
                    rows.extend(Row(m, k, arch, bn, v) for v in grid.variants)
            if "random" in grid.baseline_rows:
                rows.extend(Row("random", k, arch, bn) for k in sorted(grid.images_per_class))
            for n in grid.normal:
                rows.append(Row("normal", None if n == "all" else int(n), arch, bn))
    if "trivial" in grid.baseline_rows:  # no network: one row, whatever the architectures
        rows.append(Row("trivial", None, grid.archs[0], False))
    return rows


def plan_cells(grid: StudyGrid) -> list[Cell]:
    """Every cell: rows x seeds (seed-major, so a partial study has whole seeds first)."""
    return [Cell(r, s) for s in grid.seeds for r in plan_rows(grid)]


def cell_config(grid: StudyGrid, cell: Cell, spec: DataSpec, runtime: RuntimeSpec) -> dict[str, Any]:
    """Everything a cell's job needs, JSON-ready (also its identity: a changed config is another cell)."""
    r = cell.row
    over = dict(grid.variants.get(r.variant, {})) if r.variant else {}
    arch_options = {**grid.options_for(r.arch), **dict(over.pop("arch_options", {}))}
    cfg: dict[str, Any] = {"id": cell.id, "method": r.method, "k": r.k, "arch": r.arch,
                           "arch_options": arch_options, "batchnorm": r.batchnorm, "seed": cell.seed,
                           "data": asdict(spec), "device": runtime.device,
                           "threads": runtime.threads if runtime.threads is not None else 1,
                           "eval": {"delta": "file", "windows": "auto", "chunk": 512, **dict(grid.eval)}}
    if r.method == "normal":
        cfg["train"] = {"steps": 500, "batch_size": 64, "lr": 1e-3, **dict(grid.train)}
    elif r.method == "trivial":
        pass  # a threshold fitted on the training split: nothing to set
    else:
        # random(k): k real images per class, hard labels, only the step sizes learn
        fixed = {"train_images": False} if r.method == "random" else {}
        cfg["distill"] = {**dict(grid.distill), **over, **fixed}
        # the distiller's defaults are part of a cell's identity: a finished cell made when they differed
        # (another sldpack version) is refused, not silently mixed into a table of other settings
        cfg["distill_defaults"] = {k: v for k, v in DistillConfig().to_obj().items() if k not in cfg["distill"]}
    if r.variant:  # only then: cells of studies made before ablations keep their identity
        cfg["variant"] = r.variant
    return cfg


# --- one cell ----------------------------------------------------------------------------------------------

_CELL_LINE_EVERY = 5.0
"""Seconds between two progress lines of a cell in its ``job.log`` (the first, the last and every new
held-out score are written regardless)."""

_PROGRESS = re.compile(r"progress: (?P<unit>iteration|step) (?P<done>\d+)/(?P<total>\d+), loss (?P<loss>\S+)"
                       r"(?:, held-out (?P<rule>\S+) (?P<score>\S+) at (?P<at>\d+))?"
                       r", elapsed (?P<elapsed>[\d:]+), ETA (?P<eta>[\d:]+|n/a)$")
_RESUMED = re.compile(r"resumed from (?P<unit>iteration|step) (?P<at>\d+) of (?P<total>\d+)")


@dataclass(frozen=True)
class CellProgress:
    """One progress line of a cell (what :func:`run_cell` writes and the scheduler reads from ``job.log``).

    ``unit`` is ``iteration`` (distillation) or ``step`` (normal training); ``held_out`` the latest
    held-out score ``(rule, score, iteration)`` of ``select = "val-*"``; ``eta`` the seconds the cell's
    loop still needs at its measured rate (evaluation not included; ``None`` before a rate is measured).
    """

    unit: str
    done: int
    total: int
    loss: float
    elapsed: float
    eta: float | None
    held_out: tuple[str, float, int] | None = None

    def line(self) -> str:
        """The ``job.log`` line (:meth:`parse` reads it back)."""
        held = (f", held-out {self.held_out[0]} {self.held_out[1]:.4f} at {self.held_out[2]}"
                if self.held_out is not None else "")
        return (f"progress: {self.unit} {self.done}/{self.total}, loss {self.loss:.4f}{held}, "
                f"elapsed {hms(self.elapsed)}, ETA {'n/a' if self.eta is None else hms(self.eta)}")

    @staticmethod
    def is_resumption(line: str) -> bool:
        """Whether ``line`` is a cell's "resumed from iteration/step N of M" line."""
        return _RESUMED.search(line) is not None

    @classmethod
    def parse(cls, line: str) -> CellProgress | None:
        """The progress in ``line``, or ``None`` when it is another line."""
        m = _PROGRESS.search(line.rstrip())
        if m is None:
            return None
        held = (str(m["rule"]), float(m["score"]), int(m["at"])) if m["rule"] else None
        return cls(str(m["unit"]), int(m["done"]), int(m["total"]), float(m["loss"]), _seconds(m["elapsed"]),
                   None if m["eta"] == "n/a" else _seconds(m["eta"]), held)


def hms(sec: float) -> str:
    """``h:mm:ss`` of ``sec`` seconds (the progress lines' clock)."""
    sec = max(0, int(sec + 0.5))
    return f"{sec // 3600}:{sec % 3600 // 60:02d}:{sec % 60:02d}"


def _seconds(hms: str) -> float:
    h, m, s = (int(v) for v in hms.split(":"))
    return float(3600 * h + 60 * m + s)


class _WatchedScorer:
    """A held-out scorer that remembers its latest score (for the progress lines); everything else, such as
    the ``rule`` and ``description`` the distiller records, is the wrapped scorer's."""

    def __init__(self, fn: Callable[[Any], float]) -> None:
        self.fn = fn
        self.calls = 0
        self.last = math.nan

    def __call__(self, module: Any) -> float:
        v = float(self.fn(module))
        self.calls, self.last = self.calls + 1, v
        return v

    def __getattr__(self, name: str) -> Any:
        if name == "fn":  # not set yet (a copy being built): no endless lookup
            raise AttributeError(name)
        return getattr(self.fn, name)


class _LineThrottle:
    """Whether a progress line is due: the first, the last, one with news, else one per ``every`` seconds."""

    def __init__(self, every: float) -> None:
        self.every, self.last = every, -math.inf

    def due(self, *, force: bool = False) -> bool:
        now = time.monotonic()
        if force or now - self.last >= self.every:
            self.last = now
            return True
        return False


@contextmanager
def _command_line(command: Sequence[str]) -> Iterator[None]:
    """Run with ``sys.argv`` set to the user's command (the ``sldp study ...`` that made this cell), so the
    provenance of the file a cell writes names that command, not this module's job command line."""
    if not command:
        yield
        return
    old = sys.argv
    sys.argv = [str(a) for a in command]
    try:
        yield
    finally:
        sys.argv = old


def _print_line(line: str) -> None:
    print(line, flush=True)  # flushed: the scheduler reads job.log while the cell runs


def run_cell(cfg: Mapping[str, Any], cell_dir: str | Path, *, command: Sequence[str] = (),
             say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train or distil one cell, evaluate it on the test split, return its result (JSON-ready).

    Distillation runs in ``cell_dir/run`` and resumes from its checkpoint; normal training writes
    ``cell_dir/model.safetensors`` and resumes from ``cell_dir/train_checkpoint.pt`` (every 100 steps).

    Args:
        cfg: the cell's settings (:func:`cell_config`).
        cell_dir: its folder.
        command: the user's command line (``sldp study ...``), recorded in the ``.sldp`` file's provenance.
        say: where the cell's lines go (default: stdout, flushed; the scheduler's ``job.log``): what runs,
            "resumed from iteration N of M", progress (:class:`CellProgress`) and the result.

    Raises:
        UsageError / DataError: bad settings or data.
    """
    import torch

    from sldpack.nn.device import resolve_device
    from sldpack.pipelines.evaluate import evaluate
    from sldpack.pipelines.inputs import open_source

    torch.set_num_threads(int(cfg.get("threads", 1)))
    dev = resolve_device(str(cfg.get("device", "cpu")))
    spec = DataSpec(**cfg["data"])
    d = Path(cell_dir)
    d.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    method, k, seed = str(cfg["method"]), cfg["k"], int(cfg["seed"])
    out = say or _print_line
    out(f"cell {cfg['id']}: {method} k={'all' if k is None else k} seed {seed} {cfg['arch']} on {dev}"
        + (f"; command: {' '.join(map(str, command))}" if command else ""))
    throttle = _LineThrottle(_CELL_LINE_EVERY)
    info: dict[str, Any] = {}
    pre: Preprocessing | None
    if method == "trivial":
        return study_eval.trivial_cell(cfg, spec, t0, out)
    if method == "normal":
        from sldpack.pipelines.models import save_trained_model, train_model

        opened = open_source(spec, spec.split_or("train"), per_class=k, subset_seed=seed)
        ckpt = d / "train_checkpoint.pt"
        first_step: list[int] = []  # the first step this run trains: 1, or one past the checkpoint's
        t_first = 0.0  # when that step ended: the rate is measured from there (the first step pays the setup)

        def step_done(step: int, steps: int, loss: float) -> None:
            nonlocal t_first
            if not first_step:
                first_step.append(step)
                t_first = time.perf_counter()
                if step > 1:
                    out(f"resumed from step {step - 1} of {steps} ({ckpt.name})")
            if throttle.due(force=step in (first_step[0], steps)):
                now = time.perf_counter()
                rate = (now - t_first) / (step - first_step[0]) if step > first_step[0] else None
                out(CellProgress("step", step, steps, loss, now - t0, None if rate is None else rate * (steps - step))
                    .line())

        model = train_model(opened.source, arch=str(cfg["arch"]), arch_options=cfg["arch_options"],
                            batchnorm=bool(cfg["batchnorm"]), seed=seed, device=str(dev), checkpoint=ckpt,
                            checkpoint_every=100, progress=step_done, **cfg["train"])
        info["resumed_from_step"] = first_step[0] - 1 if first_step and first_step[0] > 1 else None
        nbytes = save_trained_model(d / "model.safetensors", model)
        ckpt.unlink(missing_ok=True)  # the network is stored: the checkpoint has done its job
        module, pre, names, base = model.module, model.preprocessing, model.class_names, opened.settings
        info["train_inputs"] = len(opened.source) if isinstance(opened.source, Sized) else None
        info["stored"] = "model.safetensors"
    else:
        from sldpack.nn.distill import distill
        from sldpack.nn.replay import replay
        from sldpack.pipelines.patch_source import patch_task_from_manifest

        dset = dict(cfg["distill"])
        val_fraction = float(dset.pop("val_fraction", DEFAULT_VAL_FRACTION))
        dcfg = DistillConfig(arch=str(cfg["arch"]), arch_options=dict(cfg["arch_options"]),
                             batchnorm=bool(cfg["batchnorm"]), mode="sldd" if method == "sldd" else "dd",
                             images_per_class=int(k), seed=seed,
                             device=str(dev), **dset)
        from sldpack.pipelines.selection import open_for_selection

        chosen = open_for_selection(spec, dcfg.select, val_fraction=val_fraction, delta=study_eval.fixed_delta(cfg))
        opened = chosen.opened
        scorer = _WatchedScorer(chosen.scorer) if chosen.scorer is not None else None
        run_dir = d / "run"
        resume = (run_dir / "checkpoint.pt").is_file()
        first, scores = True, 0
        held: tuple[str, float, int] | None = None  # the latest held-out score: rule, value, iteration

        def iteration_done(p: Progress) -> None:
            nonlocal first, scores, held
            was_first, first = first, False
            if was_first and resume:
                out(f"resumed from iteration {p.iteration - 1} of {p.total} ({run_dir / 'checkpoint.pt'})")
            news = scorer is not None and scorer.calls != scores
            if scorer is not None and news:
                scores, held = scorer.calls, (str(getattr(scorer, "rule", "val")), scorer.last, p.iteration)
            if throttle.due(force=was_first or news or p.iteration == p.total):
                out(CellProgress("iteration", p.iteration, p.total, p.loss, p.elapsed, p.eta, held).line())

        with _command_line(command):
            res = distill(opened.source, dcfg, run_dir=run_dir, resume=resume, scorer=scorer,
                          progress=iteration_done)
        if resume and first:  # resumed from a checkpoint of the last iteration: no iteration ran here
            out(f"resumed from iteration {res.resumed_from} of {dcfg.iterations} ({run_dir / 'checkpoint.pt'})")
        assert res.sldp_path is not None
        rep = replay(res.sldp_path, device=dev)  # evaluate what the file re-derives, not the in-memory copy
        module, manifest = rep.module, rep.manifest
        pre = manifest.preprocessing
        names = tuple(manifest.labels.names) if manifest.labels is not None else ()
        base = patch_task_from_manifest(manifest)
        nbytes = res.sldp_path.stat().st_size
        opts = manifest.distill.options if manifest.distill is not None else {}
        info.update(stored="run/distilled.sldp", resumed_from=res.resumed_from,
                    selected_iteration=opts.get("selected_iteration"), selection=opts.get("selection"),
                    theta_opt_sha256=manifest.replay.theta_opt_sha256 if manifest.replay else None)
        if manifest.decision is not None:
            info["decision"] = manifest.decision.to_obj()
    train_s = time.perf_counter() - t0
    if pre is None:
        raise DataError("the trained network records no preprocessing")
    test = spec.select("test")
    settings = spec.patch_task(base, default_size=None)
    delta, delta_source = study_eval.cell_delta(cfg, info.get("decision"))
    ev = evaluate(module, pre, test.data, class_names=names, settings=settings, delta=delta,
                  windows=str(cfg["eval"]["windows"]), chunk=int(cfg["eval"]["chunk"]))
    img = ev.image
    if ev.detection is not None:  # Eq. (9): the delta used, and the metrics at the paper's delta beside them
        info["delta"], info["delta_source"] = delta, delta_source
        info["metrics_default_delta"] = study_eval.metrics_at(ev.detection, DEFAULT_DELTA)
    n_params = int(sum(p.numel() for p in module.parameters()))

    def num(v: float | None) -> float | None:
        return None if v is None or not math.isfinite(v) else float(v)

    hm = num(img.hm) if img else None
    out(f"result: test HM {'n/a' if hm is None else f'{hm:.4f}'}, {nbytes} B"
        + (f", selected iteration {info['selected_iteration']}" if info.get("selected_iteration") else "")
        + f", {time.perf_counter() - t0:.1f} s")

    return {"id": cfg["id"], "config": dict(cfg), "metrics": {
                "sen": num(img.sensitivity) if img else None, "spe": num(img.specificity) if img else None,
                "hm": num(img.hm) if img else None, "auc": num(img.auc) if img else None,
                "acc": num(img.accuracy) if img else None,
                "patch_acc": num(ev.patch.accuracy) if ev.patch is not None else None},
            "bytes": int(nbytes), "n_params": n_params, "train_seconds": round(train_s, 2),
            "eval_seconds": round(ev.seconds, 2), "wall_seconds": round(time.perf_counter() - t0, 2),
            "test": {"split": test.split, "images": len(test.data), "rule": test.split_rule},
            "per_image": study_eval.per_image(ev), **info}


def execute_cell(config_path: str | Path, result_path: str | Path, *, command: Sequence[str] = ()) -> None:
    """Run the cell of ``config_path`` and write its result to ``result_path`` atomically (``command``: the
    user's command line, recorded in the provenance of the file the cell writes)."""
    cp = Path(config_path)
    cfg = json.loads(cp.read_text(encoding="utf-8"))
    result = run_cell(cfg, cp.parent, command=command)
    atomic_write_bytes(result_path, (json.dumps(result, indent=1, allow_nan=False) + "\n").encode())


def _main(argv: Sequence[str]) -> int:
    if len(argv) < 2 or (len(argv) > 2 and argv[2] != "--"):
        print("usage: python -m sldpack.pipelines.study CELL.json RESULT.json [-- COMMAND...]", file=sys.stderr)
        return 2
    execute_cell(argv[0], argv[1], command=argv[3:])
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
