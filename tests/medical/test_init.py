"""The medical package stays torch-free and imports pydicom only when a DICOM file is read."""

from __future__ import annotations

import subprocess
import sys

import sldpack.medical as med


def test_public_api_is_exported() -> None:
    for name in med.__all__:
        assert hasattr(med, name), name
    assert med.PATCH_CLASS_NAMES == ("I", "N", "P")


def test_import_does_not_pull_torch_or_pydicom() -> None:
    code = (
        "import sys, sldpack.medical as m; "
        "m.make_phantom(2, size=32); "
        "assert 'torch' not in sys.modules, 'torch'; assert 'pydicom' not in sys.modules, 'pydicom'"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
