"""Single image files (numpy + Pillow; ``pydicom`` for DICOM, imported when a DICOM file is read).

* PNG/JPEG/TIFF: :func:`read_image_file` (grayscale uint8).
* DICOM: :func:`read_dicom`, with the modality rescale (RescaleSlope/RescaleIntercept) and the VOI window
  (WindowCenter/WindowWidth, MONOCHROME1 inverted) applied to reach uint8 (:func:`apply_window`).

Every problem with a file raises :class:`~sldpack.errors.DataError` naming the file.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sldpack.errors import DataError, SldpNotice

__all__ = ["IMAGE_EXTENSIONS", "PathLike", "apply_window", "binary_mask", "read_dicom", "read_image_file",
           "resize_u8"]

PathLike = str | os.PathLike[str]
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm")
"""File extensions read as images (DICOM by ``.dcm``)."""


# --- image files ----------------------------------------------------------------------------------------


def _pil_to_gray(img: Any, path: Path) -> NDArray[np.uint8]:
    """Pillow image -> uint8 [H, W]; 16-bit/float images are scaled from their own min..max to 0..255."""
    from PIL import Image

    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        if hi <= lo:
            return np.zeros(arr.shape, dtype=np.uint8)
        return np.clip(np.rint((arr - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)
    if mode != "L":
        if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
            img = img.convert("RGBA").convert("RGB")  # drop alpha, do not premultiply
        img = img.convert("L")
    assert isinstance(img, Image.Image)
    return np.array(img, dtype=np.uint8)


def read_image_file(path: PathLike, *, window: tuple[float, float] | None = None) -> NDArray[np.uint8]:
    """Read one PNG/JPEG/TIFF (via Pillow) or DICOM (via pydicom) file as grayscale uint8 ``[H, W]``.

    Colour images are converted with ITU-R 601 luma; 16-bit and float images are scaled from their own
    min..max. Multi-page TIFFs: the first page.

    Args:
        path: the file.
        window: DICOM only: ``(center, width)`` overriding the file's window.

    Raises:
        DataError: unsupported extension, missing file, or a file that cannot be decoded.
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        raise DataError(f"{p}: not a supported image type (extensions: {', '.join(IMAGE_EXTENSIONS)})")
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    if ext == ".dcm":
        return read_dicom(p, window=window)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as img:
            img.load()
            return _pil_to_gray(img, p)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{p}: cannot decode image ({exc})") from exc


def resize_u8(arr: NDArray[np.uint8], size: tuple[int, int], *, nearest: bool) -> NDArray[np.uint8]:
    from PIL import Image

    if arr.shape == size:
        return arr
    # Pillow resizes with an antialiased kernel when shrinking; masks use nearest to stay binary
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(arr).resize((size[1], size[0]), resample=resample), dtype=np.uint8)


def binary_mask(raw: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """A decoded mask image as 0/1 uint8: organ where the pixel is 1 for masks whose maximum is 1, else > 127."""
    m = (raw == 1) if int(raw.max()) == 1 else (raw > 127)
    return m.astype(np.uint8)


# --- DICOM ----------------------------------------------------------------------------------------------


def _first_number(value: Any) -> float | None:
    """DICOM DS values may be multi-valued (several windows): the first one is the default."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        if len(value) == 0:
            return None
        value = value[0]
    return float(value)


def apply_window(
    values: NDArray[Any],
    center: float,
    width: float,
    *,
    function: str = "LINEAR",
    invert: bool = False,
) -> NDArray[np.uint8]:
    """Map modality values to uint8 with a DICOM VOI window (PS3.3 C.11.2.1.2).

    ``LINEAR`` (the default): below ``c - 0.5 - (w-1)/2`` -> 0, above ``c - 0.5 + (w-1)/2`` -> 255, else
    ``((x - (c - 0.5)) / (w - 1) + 0.5) * 255``; ``LINEAR_EXACT``: ``((x - c) / w + 0.5) * 255``;
    ``SIGMOID``: ``255 / (1 + exp(-4 (x - c) / w))``. ``invert`` (for MONOCHROME1) returns ``255 - y``.

    Args:
        values: rescaled (modality) pixel values.
        center: window center.
        width: window width (>= 1 for LINEAR, > 0 otherwise).
        function: the VOILUTFunction.
        invert: invert the output (MONOCHROME1: low values are displayed bright).

    Returns:
        uint8 array of the same shape.

    Raises:
        DataError: invalid width or unknown function.
    """
    x = np.asarray(values, dtype=np.float64)
    fn = function.strip().upper() or "LINEAR"
    if fn == "LINEAR":
        if width < 1:
            raise DataError(f"window width must be >= 1 for LINEAR windowing, got {width}")
        if width == 1:  # the standard's degenerate case: a threshold at c - 0.5
            y = np.where(x <= center - 0.5, 0.0, 1.0)
        else:
            y = np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)
    elif fn == "LINEAR_EXACT":
        if width <= 0:
            raise DataError(f"window width must be > 0, got {width}")
        y = np.clip((x - center) / width + 0.5, 0.0, 1.0)
    elif fn == "SIGMOID":
        if width <= 0:
            raise DataError(f"window width must be > 0, got {width}")
        y = 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    else:
        raise DataError(f"unsupported VOILUTFunction {function!r} (LINEAR, LINEAR_EXACT, SIGMOID)")
    out = np.rint(y * 255.0).astype(np.uint8)
    return (255 - out).astype(np.uint8) if invert else out


_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420", "YBR_PARTIAL_422")


def read_dicom(path: PathLike, *, window: tuple[float, float] | None = None) -> NDArray[np.uint8]:
    """Read a single-frame DICOM file as grayscale uint8 ``[H, W]``.

    Compressed transfer syntaxes decode through pydicom's plug-ins; the ``dicom`` extra brings the
    pylibjpeg family (JPEG baseline/extended/lossless, JPEG 2000, RLE) and pyjpegls (JPEG-LS). RGB/YBR
    secondary captures become grayscale (ITU-R 601 luma, the weights Pillow uses) with a
    :class:`~sldpack.errors.SldpNotice` warning that says so. Multi-frame files are refused with how to
    export single frames. Every problem, including malformed attributes, is a :class:`DataError`.

    Pipeline: stored values -> ``value * RescaleSlope + RescaleIntercept`` (defaults 1 and 0) -> VOI window
    (``window`` argument, else the file's first WindowCenter/WindowWidth with its VOILUTFunction, else the
    image's own min..max) -> uint8; MONOCHROME1 images are inverted so that bright always means dense.
    Modality/VOI LUT *sequences* are not applied (the linear attributes are).

    Args:
        path: the ``.dcm`` file.
        window: ``(center, width)`` to use instead of the file's window.

    Raises:
        DataError: pydicom missing (install ``sldpack[dicom]``), unreadable file, no pixel data, compressed
            pixel data without a decoder, multi-frame or colour images.
    """
    p = Path(path)
    try:
        import pydicom
    except ImportError as exc:
        raise DataError(
            f"{p}: reading DICOM needs the optional dependency pydicom: pip install 'sldpack[dicom]'"
        ) from exc
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about every odd value; errors below say what matters
            ds = pydicom.dcmread(str(p))
    except Exception as exc:  # pydicom raises many types (InvalidDicomError, EOFError, struct.error...)
        raise DataError(f"{p}: not a readable DICOM file ({type(exc).__name__}: {exc})") from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return _decode_dicom(ds, p, window)
    except DataError:
        raise
    except Exception as exc:  # a malformed attribute (IS '1A', a bad VR ...) of a file from outside
        raise DataError(f"{p}: malformed DICOM data ({type(exc).__name__}: {exc})") from exc


def _decode_dicom(ds: Any, p: Path, window: tuple[float, float] | None) -> NDArray[np.uint8]:
    if "PixelData" not in ds:
        raise DataError(f"{p}: DICOM file has no pixel data")
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    colour = photometric in _COLOUR
    if photometric not in ("MONOCHROME1", "MONOCHROME2") and not colour:
        raise DataError(f"{p}: PhotometricInterpretation {photometric} is not supported (grayscale, RGB or YBR)")
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames != 1:
        raise DataError(f"{p}: multi-frame DICOM ({frames} frames) is not supported: export each frame as its own "
                        "file (e.g. pydicom: ds.pixel_array[k], or dcmtk/gdcm frame splitting) and read those")
    try:
        stored = np.asarray(ds.pixel_array)
    except Exception as exc:  # missing decoder for the transfer syntax, truncated pixel data...
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise DataError(
            f"{p}: cannot decode pixel data (transfer syntax {syntax}): {type(exc).__name__}: {exc}"
        ) from exc
    if colour:
        if stored.ndim != 3 or stored.shape[-1] != 3:
            raise DataError(f"{p}: {photometric} pixel data has shape {stored.shape}, expected [H, W, 3]")
        # pydicom hands YBR data over as RGB (its default colour conversion); luma as Pillow's mode "L"
        rgb = stored.astype(np.float64)
        stored = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
        warnings.warn(SldpNotice(f"{p}: {photometric} colour image converted to grayscale (ITU-R 601 luma)"),
                      stacklevel=3)
        if window is None and int(getattr(ds, "BitsStored", 8) or 8) <= 8:
            return np.clip(np.rint(stored), 0, 255).astype(np.uint8)  # 8-bit colour: luma as is, no stretch
    if stored.ndim != 2:
        raise DataError(f"{p}: expected a 2-D image, pixel data has shape {stored.shape}")
    slope = _first_number(getattr(ds, "RescaleSlope", None))
    intercept = _first_number(getattr(ds, "RescaleIntercept", None))
    values = stored.astype(np.float64) * (1.0 if slope is None else slope) + (
        0.0 if intercept is None else intercept
    )
    function = str(getattr(ds, "VOILUTFunction", "LINEAR") or "LINEAR")
    if window is not None:
        center, width = float(window[0]), float(window[1])
    else:
        c = _first_number(getattr(ds, "WindowCenter", None))
        w = _first_number(getattr(ds, "WindowWidth", None))
        if c is not None and w is not None and w > 0:
            center, width = c, w
        else:
            # no window in the file: the full range of this image, exactly end to end
            lo, hi = float(values.min()), float(values.max())
            function = "LINEAR_EXACT"
            center, width = (lo + hi) / 2.0, max(hi - lo, 1e-12)
    try:
        return apply_window(values, center, width, function=function, invert=photometric == "MONOCHROME1")
    except DataError as exc:
        raise DataError(f"{p}: {exc}") from exc
