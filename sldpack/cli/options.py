"""The data vocabulary of ``sldp``: click options built from ONE definition.

Every command that reads training or test data (``distill``, ``train``, ``eval``, ``audit``, ``demo``)
decorates itself with :func:`data_options` and :func:`runtime_options`. The options are generated from the
fields of :class:`~sldpack.pipelines.inputs.DataSpec` and :class:`~sldpack.pipelines.inputs.RuntimeSpec`
(name, default, help, choices), so names, defaults and help cannot drift between commands; the command
rebuilds the spec with ``DataSpec.from_kwargs(kwargs)``.

Numeric options of every command use the same checked types (:data:`COUNT`, :data:`SEED`, :data:`RATE`,
:func:`number`): a value out of range, NaN or infinite is refused by click with exit code 2 and one line
naming the option, before any work starts.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, TypeVar

import click

from sldpack.pipelines.inputs import DataSpec, RuntimeSpec

__all__ = ["COUNT", "DATA_OPTION_NAMES", "NONNEGATIVE", "RATE", "RUNTIME_OPTION_NAMES", "SEED", "FiniteFloat",
           "data_options", "number", "option_flag", "runtime_options"]

_F = TypeVar("_F", bound=Callable[..., Any])

_TYPES: dict[str, type] = {"int": int, "float": float, "str": str}


class FiniteFloat(click.FloatRange):
    """A float option in a range that also refuses NaN and +-Inf (click's FloatRange lets NaN through)."""

    name = "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Parse, refuse a non-finite value, then check the range."""
        v = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(v, param, ctx)


def number(min: float | None = None, max: float | None = None, *, min_open: bool = False,
           max_open: bool = False) -> FiniteFloat:
    """A finite float option in ``[min, max]`` (open ends with ``min_open``/``max_open``)."""
    return FiniteFloat(min=min, max=max, min_open=min_open, max_open=max_open)


COUNT = click.IntRange(min=1)
"""A count (iterations, steps, batch size, images per class, threads ...): an integer >= 1."""
NONNEGATIVE = click.IntRange(min=0)
"""An integer >= 0 (e.g. --checkpoint-every, 0 = only at the end)."""
SEED = click.IntRange(min=0)
"""A seed: an integer >= 0 (numpy refuses negative seeds)."""
RATE = number(0.0, min_open=True)
"""A learning rate: a finite float > 0."""


def option_flag(name: str) -> str:
    """``"train_fraction"`` -> ``"--train-fraction"``."""
    return "--" + name.replace("_", "-")


def _click_option(f: dataclasses.Field[Any]) -> Callable[[_F], _F]:
    meta = f.metadata
    base = str(f.type).replace(" | None", "").strip()
    ptype: Any = _TYPES[base]
    if "choices" in meta:
        ptype = click.Choice(list(meta["choices"]))
    elif "min" in meta or "max" in meta:
        lo, hi = meta.get("min"), meta.get("max")
        ptype = click.IntRange(min=lo, max=hi) if ptype is int else number(
            lo, hi, min_open=meta.get("min_open", False), max_open=meta.get("max_open", False))
    elif ptype is float:
        ptype = number()
    return click.option(option_flag(f.name), f.name, type=ptype, default=f.default, help=meta["help"],
                        metavar=meta.get("metavar"), show_default=f.default is not None)


def _decorator(spec: type[Any]) -> Callable[[_F], _F]:
    opts = [_click_option(f) for f in dataclasses.fields(spec)]

    def deco(fn: _F) -> _F:
        for o in reversed(opts):
            fn = o(fn)
        return fn

    return deco


DATA_OPTION_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(DataSpec))
RUNTIME_OPTION_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RuntimeSpec))

data_options: Callable[[_F], _F] = _decorator(DataSpec)
"""``--data``, ``--format``, ``--source``, ``--phantom*``, ``--split``, ``--train-fraction``, ``--split-seed``,
``--resize``, ``--unlabelled``, ``--patch-size``, ``--stride``, ``--out-size``, ``--outside-max``, ``--inside-min``."""

runtime_options: Callable[[_F], _F] = _decorator(RuntimeSpec)
"""``--device`` (default auto) and ``--threads`` (>= 1)."""
