"""Click options generated from dataclass fields (cli/options.py spec_option): every supported type, a
clear error for the others, and the distiller's options taken from DistillConfig."""

from __future__ import annotations

import ast
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import click
import pytest
from click.testing import CliRunner

from sldpack.cli.options import spec_option
from sldpack.nn.config import DistillConfig


def _h(text: str, **extra: Any) -> dict[str, Any]:
    return {"help": text, **extra}


@dataclass(frozen=True)
class _Spec:
    mode: Literal["a", "b"] = field(default="a", metadata=_h("Mode."))
    on: bool = field(default=True, metadata=_h("Switch."))
    flag: bool = field(default=False, metadata=_h("Flag.", negatable=False))
    count: Optional[int] = field(default=None, metadata=_h("Count.", min=1))  # noqa: UP045 (Optional on purpose)
    rate: float | None = field(default=0.5, metadata=_h("Rate.", min=0.0, max=1.0))
    window: tuple[float, float] | None = field(default=None, metadata=_h("Window.", metavar="C W"))
    names: tuple[str, ...] = field(default=(), metadata=_h("Names.", flag="--name"))
    text: str = field(default="x", metadata=_h("Text.", choices=("x", "y")))


def _command() -> click.Command:
    def run(**kwargs: Any) -> None:
        click.echo(repr(sorted(kwargs.items())))

    for f in reversed(dataclasses.fields(_Spec)):
        run = spec_option(_Spec, f.name)(run)
    return click.command()(run)


def _parse(*args: str) -> dict[str, Any]:
    res = CliRunner().invoke(_command(), list(args))
    assert res.exit_code == 0, res.output
    return dict(ast.literal_eval(res.output))  # the repr of plain values printed above


def test_each_supported_type_becomes_the_matching_option() -> None:
    d = _parse()
    assert d == {"mode": "a", "on": True, "flag": False, "count": None, "rate": 0.5, "window": None,
                 "names": (), "text": "x"}
    d = _parse("--mode", "b", "--no-on", "--flag", "--count", "3", "--rate", "1", "--window", "40", "400",
               "--name", "p", "--name", "q", "--text", "y")
    assert d == {"mode": "b", "on": False, "flag": True, "count": 3, "rate": 1.0, "window": (40.0, 400.0),
                 "names": ("p", "q"), "text": "y"}
    for bad in (["--mode", "c"], ["--count", "0"], ["--rate", "1.5"], ["--rate", "nan"], ["--text", "z"],
                ["--no-flag"]):
        res = CliRunner().invoke(_command(), bad)
        assert res.exit_code == 2, (bad, res.output)


def test_an_unsupported_field_type_is_a_clear_error() -> None:
    @dataclass(frozen=True)
    class Odd:
        table: dict[str, int] = field(default_factory=dict, metadata=_h("A table."))
        pair: tuple[int, str] = field(default=(1, "a"), metadata=_h("A pair."))

    with pytest.raises(TypeError, match=r"Odd\.table: no command-line option for the type"):
        spec_option(Odd, "table")
    with pytest.raises(TypeError, match=r"Odd\.pair: .*mixed types"):
        spec_option(Odd, "pair")
    with pytest.raises(KeyError, match="no command-line field 'nothing'"):
        spec_option(Odd, "nothing")


def test_distill_options_are_the_distill_config_fields() -> None:
    # names, defaults and choices of `sldp distill` come from DistillConfig: none can drift from it
    from sldpack.cli.cmd_distill import distill_cmd

    opts = {p.name: p for p in distill_cmd.params if isinstance(p, click.Option)}
    d = DistillConfig()
    for f in dataclasses.fields(DistillConfig):
        if "help" not in f.metadata:
            continue
        o = opts[f.name]
        assert o.default == getattr(d, f.name), f.name
    assert list(opts["mode"].type.choices) == ["sldd", "dd"]  # type: ignore[attr-defined]
    assert opts["lr_labels"].opts == ["--label-lr"] and sorted(opts["images_per_class"].opts) == [
        "--images-per-class", "-M"]
    assert opts["shard_images"].is_flag and opts["batchnorm"].secondary_opts == ["--no-batchnorm"]
