"""Narrowing an untrusted, decoded msgpack value into typed fields, with the byte offset of every error.

The manifest's sections (``manifest.py``) and the 1.1 sections (``decision.py``) read their keys through
these helpers: each names the dotted field and points the ``FormatError`` (``E_SCHEMA``) at the value's
first byte, or at the enclosing map for a missing key (spec section 11, "Offsets").
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Mapping
from typing import Any, TypeVar

from sldpack.errors import FormatError
from sldpack.format.constants import UTC_TIME_PATTERN

__all__ = ["HEX64", "Ctx", "choice", "float_field", "floats", "get", "hex_field", "int_field", "ints", "map_field",
           "type_name", "utc_time"]

HEX64 = re.compile(r"^[0-9a-f]{64}$")
_T = TypeVar("_T")


class Ctx:
    """Where a value sits: dotted field path plus a path->byte-offset map from the decoder."""

    def __init__(self, offsets: Mapping[str, int], base: int, key_offsets: Mapping[str, int] | None = None) -> None:
        self.offsets = offsets
        self.base = base
        self.key_offsets = key_offsets or {}

    def fail(self, path: str, message: str, expected: Any = None, got: Any = None, *,
             code: str = "E_SCHEMA") -> FormatError:
        """The error (``code``, default ``E_SCHEMA``) about the value at ``path`` (or its enclosing map, when
        it is missing)."""
        off = self.offsets.get(path)
        if off is None:
            # a missing field: point at the enclosing map
            parent = path.rsplit(".", 1)[0] if "." in path else ""
            off = self.offsets.get(parent, 0)
        return FormatError(
            code, message, offset=self.base + off, expected=expected, got=got, field=path or "<root>"
        )


_MSGPACK_TYPE_NAMES: dict[type, str] = {dict: "map", list: "array", str: "str", int: "int", float: "float",
                                        bool: "bool", bytes: "bin", type(None): "nil"}


def get(ctx: Ctx, obj: Mapping[str, Any], path: str, key: str, typ: type[_T] | tuple[type, ...],
        *, required: bool = True, default: Any = None) -> Any:
    """``obj[key]`` checked to be of type ``typ`` (a bool is never an int or float); ``default`` when absent
    and not ``required``."""
    full = f"{path}.{key}" if path else key
    if key not in obj:
        if required:
            raise ctx.fail(full, "required field is missing", expected=type_name(typ), got="nothing")
        return default
    v = obj[key]
    ok = isinstance(v, typ) and not (isinstance(v, bool) and typ in (int, float, (int, float)))
    if not ok:
        raise ctx.fail(full, "field has the wrong type", expected=type_name(typ), got=type_name(type(v)))
    return v


def type_name(typ: type | tuple[type, ...]) -> str:
    """The msgpack name of a type, or ``"int or float"`` for a tuple of them (for error messages)."""
    if isinstance(typ, tuple):
        return " or ".join(_MSGPACK_TYPE_NAMES.get(t, t.__name__) for t in typ)
    return _MSGPACK_TYPE_NAMES.get(typ, typ.__name__)


def int_field(ctx: Ctx, obj: Mapping[str, Any], path: str, key: str, *, lo: int = 0, hi: int = 2**64 - 1,
              required: bool = True, default: int | None = None) -> Any:
    """An integer in ``lo..hi``."""
    v = get(ctx, obj, path, key, int, required=required, default=default)
    if v is not None and not lo <= v <= hi:
        raise ctx.fail(f"{path}.{key}" if path else key, "integer out of range",
                       expected=f"{lo}..{hi}", got=v)
    return v


def float_field(ctx: Ctx, obj: Mapping[str, Any], path: str, key: str) -> float:
    """A finite number (an integer is accepted where a float is expected, spec section 5)."""
    v = get(ctx, obj, path, key, (int, float))
    if not math.isfinite(v):
        raise ctx.fail(f"{path}.{key}", "value must be finite", expected="finite number", got=v)
    return float(v)


def floats(ctx: Ctx, obj: Mapping[str, Any], path: str, key: str) -> tuple[float, ...]:
    """An array of finite numbers."""
    arr = get(ctx, obj, path, key, list)
    out = []
    for i, v in enumerate(arr):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ctx.fail(f"{path}.{key}.{i}", "array element must be a finite number",
                           expected="finite number", got=v)
        out.append(float(v))
    return tuple(out)


def ints(ctx: Ctx, arr: Any, path: str, *, lo: int = 0, hi: int = 2**63 - 1) -> tuple[int, ...]:
    """``arr`` (the value at ``path``) as an array of integers in ``lo..hi``."""
    if not isinstance(arr, list):
        raise ctx.fail(path, "field has the wrong type", expected="array", got=type_name(type(arr)))
    out = []
    for i, v in enumerate(arr):
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ctx.fail(f"{path}.{i}", "array element must be an integer in range",
                           expected=f"int {lo}..{hi}", got=v)
        out.append(v)
    return tuple(out)


def hex_field(ctx: Ctx, obj: Mapping[str, Any], path: str, key: str) -> str:
    """A SHA-256 digest: 64 lowercase hex digits."""
    v = get(ctx, obj, path, key, str)
    if not HEX64.fullmatch(v):
        raise ctx.fail(f"{path}.{key}", "not a lowercase hex SHA-256 digest",
                       expected="64 lowercase hex digits", got=v[:80])
    return str(v)


def utc_time(ctx: Ctx, path: str, v: str) -> str:
    """Check a provenance time (spec 5.3): ``YYYY-MM-DDThh:mm:ss[.fraction]Z``, a real date and time."""
    m = re.fullmatch(UTC_TIME_PATTERN, v)
    ok = m is not None
    if m is not None:
        year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
        try:  # the calendar: month 1..12, a day that month has, 00:00:00..23:59:59 (no leap second)
            datetime.datetime(year, month, day, hour, minute, second)
        except ValueError:
            ok = False
    if not ok:
        raise ctx.fail(path, "not a UTC time like 2026-11-27T01:20:00Z", expected="YYYY-MM-DDThh:mm:ss[.f]Z",
                       got=v[:80])
    return v


def choice(ctx: Ctx, obj: Mapping[str, Any], path: str, key: str, choices: tuple[str, ...],
           *, required: bool = True, default: str | None = None) -> Any:
    """A string from ``choices`` (an unknown value of a known enumeration is an error, spec section 14)."""
    v = get(ctx, obj, path, key, str, required=required, default=default)
    if v is not None and v not in choices:
        raise ctx.fail(f"{path}.{key}", "unknown value", expected=" | ".join(choices), got=v)
    return v


def map_field(ctx: Ctx, obj: Mapping[str, Any], path: str, key: str, *, required: bool = False) -> dict[str, Any]:
    """A map (empty when absent and not ``required``)."""
    v = get(ctx, obj, path, key, dict, required=required, default={})
    return dict(v)
