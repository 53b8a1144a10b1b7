"""The data vocabulary of ``sldp``: click options built from ONE definition.

Every command that reads training or test data (``distill``, ``train``, ``eval``, ``audit``, ``demo``)
decorates itself with :func:`data_options` and :func:`runtime_options`. The options are generated from the
fields of :class:`~sldpack.pipelines.inputs.DataSpec` and :class:`~sldpack.pipelines.inputs.RuntimeSpec`
(name, default, help, choices), so names, defaults and help cannot drift between commands; the command
rebuilds the spec with ``DataSpec.from_kwargs(kwargs)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import click

from sldpack.pipelines.inputs import DataSpec, RuntimeSpec

__all__ = ["DATA_OPTION_NAMES", "RUNTIME_OPTION_NAMES", "data_options", "option_flag", "runtime_options"]

_F = TypeVar("_F", bound=Callable[..., Any])

_TYPES: dict[str, type] = {"int": int, "float": float, "str": str}


def option_flag(name: str) -> str:
    """``"train_fraction"`` -> ``"--train-fraction"``."""
    return "--" + name.replace("_", "-")


def _click_option(f: dataclasses.Field[Any]) -> Callable[[_F], _F]:
    meta = f.metadata
    base = str(f.type).replace(" | None", "").strip()
    ptype: Any = _TYPES[base]
    if "choices" in meta:
        ptype = click.Choice(list(meta["choices"]))
    elif "min" in meta:
        ptype = click.IntRange(min=meta["min"]) if ptype is int else click.FloatRange(min=meta["min"])
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
``--resize``, ``--patch-size``, ``--stride``, ``--out-size``, ``--outside-max``, ``--inside-min``."""

runtime_options: Callable[[_F], _F] = _decorator(RuntimeSpec)
"""``--device`` (default auto) and ``--threads`` (>= 1)."""
