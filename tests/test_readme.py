"""The README's two set-up commands are the ones CI and the CLI really use."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CI = (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def _bash_blocks() -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", README, flags=re.S)]


def test_readme_has_the_two_setup_commands() -> None:
    blocks = _bash_blocks()
    assert blocks[0] == 'pip install -e ".[torch]" && sldp demo'
    assert blocks[1] == 'pip install -e ".[torch,dev,dicom,sign,export,monai]" && python -m pytest -q'


def test_ci_runs_the_readme_test_command() -> None:
    test_cmd = _bash_blocks()[1]
    # CI spells pip/pytest through the venv's python and adds quiet/cache flags; the substance must match
    ci_line = next(line for line in CI.splitlines() if "pytest" in line and "pip install" in line)
    assert '-e ".[torch,dev,dicom,sign,export,monai]"' in ci_line
    assert "python -m pytest -q" in ci_line
    assert test_cmd.split("&&")[0].strip().replace("pip install", "").strip() in ci_line
    assert "torch==2.13.0" in CI  # the pinned CPU build is installed before the open range


def test_readme_commands_exist_in_the_cli() -> None:
    from sldpack.cli.main import _COMMANDS

    for name in re.findall(r"^\| `sldp (\w+)", README, flags=re.M):
        assert name in _COMMANDS, name


def _readme_exit_table() -> dict[int, str]:
    rows = re.findall(r"^\| (\d+) \| (.+?) \|$", README, flags=re.M)
    return {int(code): text for code, text in rows}


def test_exit_codes_agree_in_readme_help_and_table() -> None:
    from click.testing import CliRunner

    from sldpack.cli import exit_codes
    from sldpack.cli.main import cli

    codes = {v for k, v in vars(exit_codes).items() if k.startswith("EXIT_") and isinstance(v, int)}
    assert codes == set(exit_codes.EXIT_CODES)
    table = _readme_exit_table()
    assert set(table) == codes  # README's exit-code table lists exactly the codes the CLI uses
    doc = exit_codes.__doc__ or ""
    assert {int(c) for c in re.findall(r"^\| (\d+) \|", doc, flags=re.M)} == codes  # the module's own table
    help_text = CliRunner().invoke(cli, ["--help"]).output
    for code in codes:
        assert re.search(rf"\b{code} ", help_text), f"exit code {code} missing from `sldp --help`"
    assert "SLDP_TRACEBACK=1" in help_text and "SLDP_TRACEBACK=1" in table[exit_codes.EXIT_INTERNAL]
    # the audit documents its verdict codes with the same numbers
    audit_help = CliRunner().invoke(cli, ["audit", "--help"]).output
    assert "0 PASS, 1 FLAG" in audit_help and "2 bad input" in audit_help


def test_cpu_advice_comes_before_the_first_install_command() -> None:
    advice = README.index("CPU-only machine? Read this first")
    first_install = README.index('pip install -e ".[torch]"')
    assert advice < README.index("```bash") and advice < README.index(_bash_blocks()[0])
    assert first_install > 0


def test_demo_output_folder_is_ignored_by_git() -> None:
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    assert "sldp-demo/" in ignored


def test_data_help_states_the_image_dtype_rule() -> None:
    from click.testing import CliRunner

    from sldpack.cli.main import cli
    from sldpack.medical.loaders import IMAGE_DTYPE_RULE

    assert IMAGE_DTYPE_RULE.split(" (")[0] in README  # "uint8"
    assert "uint8 (0..255) or float" in README
    for cmd in ("distill", "train", "eval", "audit", "demo"):
        text = " ".join(CliRunner().invoke(cli, [cmd, "--help"]).output.split())
        assert "Pixels: uint8 (0..255) or float" in text, cmd
