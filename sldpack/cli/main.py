"""Entry point of the ``sldp`` command.

Sub-commands are imported lazily (``_COMMANDS``), so ``sldp inspect`` never imports torch and starts
fast; errors derived from :class:`~sldpack.errors.SldpError` are turned into a one-line message and the
exit code documented in :mod:`sldpack.cli.exit_codes`, in one place.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
import warnings
from typing import Any

import click

from sldpack import __version__
from sldpack.cli.exit_codes import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, describe_os_error, exit_code_for
from sldpack.errors import SldpError, SldpNotice, UsageError

__all__ = ["TRACEBACK_ENV", "cli", "main"]

TRACEBACK_ENV = "SLDP_TRACEBACK"
"""Set to 1 to get the full traceback of an internal error (exit code 3) instead of one line."""

# command name -> (module, attribute, one-line help shown by `sldp --help`)
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "inspect": ("sldpack.cli.cmd_container", "inspect_cmd", "Show a file's header, manifest and tensor table."),
    "verify": ("sldpack.cli.cmd_container", "verify_cmd", "Check structure and every digest (and replay)."),
    "conformance": ("sldpack.cli.cmd_container", "conformance_cmd", "Run the reader over a conformance corpus."),
    "distill": ("sldpack.cli.cmd_distill", "distill_cmd", "Learn a distilled set and write a .sldp."),
    "pack": ("sldpack.cli.cmd_distill", "pack_cmd", "Build a .sldp from a run directory or tensors+manifest."),
    "replay": ("sldpack.cli.cmd_distill", "replay_cmd", "Re-derive theta_opt and write a checkpoint."),
    "eval": ("sldpack.cli.cmd_medical", "eval_cmd", "Replay a file and evaluate it on data (patch + image level)."),
    "train": ("sldpack.cli.cmd_medical", "train_cmd", "Train the same architecture normally (baselines)."),
    "demo": ("sldpack.cli.cmd_medical", "demo_cmd", "Run the whole pipeline on built-in phantom data."),
    "report": ("sldpack.cli.cmd_report", "report_cmd", "Compression report: bytes per role vs full checkpoint."),
    "audit": ("sldpack.cli.cmd_report", "audit_cmd", "Privacy audit: distilled images vs nearest real images."),
    "view": ("sldpack.cli.cmd_view", "view_cmd", "Show a file in the browser viewer (served on 127.0.0.1)."),
    "keygen": ("sldpack.cli.cmd_sign", "keygen_cmd", "Create an ECDSA P-256 key pair for signing files."),
    "sign": ("sldpack.cli.cmd_sign", "sign_cmd", "Sign a file's exact bytes (detached signature)."),
    "study": ("sldpack.cli.cmd_study", "study_cmd", "Seed-averaged tables: SLDD vs DD vs normal training, paired CIs."),
    "accept": ("sldpack.cli.cmd_accept", "accept_cmd", "Evaluate a received file on local data; sign the record."),
    "card": ("sldpack.cli.cmd_card", "card_cmd", "Show the model card (Markdown) or edit it: card set FILE K=V."),
    "export": ("sldpack.cli.cmd_export", "export_cmd", "Write the network as ONNX/TorchScript/safetensors/MONAI."),
    "data": ("sldpack.cli.cmd_data", "data_group", "Convert a data set to an on-disk store (data bigger than memory)."),
}


# library parameter names whose click parameter is named differently (distill(run_dir=...) is
# `sldp distill --out`, pack(tensors=...) is `sldp pack --tensors` stored as tensors_path)
_OPTION_FOR_PARAMETER: dict[str, str] = {"run_dir": "out", "tensors": "tensors_path"}


def _flag_spelling(argv: list[str] | None) -> dict[str, str]:
    """Parameter name -> its long option (``inner_lr`` -> ``--inner-lr``) for the sub-command in ``argv``."""
    words = list(sys.argv[1:] if argv is None else argv)
    cmd: click.Command | None = cli
    ctx = click.Context(cli)
    while isinstance(cmd, click.Group):  # `sldp data convert ...`: the innermost command names the options
        name = next((w for w in words if not w.startswith("-")), None)
        if name is None:
            return {}
        words = words[words.index(name) + 1:]
        cmd = cmd.get_command(ctx, name)
    if cmd is None:
        return {}
    out: dict[str, str] = {}
    for p in cmd.params:
        longs = [o for o in p.opts if o.startswith("--")]
        if isinstance(p, click.Option) and p.name and longs:
            out[p.name] = longs[0]
    return out


def _message(exc: SldpError, argv: list[str] | None) -> str:
    """The library names settings by field; the command line shows each as the option that sets it."""
    if not isinstance(exc, UsageError) or not exc.fields:
        return str(exc)
    try:
        flags = _flag_spelling(argv)
    except Exception:  # never lose the error message over its spelling
        flags = {}
    return exc.render(lambda name: flags.get(_OPTION_FOR_PARAMETER.get(name, name), name))


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = _COMMANDS.get(cmd_name)
        if spec is None:
            return None
        module = importlib.import_module(spec[0])
        cmd = getattr(module, spec[1])
        assert isinstance(cmd, click.Command)
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # help text from the table, so `sldp --help` imports nothing heavy
        rows = [(name, _COMMANDS[name][2]) for name in sorted(_COMMANDS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sldp")
def cli() -> None:
    """sldpack: soft-label distilled data sets in small, verifiable .sldp files.

    Exit codes: 0 ok, 1 verification failed, 2 bad input or usage (also a file that cannot be read or
    written: disk full, permissions), 3 internal error (SLDP_TRACEBACK=1 prints the traceback), 130
    interrupted.
    """


def _show_notice(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: Any = None, line: str | None = None) -> None:
    if issubclass(category, SldpNotice):
        click.echo(f"sldp: note: {message}", err=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def main(argv: list[str] | None = None) -> Any:
    """Run the CLI; library errors become one clear line on stderr and a documented exit code."""
    warnings.showwarning = _show_notice
    try:
        return cli.main(args=argv, prog_name="sldp", standalone_mode=False)
    except click.exceptions.Abort:  # click's form of Ctrl-C
        click.echo("sldp: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.UsageError as exc:
        # one line naming the option and the problem (click's own form takes three)
        where = exc.ctx.command_path if exc.ctx is not None else "sldp"
        click.echo(f"{where}: error: {exc.format_message()} (see '{where} --help')", err=True)
        sys.exit(exc.exit_code if exc.exit_code else EXIT_BAD_INPUT)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code if exc.exit_code else EXIT_BAD_INPUT)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except SldpError as exc:
        click.echo(f"sldp: error: {_message(exc, argv)}", err=True)
        sys.exit(exit_code_for(exc))
    except KeyboardInterrupt:
        click.echo("sldp: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except OSError as exc:
        # disk full, file-size limit, permissions, read-only folder: the environment, not a bug (exit 2);
        # atomic writes have kept the old target
        click.echo(f"sldp: error: {describe_os_error(exc)}", err=True)
        sys.exit(exit_code_for(exc))
    except Exception as exc:
        # a bug in sldpack, not bad input: exit 3 (never 1, which means "verification failed")
        if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            traceback.print_exc()
        click.echo(f"sldp: internal error: {type(exc).__name__}: {exc} (a bug in sldpack; run again with "
                   f"{TRACEBACK_ENV}=1 for the traceback and report it)", err=True)
        sys.exit(EXIT_INTERNAL)


if __name__ == "__main__":  # pragma: no cover
    main()
