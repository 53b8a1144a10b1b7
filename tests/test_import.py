"""The core must not import torch: apps embed the reader with numpy alone."""

from __future__ import annotations

import subprocess
import sys


def test_import_sldpack_does_not_import_torch() -> None:
    code = ("import sys, sldpack, sldpack.format.container, sldpack.format.conformance, sldpack.cli.main, "
            "sldpack.cli.cmd_container; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_api_has_all() -> None:
    import sldpack

    for name in sldpack.__all__:
        assert hasattr(sldpack, name), name
