"""The data vocabulary of ``sldp``: click options built from ONE definition.

Every command that reads training or test data (``distill``, ``train``, ``eval``, ``audit``, ``demo``)
decorates itself with :func:`data_options` and :func:`runtime_options`. The options are generated from the
fields of :class:`~sldpack.pipelines.inputs.DataSpec` and :class:`~sldpack.pipelines.inputs.RuntimeSpec`
(name, default, help, choices), so names, defaults and help cannot drift between commands; the command
rebuilds the spec with ``DataSpec.from_kwargs(kwargs)``. The distiller's options of ``sldp distill`` and
``sldp study`` are generated the same way from the fields of :class:`~sldpack.nn.config.DistillConfig`
(:func:`spec_option`): an option's type comes from the field's type (``typing.get_type_hints``: int, float,
str, bool, a ``Literal`` as a choice, an optional, a tuple), its range, help and flag from its metadata.

Numeric options of every command use the same checked types (:data:`COUNT`, :data:`SEED`, :data:`RATE`,
:func:`number`): a value out of range, NaN or infinite is refused by click with exit code 2 and one line
naming the option, before any work starts.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

from sldpack.pipelines.inputs import DataSpec, RuntimeSpec

__all__ = [
    "COUNT",
    "DATA_OPTION_NAMES",
    "MAX_INT",
    "NONNEGATIVE",
    "RATE",
    "RUNTIME_OPTION_NAMES",
    "SEED",
    "BoundedInt",
    "FiniteFloat",
    "bounded_int",
    "data_options",
    "number",
    "option_flag",
    "runtime_options",
    "spec_option",
]

_F = TypeVar("_F", bound=Callable[..., Any])


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


MAX_INT = 2**31 - 1
"""The largest value of an integer option without a tighter bound (a C int: numpy and torch take it)."""


class BoundedInt(click.IntRange):
    """An integer option in ``[min, max]`` whose implicit bound ``MAX_INT`` is not spelled out in ``--help``
    and messages (``x>=1``, as before every integer option got a finite range)."""

    def _describe_range(self) -> str:
        if self.max == MAX_INT and self.min is not None and self.min != -MAX_INT:
            return f"x>={self.min}"
        if self.min == -MAX_INT and self.max == MAX_INT:
            return "a C int"
        return super()._describe_range()


def bounded_int(min: int | None = None, max: int | None = None) -> BoundedInt:
    """An integer option in ``[min, max]`` (a missing end: +-MAX_INT)."""
    return BoundedInt(min=-MAX_INT if min is None else min, max=MAX_INT if max is None else max)


COUNT = bounded_int(1)
"""A count (iterations, steps, batch size, images per class, threads ...): an integer >= 1."""
NONNEGATIVE = bounded_int(0)
"""An integer >= 0 (e.g. --checkpoint-every, 0 = only at the end)."""
SEED = click.IntRange(min=0, max=2**32 - 1)
"""A seed: an integer in [0, 2**32) (numpy refuses negative seeds)."""
RATE = number(0.0, 100.0, min_open=True)
"""A learning rate: a finite float in (0, 100] (far above any that trains; 1e300 overflows the first step)."""


def option_flag(name: str) -> str:
    """``"train_fraction"`` -> ``"--train-fraction"``."""
    return "--" + name.replace("_", "-")


_UNSET: Any = object()


def _unwrap_optional(hint: Any) -> Any:
    """``X | None`` (or ``Optional[X]``) -> ``X``; anything else unchanged."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _scalar_type(owner: str, hint: Any, meta: Mapping[str, Any]) -> Any:
    """The click type of one value of type ``hint`` (int, float, str or a Literal of strings)."""
    if "choices" in meta:
        return click.Choice([str(c) for c in meta["choices"]])
    if typing.get_origin(hint) is typing.Literal:
        return click.Choice([str(c) for c in typing.get_args(hint)])
    lo, hi = meta.get("min"), meta.get("max")
    if hint is int:  # every numeric option has a finite range
        return bounded_int(lo, hi)
    if hint is float:
        return number(lo, hi, min_open=meta.get("min_open", False), max_open=meta.get("max_open", False))
    if hint is str:
        return click.STRING
    raise TypeError(f"{owner}: no command-line option for the type {hint!r} (int, float, str, bool, a Literal "
                    "of strings, an optional or a tuple of those)")


def _click_option(f: dataclasses.Field[Any], hint: Any, owner: str, *, default: Any = _UNSET,
                  help: str | None = None, overrides: Mapping[str, Any] | None = None) -> Callable[[_F], _F]:
    """The click option of a dataclass field from its resolved type hint and its metadata.

    ``metadata``: ``help``; optional ``choices``, ``min``/``max``/``min_open``/``max_open`` (numeric
    ranges), ``metavar``, ``flag`` (the option's name when it is not ``--field-name``), ``short`` (e.g.
    ``-M``), ``negatable`` (a bool field: ``--x/--no-x``, the default, or a plain ``--x`` flag).
    """
    meta = {**f.metadata, **(overrides or {})}
    value = f.default if default is _UNSET else default
    text = meta["help"] if help is None else help
    flag = meta.get("flag", option_flag(f.name))
    decls = [flag, *([meta["short"]] if "short" in meta else []), f.name]
    base = _unwrap_optional(hint)
    if base is bool:
        if meta.get("negatable", True):
            decls[0] = f"{flag}/--no-{flag[2:]}"
            return click.option(*decls, default=value, help=text, show_default=value is not None)
        return click.option(*decls, is_flag=True, default=bool(value), help=text)
    if typing.get_origin(base) is tuple:
        args = typing.get_args(base)
        if len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]: the option may be repeated
            return click.option(*decls, type=_scalar_type(f"{owner}.{f.name}", args[0], meta), multiple=True,
                                default=value, help=text, metavar=meta.get("metavar"),
                                show_default=bool(value))
        if args and all(a == args[0] for a in args):  # tuple[X, X]: one option taking len(args) values
            return click.option(*decls, type=_scalar_type(f"{owner}.{f.name}", args[0], meta), nargs=len(args),
                                default=value, help=text, metavar=meta.get("metavar"),
                                show_default=value is not None)
        raise TypeError(f"{owner}.{f.name}: no command-line option for the type {hint!r} (a tuple of "
                        "mixed types)")
    ptype = _scalar_type(f"{owner}.{f.name}", base, meta)
    return click.option(*decls, type=ptype, default=value, help=text, metavar=meta.get("metavar"),
                        show_default=meta.get("show_default", value is not None))


def spec_option(spec: type[Any], name: str, *, default: Any = _UNSET, help: str | None = None,
                **metadata: Any) -> Callable[[_F], _F]:
    """The click option of field ``name`` of the dataclass ``spec``, generated from its type and metadata.

    ``default``/``help`` (and ``metadata`` entries such as ``choices`` or ``min``) override the field's,
    for a command that takes the setting from elsewhere unless given (``sldp study``: default ``None``,
    the grid decides).

    Raises:
        TypeError: the field's type has no option form (a programming error, raised at import).
        KeyError: ``spec`` has no field ``name`` with a ``help`` entry in its metadata.
    """
    hints = typing.get_type_hints(spec)
    f = next((f for f in dataclasses.fields(spec) if f.name == name and "help" in f.metadata), None)
    if f is None:
        raise KeyError(f"{spec.__name__} has no command-line field {name!r}")
    return _click_option(f, hints[name], spec.__name__, default=default, help=help, overrides=metadata)


def _decorator(spec: type[Any]) -> Callable[[_F], _F]:
    opts = [spec_option(spec, f.name) for f in dataclasses.fields(spec)]

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
