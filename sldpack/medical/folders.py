"""Image folders with a ``name,label`` CSV: reading the CSV, resolving names to files, reading one item.

Shared by the eager folder loader (:func:`sldpack.medical.loaders.load_folder`) and the lazy one
(:func:`sldpack.medical.store.open_folder_lazy`), so both resolve names by one rule (:func:`list_folder`)
and decode, check and resize each image with its mask by one reader (:class:`FolderReader`, shaped like
MONAI's ``ImageReader``: one object that reads an item and returns its arrays with their metadata).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from sldpack.errors import DataError, UsageError
from sldpack.medical.images import IMAGE_EXTENSIONS, binary_mask, read_image_file, resize_u8

__all__ = ["MAX_LABEL", "FolderEntry", "FolderItem", "FolderListing", "FolderReader", "find_by_name",
           "index_folder", "list_folder", "read_labels_csv", "unlisted"]

MAX_LABEL = 65535
"""The largest class index a label may be (labels.csv, a store's labels.npy): 65536 classes, far more than any
data set here has, and small enough that a per-class count (``bincount``) never becomes an allocation hazard."""


def read_labels_csv(path: Path) -> list[tuple[int, str, int]]:
    """Rows ``(line number, name, label)`` of a ``name,label`` CSV."""
    if not path.is_file():
        raise DataError(f"{path}: labels CSV not found (expected columns name,label)")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = [f.strip().lower() for f in (reader.fieldnames or [])]
            if "name" not in fields or "label" not in fields:
                if reader.fieldnames is None:
                    raise DataError(f"{path}: empty file (expected a header name,label and one row per image)")
                raise DataError(f"{path}: header must contain the columns name,label, got {reader.fieldnames}")
            name_key = reader.fieldnames[fields.index("name")]  # type: ignore[index]
            label_key = reader.fieldnames[fields.index("label")]  # type: ignore[index]
            rows: list[tuple[int, str, int]] = []
            for rec in reader:
                line = reader.line_num
                name = (rec.get(name_key) or "").strip()
                raw = (rec.get(label_key) or "").strip()
                if not name and not raw:
                    continue  # blank line
                if not name:
                    raise DataError(f"{path}: line {line}: empty name")
                try:
                    label = int(raw)
                except ValueError:
                    raise DataError(f"{path}: line {line}: label {raw!r} is not an integer") from None
                if label < 0:
                    raise DataError(f"{path}: line {line}: label {label} is negative")
                if label > MAX_LABEL:
                    raise DataError(f"{path}: line {line}: label {label} is larger than {MAX_LABEL} (labels are "
                                    "class indices 0..K-1)")
                rows.append((line, name, label))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from exc
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV ({exc})") from exc
    if not rows:
        raise DataError(f"{path}: no rows (expected a header name,label and one row per image)")
    return rows


def find_by_name(folder: Path, name: str, files: dict[str, list[Path]], what: str, ctx: str) -> Path:
    """Resolve ``name`` (a file name with extension, or a stem matching exactly one file) in ``folder``."""
    direct = folder / name
    if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
        # a full file name must exist as written: never substitute img.tif for a listed img.png
        if direct.is_file():
            return direct
        raise DataError(f"{ctx}: names {name!r} but {folder} has no {what} file with that name")
    if direct.is_file():
        raise DataError(f"{ctx}: {name!r} is not a supported image type ({', '.join(IMAGE_EXTENSIONS)})")
    cands = files.get(name, [])
    if not cands:
        raise DataError(f"{ctx}: names {name!r} but {folder} has no {what} file with that name")
    if len(cands) > 1:
        raise DataError(f"{ctx}: {name!r} is ambiguous in {folder}: {sorted(c.name for c in cands)}")
    return cands[0]


def index_folder(folder: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
            out.setdefault(f.stem, []).append(f)
    return out


@dataclass(frozen=True)
class FolderEntry:
    """One CSV row resolved to files: where it was listed, the image, its mask (or ``None``) and its label."""

    context: str
    image: Path
    mask: Path | None
    label: int


@dataclass(frozen=True)
class FolderListing:
    """A folder resolved by the one rule shared by the eager and the lazy loader (nothing decoded yet)."""

    root: Path
    csv_path: Path
    masks_dir: Path | None
    target: tuple[int, int] | None
    entries: tuple[FolderEntry, ...]


def unlisted(files: dict[str, list[Path]], seen: set[str] | frozenset[str]) -> list[str]:
    """Image file names of an :func:`index_folder` result that are not in ``seen``, sorted."""
    return sorted(f.name for paths in files.values() for f in paths if f.name not in seen)


def list_folder(root: Path, *, labels_csv: str | os.PathLike[str] | None = None,
                masks_dir: str | os.PathLike[str] | None = None,
                size: int | tuple[int, int] | None = None, unlabelled: str = "error") -> FolderListing:
    """Resolve a labelled image folder to files before anything is decoded.

    The folder's own ``labels.csv`` must name every image file, unless ``unlabelled="skip"``; a CSV given
    explicitly selects (and orders) a subset on purpose. Every listed image must exist once; with a masks
    folder every image needs a mask of the same stem.

    Raises:
        DataError: a missing folder/CSV/image/mask, a file listed twice, unlisted images (``"error"``).
        UsageError: a bad ``size`` or ``unlabelled`` value.
    """
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    if unlabelled not in ("error", "skip"):
        raise UsageError(f"unlabelled must be 'error' or 'skip', got {unlabelled!r}")
    target = None if size is None else ((size, size) if isinstance(size, int) else (int(size[0]), int(size[1])))
    if target is not None and (target[0] < 1 or target[1] < 1):
        raise UsageError(f"size must be positive, got {size!r}")
    csv_path = Path(labels_csv) if labels_csv is not None else root / "labels.csv"
    rows = read_labels_csv(csv_path)
    mdir: Path | None
    if masks_dir is not None:
        mdir = Path(masks_dir)
        if not mdir.is_dir():
            raise DataError(f"{mdir}: masks folder not found")
    else:
        mdir = root / "masks" if (root / "masks").is_dir() else None
    files = index_folder(root)
    mfiles = index_folder(mdir) if mdir is not None else {}
    entries: list[FolderEntry] = []
    seen: dict[str, int] = {}
    for line, name, label in rows:
        ctx = f"{csv_path}: line {line}"
        f = find_by_name(root, name, files, "image", ctx)
        if f.name in seen:
            raise DataError(f"{ctx}: {f.name!r} is listed twice (first on line {seen[f.name]})")
        seen[f.name] = line
        mask = find_by_name(mdir, f.stem, mfiles, "mask", f"{ctx} ({f.name})") if mdir is not None else None
        entries.append(FolderEntry(ctx, f, mask, label))
    missing = unlisted(files, frozenset(seen)) if labels_csv is None else []
    if missing and unlabelled == "error":  # no image silently dropped
        raise DataError(f"{csv_path}: {len(missing)} image file(s) in {root} have no row (the first: "
                        f"{missing[0]!r}); add their labels, or pass --unlabelled skip to leave them out")
    return FolderListing(root, csv_path, mdir, target, tuple(entries))


@dataclass(frozen=True)
class FolderItem:
    """One decoded folder item: the image, its 0/1 mask (or ``None``) and the image's shape as stored."""

    image: NDArray[np.uint8]
    mask: NDArray[np.uint8] | None
    stored_shape: tuple[int, int]

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (what a cache of items counts)."""
        return self.image.nbytes + (0 if self.mask is None else self.mask.nbytes)


@dataclass(frozen=True)
class FolderReader:
    """The one per-item reader of a labelled folder, for the eager and the lazy loader alike.

    Decodes the image (``window``: DICOM only) and its mask, refuses a mask whose stored shape differs from
    its image's (naming the mask, the image and both shapes: resizing both would hide a mask drawn for
    another image), binarises the mask (:func:`~sldpack.medical.images.binary_mask`), and resizes both to
    ``target`` when given (image bilinear antialiased, mask nearest). With ``shape`` set (the shape of the
    set, fixed by its first image ``shape_of``), an item of another shape is refused. A picklable callable
    (lazy sets travel to DataLoader workers).
    """

    target: tuple[int, int] | None = None
    window: tuple[float, float] | None = None
    shape: tuple[int, int] | None = None
    shape_of: str = ""

    def __call__(self, entry: FolderEntry) -> FolderItem:
        """Read ``entry``'s image and mask.

        Raises:
            DataError: a missing or undecodable file, a mask of another shape than its image, or an image
                of another shape than the set's (naming the file).
        """
        img = read_image_file(entry.image, window=self.window)
        stored = (int(img.shape[0]), int(img.shape[1]))
        mask: NDArray[np.uint8] | None = None
        if entry.mask is not None:
            raw = read_image_file(entry.mask)
            if raw.shape != img.shape:
                raise DataError(f"{entry.mask}: mask shape {raw.shape} differs from image {entry.image.name} "
                                f"shape {img.shape}")
            mask = binary_mask(raw)
            if self.target is not None:
                mask = resize_u8(mask, self.target, nearest=True)
        if self.target is not None:
            img = resize_u8(img, self.target, nearest=False)
        if self.shape is not None and img.shape != self.shape:
            raise DataError(f"{entry.image}: shape {img.shape} differs from {self.shape_of} {self.shape}; "
                            "resize them to one size (--resize N; sldp data convert: --size N)")
        return FolderItem(img, mask, stored)

    def fixed_by(self, entry: FolderEntry, item: FolderItem) -> FolderReader:
        """This reader with the set's shape fixed by ``entry``'s already read ``item``."""
        return FolderReader(self.target, self.window, (int(item.image.shape[0]), int(item.image.shape[1])),
                            entry.image.name)
