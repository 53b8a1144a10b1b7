"""Load medical image data sets into one common form, :class:`ImageSet`, with clear errors.

Supported sources:

* MedMNIST-style ``.npz`` (``train_images``/``train_labels``, ``val_*``, ``test_*``; labels ``(N,)`` or
  ``(N, 1)``): :func:`load_medmnist_npz`, one :class:`ImageSet` per split (no masks).
* ``.npz`` with ``images``, ``masks``, ``labels`` and optional ``names`` (the layout of
  ``montgomery_512.npz``): :func:`load_npz`.
* a folder of PNG/JPEG/TIFF (and DICOM) images with a ``masks/`` folder of the same file stems and a
  labels CSV with the columns ``name,label``: :func:`load_folder`.
* single DICOM files (optional dependency ``pydicom``, ``pip install 'sldpack[dicom]'``): :func:`read_dicom`,
  with the modality rescale (RescaleSlope/RescaleIntercept) and the VOI window (WindowCenter/WindowWidth,
  MONOCHROME1 inverted) applied to reach uint8.

:func:`load_images` dispatches on the path. Every problem with a file raises
:class:`~sldpack.errors.DataError` naming the file and what is wrong with it. ``.npz`` files are read with
``allow_pickle=False``: an object array (which could run code when unpickled) is rejected.

:func:`split_indices` makes deterministic, stratified, group-aware splits (split by patient).
"""

from __future__ import annotations

import math
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from sldpack.budget import check_allocation
from sldpack.errors import DataError, UsageError
from sldpack.medical.folders import FolderReader, index_folder, list_folder, unlisted
from sldpack.medical.images import (
    IMAGE_EXTENSIONS,
    PathLike,
    apply_window,
    read_dicom,
    read_image_file,
)
from sldpack.medical.imageset import ImageSet

if TYPE_CHECKING:
    from sldpack.medical.store import StoreInfo

__all__ = [
    "IMAGE_DTYPE_RULE",
    "IMAGE_EXTENSIONS",
    "MEDMNIST_SPLITS",
    "ImageSet",
    "NpzSplit",
    "apply_window",
    "check_pixels",
    "convert_to_store",
    "count_unlabelled",
    "load_folder",
    "load_images",
    "load_medmnist_npz",
    "load_npz",
    "missing_path",
    "open_npz",
    "read_dicom",
    "read_image_file",
    "read_npz_split",
    "split_indices",
]

MEDMNIST_SPLITS = ("train", "val", "test")



# --- the one image dtype rule ------------------------------------------------------------------------------

IMAGE_DTYPE_RULE = "uint8 (0..255) or float (float16/32/64) in [0, 1]"
"""What every data-reading command accepts as pixel values (README, ``--data`` help)."""


def _first_index(mask: NDArray[np.bool_]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def check_pixels(images: NDArray[Any], what: str) -> float:
    """The one image dtype rule: uint8 (0..255) or float in [0, 1], finite; return the divisor to [0, 1].

    Every data-reading command applies it (distill, train, eval, audit, demo), so an array is accepted
    everywhere or nowhere.

    Raises:
        DataError: another dtype (int16, uint16, bool ...), a NaN/Inf pixel (count and first index), or
            float pixels outside [0, 1] (0..255 floats are named as such: divide by 255 or store uint8).
    """
    if images.dtype == np.uint8:
        return 255.0
    if images.dtype.kind != "f":
        raise DataError(f"{what}: images have dtype {images.dtype}; sldpack reads {IMAGE_DTYPE_RULE} "
                        "(window/scale them first)")
    finite = np.isfinite(images)
    if not bool(finite.all()):
        bad = ~finite
        raise DataError(f"{what}: {int(bad.sum())} pixel(s) are NaN or infinite, the first at index "
                        f"{_first_index(bad)}")
    lo = float(images.min()) if images.size else 0.0
    hi = float(images.max()) if images.size else 0.0
    if lo < 0.0 or hi > 1.0:
        hint = (" - they look like 0..255 values stored as float: divide by 255 or store uint8"
                if lo >= 0.0 and hi <= 255.0 else "")
        raise DataError(f"{what}: float pixels range {lo:g}..{hi:g}; sldpack reads {IMAGE_DTYPE_RULE}{hint}")
    return 1.0


# --- npz ------------------------------------------------------------------------------------------------

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def missing_path(path: PathLike, wanted: str = "file or folder") -> DataError:
    """The error for a data path that cannot be used as a ``wanted``, saying why: absent, a symbolic link
    that cannot be followed (a loop, a missing target), or something that is not a regular file or folder
    (a FIFO, a device, a socket: reading one could block forever)."""
    import errno
    import os
    import stat

    p = Path(path)
    try:
        st = os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return DataError(f"{p}: a symbolic link loop (it never reaches a {wanted})")
        if p.is_symlink():
            return DataError(f"{p}: a symbolic link to {os.readlink(p)!r}, which does not exist")
        if exc.errno == errno.ENOENT:
            return DataError(f"{p}: no such {wanted}")
        return DataError(f"{p}: cannot be read ({exc.strerror or exc})")
    kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else
            "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else
            "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file")
    return DataError(f"{p}: {kind}, not a {wanted}")


def open_npz(path: PathLike) -> Any:
    """``numpy.load`` of an ``.npz`` without pickle, with one clear :class:`DataError` for a missing file,
    a file that is not an ``.npz`` (a text file, an ``.npy``) or a damaged archive."""
    path = Path(path)
    if not path.is_file():
        raise missing_path(path, "file")
    try:
        with path.open("rb") as fh:
            head = fh.read(6)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if head.startswith(b"\x93NUMPY"):
        raise DataError(f"{path}: an .npy array, not an .npz archive (save with numpy.savez)")
    if not head.startswith(_ZIP_MAGIC):
        raise DataError(f"{path}: not an .npz file (an .npz is a zip archive written by numpy.savez; this "
                        f"file starts with {head[:4]!r})")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz archive ({exc})") from exc


def _check_npz_header(path: Path, npz: Any, key: str) -> None:
    """Bound the array's claimed size before numpy allocates it: the shape in its ``.npy`` header must fit
    the bytes the archive holds for it, and the memory budget (:mod:`sldpack.budget`)."""
    zf = getattr(npz, "zip", None)
    if zf is None:
        return
    name = key + ".npy" if key + ".npy" in zf.namelist() else key
    try:
        info = zf.getinfo(name)
        with zf.open(name) as fh:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _fortran, dtype = read(fh)
    except (KeyError, OSError, zipfile.BadZipFile, EOFError, zlib.error):
        return  # numpy's own read names these
    except ValueError as exc:
        raise DataError(f"{path}: array {key!r} has an invalid .npy header ({exc})") from exc
    if dtype.hasobject:
        return  # refused below: it would need pickle
    need = math.prod(int(d) for d in shape) * dtype.itemsize  # Python ints: no overflow
    if need > info.file_size:
        raise DataError(f"{path}: array {key!r} claims shape {tuple(shape)} {dtype} ({need} bytes) but the "
                        f"archive holds {info.file_size} bytes for it: corrupt or forged header")
    check_allocation(need, f"{path}: array {key!r} (shape {tuple(shape)}, {dtype})", error=DataError)


def _npz_array(path: Path, npz: Any, key: str) -> NDArray[Any]:
    if key not in npz.files:
        raise DataError(f"{path}: missing array {key!r} (it holds {sorted(npz.files)})")
    _check_npz_header(path, npz, key)
    try:
        arr: NDArray[Any] = npz[key]
    except ValueError as exc:  # object arrays need pickle, which is refused
        raise DataError(f"{path}: array {key!r} cannot be read without pickle ({exc})") from exc
    except (OSError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: array {key!r} is corrupt or truncated ({exc})") from exc
    return arr


def _as_images(path: Path, key: str, arr: NDArray[Any]) -> NDArray[np.uint8]:
    if check_pixels(arr, f"{path}: {key!r}") == 1.0:
        # float in [0, 1]: stored as uint8 like every image of an ImageSet (the same rounding as a PNG)
        arr = np.rint(np.asarray(arr, dtype=np.float64) * 255.0).astype(np.uint8)
    if arr.ndim == 4 and arr.shape[-1] == 3 and arr.dtype == np.uint8:
        # RGB MedMNIST sets: ITU-R 601 luma, the same weights Pillow uses for mode "L"
        rgb = arr.astype(np.uint32)
        arr = ((rgb[..., 0] * 299 + rgb[..., 1] * 587 + rgb[..., 2] * 114 + 500) // 1000).astype(np.uint8)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise DataError(f"{path}: {key!r} must be [N, H, W] grayscale (or [N, H, W, 3] RGB), got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise DataError(f"{path}: {key!r} must be uint8 (got {arr.dtype}); window/scale it to 0..255 first")
    if arr.shape[0] == 0:
        raise DataError(f"{path}: {key!r} holds no images")
    return arr


def _as_labels(path: Path, key: str, arr: NDArray[Any], n: int) -> NDArray[np.int64]:
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 2:
        raise DataError(f"{path}: {key!r} has shape {arr.shape}: multi-label data sets are not supported")
    if arr.ndim != 1:
        raise DataError(f"{path}: {key!r} must be (N,) or (N, 1), got shape {arr.shape}")
    if arr.dtype.kind not in "iub":
        raise DataError(f"{path}: {key!r} must hold integers, got dtype {arr.dtype}")
    if arr.shape[0] != n:
        raise DataError(f"{path}: {key!r} has {arr.shape[0]} labels for {n} images")
    out = arr.astype(np.int64)
    if out.size and out.min() < 0:
        raise DataError(f"{path}: {key!r} holds negative labels")
    return out


def _as_masks(path: Path, key: str, arr: NDArray[Any], shape: tuple[int, ...]) -> NDArray[np.uint8]:
    if arr.shape != shape:
        raise DataError(f"{path}: {key!r} has shape {arr.shape}, images have {shape}")
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if arr.dtype.kind not in "iu":
        raise DataError(f"{path}: {key!r} must be integer or bool, got dtype {arr.dtype}")
    mx = int(arr.max()) if arr.size else 0
    mn = int(arr.min()) if arr.size else 0
    if mn < 0 or mx > 255:
        raise DataError(f"{path}: {key!r} values must be {{0, 1}} or {{0, 255}}, found range {mn}..{mx}")
    values = np.unique(arr)
    if np.setdiff1d(values, [0, 1]).size == 0:
        return arr.astype(np.uint8)
    if np.setdiff1d(values, [0, 255]).size == 0:
        return (arr > 0).astype(np.uint8)
    raise DataError(f"{path}: {key!r} values must be {{0, 1}} or {{0, 255}}, found {values[:6].tolist()}...")


@dataclass(frozen=True)
class NpzSplit:
    """The raw arrays of one split of an ``.npz``, as stored (channels kept, any pixel dtype).

    Attributes:
        images: ``[N, H, W]``, ``[N, H, W, C]`` or ``[N, C, H, W]``.
        labels: ``int64 [N]``, or ``None`` when the file has none.
        label_names: the file's ``label_names`` array, if any.
        layout: ``"medmnist"`` (``{split}_images``) or ``"images"`` (``images`` + ``labels``).
    """

    images: NDArray[Any]
    labels: NDArray[np.int64] | None
    label_names: tuple[str, ...]
    layout: str


def read_npz_split(path: PathLike, split: str, *, labels_required: bool = True,
                   layouts: Sequence[str] = ("medmnist", "images")) -> NpzSplit:
    """The one reader of raw ``.npz`` arrays: ``{split}_images``/``{split}_labels`` (MedMNIST layout), else
    ``images``/``labels`` (whole file, ``split`` ignored), in the order of ``layouts``.

    Unlike :func:`load_medmnist_npz`/:func:`load_npz` nothing is converted (RGB stays RGB, floats stay
    floats): for callers that need the stored channels (the distiller's whole-image source, the audit).

    Raises:
        DataError: unreadable archive, no array of the asked layouts (naming the splits present), labels
            that do not match the images, or missing labels when ``labels_required``.
    """
    p = Path(path)
    with open_npz(p) as npz:
        keys = set(npz.files)
        for layout in layouts:
            ik, lk = (f"{split}_images", f"{split}_labels") if layout == "medmnist" else ("images", "labels")
            if ik not in keys:
                continue
            images = _npz_array(p, npz, ik)
            if images.ndim not in (3, 4) or images.shape[0] == 0:
                raise DataError(f"{p}: {ik!r} must be a non-empty [N,H,W] or [N,H,W,C] array, got {images.shape}")
            check_pixels(images, f"{p}: {ik!r}")
            labels = _as_labels(p, lk, _npz_array(p, npz, lk), images.shape[0]) if lk in keys else None
            if labels is None and labels_required:
                raise DataError(f"{p}: has {ik!r} but no {lk!r}")
            names = tuple(str(v) for v in _npz_array(p, npz, "label_names")) if "label_names" in keys else ()
            return NpzSplit(images=images, labels=labels, label_names=names, layout=layout)
        splits = sorted({k.rsplit("_", 1)[0] for k in keys if k.endswith("_images")})
        wanted = " or ".join(f"'{split}_images'" if lo == "medmnist" else "'images'" for lo in layouts)
        raise DataError(f"{p}: no {wanted} array (no split {split!r}); splits present: {splits}; "
                        f"it holds {sorted(keys)}")


def load_npz(path: PathLike) -> ImageSet:
    """Load an ``.npz`` holding ``images`` [N,H,W] uint8, ``masks`` [N,H,W], ``labels`` [N] (+ ``names``).

    ``masks`` is optional; values {0,1} or {0,255} (converted to {0,1}). ``names`` (strings) default to
    ``image_00000`` ...

    Args:
        path: the ``.npz`` file.

    Returns:
        The :class:`ImageSet`.

    Raises:
        DataError: unreadable/truncated archive, missing ``images``/``labels``, wrong dtype or shape,
            inconsistent counts, duplicate names.
    """
    p = Path(path)
    with open_npz(p) as npz:
        images = _as_images(p, "images", _npz_array(p, npz, "images"))
        labels = _as_labels(p, "labels", _npz_array(p, npz, "labels"), images.shape[0])
        masks = (
            _as_masks(p, "masks", _npz_array(p, npz, "masks"), images.shape) if "masks" in npz.files else None
        )
        if "names" in npz.files:
            raw = _npz_array(p, npz, "names")
            if raw.dtype.kind not in "US" or raw.shape != (images.shape[0],):
                raise DataError(f"{p}: 'names' must be {images.shape[0]} strings, got {raw.dtype} {raw.shape}")
            names = tuple(str(x) if raw.dtype.kind == "U" else bytes(x).decode("utf-8", "replace") for x in raw)
            if len(set(names)) != len(names):
                raise DataError(f"{p}: 'names' contains duplicates")
        else:
            names = tuple(f"image_{i:05d}" for i in range(images.shape[0]))
    return ImageSet(images=images, masks=masks, labels=labels, names=names)


def load_medmnist_npz(path: PathLike) -> dict[str, ImageSet]:
    """Load a MedMNIST-style ``.npz``: one :class:`ImageSet` per split present (``train``, ``val``, ``test``).

    Labels may be ``(N,)`` or ``(N, 1)``; RGB sets ([N,H,W,3]) are converted to grayscale (ITU-R 601 luma).
    MedMNIST has no masks, so ``masks`` is ``None``; names are ``train_00000`` ...

    Raises:
        DataError: no split present, a split with images but no labels (or the reverse), bad shapes/dtypes,
            corrupt archive.
    """
    p = Path(path)
    out: dict[str, ImageSet] = {}
    with open_npz(p) as npz:
        for split in MEDMNIST_SPLITS:
            ik, lk = f"{split}_images", f"{split}_labels"
            has_i, has_l = ik in npz.files, lk in npz.files
            if has_i != has_l:
                raise DataError(f"{p}: has {ik if has_i else lk!r} but not {lk if has_i else ik!r}")
            if not has_i:
                continue
            images = _as_images(p, ik, _npz_array(p, npz, ik))
            labels = _as_labels(p, lk, _npz_array(p, npz, lk), images.shape[0])
            names = tuple(f"{split}_{i:05d}" for i in range(images.shape[0]))
            out[split] = ImageSet(images=images, masks=None, labels=labels, names=names)
        if not out:
            raise DataError(
                f"{p}: no MedMNIST split found (expected train_images/train_labels, val_*, test_*; "
                f"it holds {sorted(npz.files)})"
            )
    return out


def load_folder(
    folder: PathLike,
    *,
    labels_csv: PathLike | None = None,
    masks_dir: PathLike | None = None,
    size: int | tuple[int, int] | None = None,
    window: tuple[float, float] | None = None,
    unlabelled: str = "error",
) -> ImageSet:
    """Load a folder of images, their masks and a labels CSV.

    An image file without a row in the folder's own ``labels.csv`` is an error (naming how many and the
    first), unless ``unlabelled="skip"``: then it is left out (:func:`count_unlabelled` says how many). A
    ``labels_csv`` given explicitly selects (and orders) a subset on purpose.

    Layout (defaults)::

        folder/img001.png ...      images: .png .jpg .jpeg .tif .tiff .dcm
        folder/masks/img001.png    one mask per image, same stem (any supported extension)
        folder/labels.csv          header ``name,label``; name = file name or stem

    The CSV defines which images are loaded and their order (so several CSVs can split one folder); files
    it does not name are ignored. Mask pixels count as organ when > 127, or when == 1 for masks whose
    maximum is 1. Without ``masks/`` (and no ``masks_dir``) masks are ``None``.

    Args:
        folder: the image folder.
        labels_csv: the labels CSV (default ``folder/labels.csv``).
        masks_dir: the masks folder (default ``folder/masks`` when it exists).
        size: resize every image (bilinear, antialiased) and mask (nearest) to this side or ``(H, W)``;
            without it all images must share one shape.
        window: DICOM files only: ``(center, width)`` overriding each file's window.

    Returns:
        The :class:`ImageSet`, names = image file names.

    Raises:
        DataError: missing folder/CSV, a CSV row naming a missing or non-image file, duplicate names,
            undecodable image, missing mask, mask/image shape mismatch, images of different shapes.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    if (root / "sldp_store.json").is_file() and labels_csv is None and masks_dir is None:
        from sldpack.medical.store import open_store  # a converted store: images stay on disk

        store = open_store(root)
        if size is not None and store.shape != ((size, size) if isinstance(size, int) else tuple(size)):
            raise UsageError(f"{root}: the store holds {store.shape[0]}x{store.shape[1]} px images; "
                             "convert it again with --size to resize")
        return store
    listing = list_folder(root, labels_csv=labels_csv, masks_dir=masks_dir, size=size, unlabelled=unlabelled)
    n = len(listing.entries)
    reader = FolderReader(target=listing.target, window=window)
    # filled once the first image fixes the shape: no list + np.stack copy (peak memory = the data set)
    images: NDArray[np.uint8] | None = None
    masks: NDArray[np.uint8] | None = None
    labels: list[int] = []
    names: list[str] = []
    for e in listing.entries:
        item = reader(e)
        if images is None:
            reader = reader.fixed_by(e, item)
            images = np.empty((n, *item.image.shape), dtype=np.uint8)
            masks = np.empty((n, *item.image.shape), dtype=np.uint8) if listing.masks_dir is not None else None
        k = len(labels)
        images[k] = item.image
        if masks is not None and item.mask is not None:
            masks[k] = item.mask
        labels.append(e.label)
        names.append(e.image.name)
    assert images is not None  # rows is never empty (checked by read_labels_csv)
    return ImageSet(images=images, masks=masks, labels=np.asarray(labels, dtype=np.int64), names=tuple(names))


# --- dispatch -------------------------------------------------------------------------------------------


def count_unlabelled(folder: PathLike, loaded: ImageSet) -> int:
    """How many image files of ``folder`` are not in ``loaded`` (left out by ``unlabelled="skip"``)."""
    return len(unlisted(index_folder(Path(folder)), set(loaded.names)))


def load_images(path: PathLike, *, split: str | None = None, size: int | tuple[int, int] | None = None) -> ImageSet:
    """Load any supported source into an :class:`ImageSet`.

    A folder -> :func:`load_folder`; an ``.npz`` with ``images`` -> :func:`load_npz`; an ``.npz`` with
    ``<split>_images`` -> :func:`load_medmnist_npz` and the requested ``split``.

    Args:
        path: folder or ``.npz`` file.
        split: MedMNIST split (``train``, ``val``, ``test``); required for MedMNIST files.
        size: folders only: resize to this size (see :func:`load_folder`).

    Raises:
        DataError: unreadable or unsupported source.
        UsageError: a MedMNIST file without ``split``, or a split the file lacks; ``split`` given for a
            source without splits.
    """
    p = Path(path)
    if p.is_dir():
        if split is not None:
            raise UsageError(f"{p}: a folder has no splits; use a labels CSV per split instead of split=")
        return load_folder(p, size=size)
    if p.suffix.lower() != ".npz":
        raise DataError(f"{p}: unsupported data source (a folder or an .npz file)")
    with open_npz(p) as npz:
        keys = set(npz.files)
    if "images" in keys:
        if split is not None:
            raise UsageError(f"{p}: has no splits (it holds images/labels); drop split={split!r}")
        return load_npz(p)
    splits = load_medmnist_npz(p)
    if split is None:
        raise UsageError(f"{p}: is a MedMNIST-style file; choose its split (--split) from {sorted(splits)}")
    if split not in splits:
        raise UsageError(f"{p}: has no split {split!r}; it has {sorted(splits)}")
    return splits[split]


# --- splits ---------------------------------------------------------------------------------------------


def convert_to_store(src: PathLike, out: PathLike, *, split: str | None = None,
                     size: int | tuple[int, int] | None = None,
                     window: tuple[float, float] | None = None, overwrite: bool = False,
                     unlabelled: str = "error") -> StoreInfo:
    """Convert a data source once to a store (``sldp data convert``).

    Folders (PNG/JPEG/TIFF/DICOM + ``masks/`` + ``labels.csv``) are streamed image by image through
    :func:`~sldpack.medical.store.open_folder_lazy`, so the conversion itself never holds the data set;
    ``.npz`` sources (which numpy reads whole) go through :func:`load_images` (``split`` for MedMNIST).

    Raises:
        DataError: an unreadable source or image (naming the file).
        UsageError: an existing output, a split for a folder, bad size.
    """
    from sldpack.medical.store import is_store, open_folder_lazy, write_store

    p = Path(src)
    if not (p.is_file() or p.is_dir()):
        raise missing_path(p)
    if Path(out).resolve() == p.resolve():
        raise UsageError("the output folder must differ from the source")
    if size is not None:
        h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        if not (p.is_dir() and not is_store(p)):
            # an .npz or a store is converted at its own size: a --size would be silently ignored
            raise UsageError(f"{p}: --size resizes the images of a folder; an .npz or a store keeps its size")
        # one image and its mask are resized in float64 at a time (the store itself is written to disk)
        check_allocation(4 * 8 * h * w, f"--size {size}: resizing one {h}x{w} image and its mask")
    if p.is_dir() and not is_store(p):
        if split is not None:
            raise UsageError(f"{p}: a folder has no splits; use a labels CSV per split instead of --split")
        data = open_folder_lazy(p, size=size, window=window, cache_bytes=0, unlabelled=unlabelled)
    else:
        data = load_images(p, split=split, size=size)
    return write_store(data, out, source=str(p), overwrite=overwrite)


def _largest_remainder(m: int, fractions: Sequence[float]) -> list[int]:
    """Split ``m`` items into counts proportional to ``fractions`` (sum 1), exact total, ties -> earlier."""
    raw = [f * m for f in fractions]
    counts = [int(np.floor(r)) for r in raw]
    rest = m - sum(counts)
    order = sorted(range(len(raw)), key=lambda k: (-(raw[k] - counts[k]), k))
    for k in order[:rest]:
        counts[k] += 1
    return counts


def split_indices(
    n: int,
    fractions: Sequence[float],
    seed: int = 0,
    *,
    labels: Sequence[int] | NDArray[np.integer[Any]] | None = None,
    groups: Sequence[str | int] | NDArray[Any] | None = None,
) -> tuple[NDArray[np.int64], ...]:
    """Deterministic split of ``range(n)`` into parts of the given fractions, stratified and group-aware.

    Units are groups (e.g. patients: all images of one patient land in the same part) or single images
    when ``groups`` is ``None``. With ``labels`` the split is stratified: the units of each class (a group's
    class is its most frequent label, ties -> the larger label) are shuffled with ``seed`` and cut by
    largest-remainder rounding, so every part gets its share of every class. Montgomery has one image per
    patient, so ``groups=None`` already splits it by patient.

    Args:
        n: number of images.
        fractions: positive fractions summing to 1 (e.g. ``(0.7, 0.3)``).
        seed: random seed.
        labels: per-image labels for stratification, or ``None``.
        groups: per-image group ids (patient ids), or ``None``.

    Returns:
        One sorted int64 index array per fraction; together a partition of ``range(n)``.

    Raises:
        UsageError: bad fractions or lengths.
    """
    if n < 0:
        raise UsageError(f"n must be >= 0, got {n}")
    fr = [float(f) for f in fractions]
    if not fr or any(not np.isfinite(f) or f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise UsageError(f"fractions must be non-negative and sum to 1, got {list(fractions)}")
    lab = np.zeros(n, dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64).reshape(-1)
    if lab.shape != (n,):
        raise UsageError(f"labels has {lab.shape[0]} entries for n={n}")
    if groups is None:
        unit_of = np.arange(n, dtype=np.int64)
    else:
        garr = np.asarray(groups).reshape(-1)
        if garr.shape != (n,):
            raise UsageError(f"groups has {garr.shape[0]} entries for n={n}")
        _, unit_of = np.unique(garr, return_inverse=True)
        unit_of = unit_of.astype(np.int64).reshape(-1)
    n_units = int(unit_of.max()) + 1 if n else 0
    # class of a unit: its most frequent label (ties -> larger label)
    unit_class = np.zeros(n_units, dtype=np.int64)
    if n:
        classes = np.unique(lab)
        counts = np.zeros((n_units, classes.size), dtype=np.int64)
        np.add.at(counts, (unit_of, np.searchsorted(classes, lab)), 1)
        unit_class = classes[counts.shape[1] - 1 - np.argmax(counts[:, ::-1], axis=1)]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5B17]))
    parts: list[list[int]] = [[] for _ in fr]
    for c in np.unique(unit_class):
        units = np.flatnonzero(unit_class == c)
        units = units[rng.permutation(units.size)]
        start = 0
        for k, cnt in enumerate(_largest_remainder(units.size, fr)):
            parts[k].extend(units[start : start + cnt].tolist())
            start += cnt
    out: list[NDArray[np.int64]] = []
    for part in parts:
        sel = np.isin(unit_of, np.asarray(part, dtype=np.int64))
        out.append(np.flatnonzero(sel).astype(np.int64))
    return tuple(out)
