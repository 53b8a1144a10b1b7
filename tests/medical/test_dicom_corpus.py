"""Every DICOM test file that ships inside pydicom (many vendors, transfer syntaxes, CT/MR/CR/secondary
captures) loads or raises DataError: never another exception (a traceback in the CLI)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from sldpack.errors import DataError, SldpNotice
from sldpack.medical.images import read_dicom

pydicom = pytest.importorskip("pydicom")


def _corpus() -> list[str]:
    from pydicom.data import get_testdata_files

    files = sorted(get_testdata_files())
    if not files:
        pytest.skip("pydicom ships no test files here")
    return files


def _find(name: str) -> str | None:
    """A shipped file by name (never pydicom's get_testdata_file, which may try to download)."""
    from pydicom.data import get_testdata_files

    hits = [f for f in get_testdata_files() if Path(f).name == name]
    return hits[0] if hits else None


def test_every_shipped_file_loads_or_raises_data_error() -> None:
    loaded, refused = 0, 0
    for f in _corpus():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SldpNotice)
                img = read_dicom(f)
        except DataError as exc:
            message = str(exc)
            refused += 1
        else:
            assert img.dtype == np.uint8 and img.ndim == 2 and min(img.shape) >= 1, f
            loaded += 1
            continue
        assert Path(f).name in message  # the message names the file
    # measured with pydicom 3.0.2 + the dicom extra's decoders: 81 load, 112 refused cleanly (non-image
    # files, multi-frame, truncated or deliberately broken ones); without decoders fewer load
    assert loaded >= 18
    assert refused >= 1


def test_bad_vr_is_a_data_error() -> None:
    path = _find("badVR.dcm")
    if path is None:
        pytest.skip("badVR.dcm not shipped")
    with pytest.raises(DataError, match=r"badVR\.dcm"):
        read_dicom(str(path))


def test_compressed_and_colour_files_decode() -> None:
    pytest.importorskip("pylibjpeg")
    pytest.importorskip("libjpeg")
    jpeg = _find("SC_rgb_jpeg_dcmtk.dcm")  # JPEG baseline, YBR_FULL_422 secondary capture
    if jpeg is None:
        pytest.skip("SC_rgb_jpeg_dcmtk.dcm not shipped")
    with pytest.warns(SldpNotice, match="converted to grayscale"):
        img = read_dicom(str(jpeg))
    assert img.dtype == np.uint8 and img.ndim == 2
    # the colour bars of the reference RGB file and its JPEG version agree up to JPEG loss
    rgb = _find("SC_rgb.dcm")
    if rgb is not None:
        with pytest.warns(SldpNotice):
            ref = read_dicom(str(rgb))
        assert ref.shape == img.shape
        assert float(np.abs(ref.astype(np.int16) - img.astype(np.int16)).mean()) < 8.0
    multi = _find("SC_rgb_2frame.dcm")
    if multi is not None:
        with pytest.raises(DataError, match=r"multi-frame.*export each frame"):
            read_dicom(str(multi))
