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
    assert blocks[1] == 'pip install -e ".[torch,dev,dicom,sign]" && python -m pytest -q'


def test_ci_runs_the_readme_test_command() -> None:
    test_cmd = _bash_blocks()[1]
    # CI spells pip/pytest through the venv's python and adds quiet/cache flags; the substance must match
    ci_line = next(line for line in CI.splitlines() if "pytest" in line and "pip install" in line)
    assert '-e ".[torch,dev,dicom,sign]"' in ci_line
    assert "python -m pytest -q" in ci_line
    assert test_cmd.split("&&")[0].strip().replace("pip install", "").strip() in ci_line
    assert "torch==2.13.0" in CI  # the pinned CPU build is installed before the open range


def test_readme_commands_exist_in_the_cli() -> None:
    from sldpack.cli.main import _COMMANDS

    for name in re.findall(r"^\| `sldp (\w+)", README, flags=re.M):
        assert name in _COMMANDS, name
