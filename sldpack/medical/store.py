"""Data bigger than memory: lazy image arrays, a converted on-disk store, and per-rank shards.

Every eager loader materialises ``[N, H, W]`` in RAM (100k images of 2048 px are ~400 GB). This module gives
:class:`~sldpack.medical.loaders.ImageSet` two lazy backings, both read-only array-likes that read an image
(or only the rows of it a patch needs) when indexed, so patch indexing and sampling touch only what they use:

* :func:`open_folder_lazy`: a folder of PNG/JPEG/TIFF/DICOM images read and decoded on demand, with a
  bounded LRU cache of decoded items, image + mask (``cache_bytes``); same names, labels, masks, resizing
  and errors as :func:`~sldpack.medical.loaders.load_folder` (one per-item reader,
  :class:`~sldpack.medical.folders.FolderReader`).
* :func:`~sldpack.medical.loaders.convert_to_store` (``sldp data convert SRC OUT``) converts any source once
  to a **store** with :func:`write_store`, a directory of ``.npy`` files, and :func:`open_store` opens it
  (``load_images``/``load_folder`` open a store folder too).
  A store is read with ``pread`` of exactly the bytes a window needs (no mmap, so the resident set stays
  the size of what was read, not of the file), or as ``numpy.memmap`` arrays with ``mmap=True``.

Store layout (version 1)::

    OUT/sldp_store.json   {"format": "sldp-image-store", "version": 1, "count": N, "height": H,
                           "width": W, "masks": true|false, "source": "..."}
    OUT/images.npy        uint8 [N, H, W], C order, grayscale
    OUT/masks.npy         uint8 [N, H, W] values {0, 1} (1 = organ); absent when the source has no masks
    OUT/labels.npy        int64 [N] image labels
    OUT/names.npy         unicode [N] image names (fixed-width ``<U`` dtype, no pickle)

Plain NPY format 1.0/2.0 files, readable by ``numpy.load(..., mmap_mode="r")`` anywhere. The store is
written into a temporary sibling folder and renamed into place, so ``OUT`` is either complete or absent.

:func:`shard` gives rank ``r`` of ``world`` a contiguous, disjoint view (``[r N / world, (r+1) N / world)``):
under ``torch.distributed`` each rank indexes and samples its own shard and reads only its images.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from sldpack.atomic import remove_stale_temporaries, temporary_path
from sldpack.errors import DataError, UsageError
from sldpack.medical.folders import MAX_LABEL, FolderEntry, FolderItem, FolderReader
from sldpack.medical.imageset import ImageSet

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "STORE_MARKER",
    "LazyArray",
    "NpyArray",
    "StoreInfo",
    "is_store",
    "open_folder_lazy",
    "open_store",
    "shard",
    "shard_range",
    "take",
    "write_store",
]

STORE_MARKER = "sldp_store.json"
STORE_FORMAT = "sldp-image-store"
STORE_VERSION = 1
DEFAULT_CACHE_BYTES = 256 << 20
"""Decoded-item cache of a lazy folder (256 MiB: 4,096 images of 256 px, 64 of 2048 px; half with masks)."""

PathLike = str | os.PathLike[str]


# --- lazy array-likes ---------------------------------------------------------------------------------


class LazyArray:
    """Read-only ``[N, *item_shape]`` array-like whose items are read on demand.

    Indexing follows numpy for what the medical code uses: ``a[i]``, ``a[i, y0:y1, x0:x1]``, ``a[start:stop]``,
    ``a[index_array]``, ``a[bool_mask]`` return ordinary numpy arrays holding only the items asked for;
    ``np.asarray(a)`` reads everything (what an eager loader would hold). :meth:`take_rows` returns a lazy
    view (nothing read), which :meth:`ImageSet.subset <sldpack.medical.loaders.ImageSet.subset>` and
    :func:`shard` use. Subclasses implement :meth:`_read_item`.
    """

    def __init__(self, item_shape: tuple[int, ...], dtype: np.dtype[Any], rows: NDArray[np.int64]) -> None:
        self._item_shape = tuple(int(v) for v in item_shape)
        self._dtype = np.dtype(dtype)
        self._rows = rows

    # numpy-like metadata
    @property
    def shape(self) -> tuple[int, ...]:
        """``(N, *item_shape)``."""
        return (int(self._rows.shape[0]), *self._item_shape)

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return 1 + len(self._item_shape)

    @property
    def dtype(self) -> np.dtype[Any]:
        """Element type."""
        return self._dtype

    @property
    def size(self) -> int:
        """Number of elements."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        """Bytes the whole array would take in memory."""
        return self.size * self._dtype.itemsize

    def __len__(self) -> int:
        return int(self._rows.shape[0])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, dtype={self._dtype})"

    def _read_item(self, row: int, rest: tuple[Any, ...]) -> NDArray[Any]:
        """Item ``row`` of the underlying source (a source row, not a view row), indexed by ``rest``."""
        raise NotImplementedError

    def _view(self, rows: NDArray[np.int64]) -> LazyArray:
        raise NotImplementedError

    def take_rows(self, indices: Sequence[int] | NDArray[np.integer[Any]] | slice) -> LazyArray:
        """A lazy view of the items at ``indices`` (or a slice), in that order; nothing is read."""
        sel = self._rows[indices] if isinstance(indices, slice) else self._rows[np.asarray(indices, dtype=np.int64)]
        return self._view(np.ascontiguousarray(sel, dtype=np.int64).reshape(-1))

    def _empty(self, rest: tuple[Any, ...]) -> NDArray[Any]:
        out: NDArray[Any] = np.empty((0, *self._item_shape), dtype=self._dtype)[(slice(None), *rest)]
        return out

    def __getitem__(self, key: Any) -> NDArray[Any]:
        k = key if isinstance(key, tuple) else (key,)
        if not k:
            return np.asarray(self)
        first, rest = k[0], tuple(k[1:])
        if first is Ellipsis or first is None:
            whole: NDArray[Any] = np.asarray(self)
            return cast(NDArray[Any], whole[key])
        if isinstance(first, (int, np.integer)) and not isinstance(first, bool):
            n = len(self)
            i = int(first)
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of bounds for axis 0 with size {n}")
            return self._read_item(int(self._rows[i]), rest)
        if isinstance(first, slice):
            sel = self._rows[first]
        else:
            arr = np.asarray(first)
            if arr.dtype != np.bool_ and arr.dtype.kind not in "iu":
                raise IndexError(f"unsupported index {first!r} for {type(self).__name__}")
            if arr.ndim != 1 or any(not isinstance(r, (slice, int, np.integer)) or isinstance(r, bool)
                                    for r in rest):
                # several advanced indices broadcast together in numpy: keep its exact semantics the simple way
                whole_: NDArray[Any] = np.asarray(self)
                return cast(NDArray[Any], whole_[key])
            sel = self._rows[arr]
        sel = sel.reshape(-1)
        if sel.size == 0:
            return self._empty(rest)
        return np.stack([self._read_item(int(r), rest) for r in sel])

    def __array__(self, dtype: Any = None, copy: Any = None) -> NDArray[Any]:
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def __iter__(self) -> Iterator[NDArray[Any]]:
        for i in range(len(self)):
            yield self[i]


def _read_exact(fd: int, buf: NDArray[Any], offset: int, what: str) -> None:
    if buf.nbytes == 0:
        return
    mv = memoryview(buf.reshape(-1).view(np.uint8).data)
    done = 0
    while done < mv.nbytes:
        got = os.preadv(fd, [mv[done:]], offset + done)
        if got <= 0:
            raise DataError(f"{what}: file ends at byte {offset + done}, {mv.nbytes - done} bytes short")
        done += got


class NpyArray(LazyArray):
    """A C-order ``.npy`` file read with ``pread``: each access reads exactly the bytes it needs.

    ``a[i, y0:y1, ...]`` reads only rows ``y0..y1`` of item ``i`` (one contiguous range), so cutting a patch
    reads ``size`` rows of one image. Safe to pickle (the file is reopened in the other process) and to use
    from several threads (``pread`` has no shared file position).

    Raises:
        DataError: not an ``.npy`` file, Fortran order, an object dtype, or shorter than its header says.
    """

    def __init__(self, path: PathLike, rows: NDArray[np.int64] | None = None,
                 _header: tuple[tuple[int, ...], np.dtype[Any], int] | None = None) -> None:
        self.path = Path(path)
        shape, dtype, offset = _header if _header is not None else _npy_header(self.path)
        if len(shape) < 1:
            raise DataError(f"{self.path}: a 0-d array is not an item array")
        self._offset = offset
        self._header = (shape, dtype, offset)
        super().__init__(shape[1:], dtype, np.arange(shape[0], dtype=np.int64) if rows is None else rows)
        self._item_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        self._fd: int | None = None
        self._lock = threading.Lock()

    def _fileno(self) -> int:
        if self._fd is None:
            with self._lock:
                if self._fd is None:
                    try:
                        self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
                    except OSError as exc:
                        raise DataError(f"{self.path}: cannot open ({exc.strerror})") from exc
        return self._fd

    def _view(self, rows: NDArray[np.int64]) -> NpyArray:
        return NpyArray(self.path, rows, _header=self._header)

    def _read_item(self, row: int, rest: tuple[Any, ...]) -> NDArray[Any]:
        base = self._offset + row * self._item_bytes
        shape = self._item_shape
        if shape and rest and isinstance(rest[0], slice) and rest[0].step in (None, 1):
            # rows y0..y1 of the item are one contiguous byte range
            y0, y1, _ = rest[0].indices(shape[0])
            y1 = max(y0, y1)
            line = self._item_bytes // shape[0] if shape[0] else 0
            buf = np.empty((y1 - y0, *shape[1:]), dtype=self._dtype)
            _read_exact(self._fileno(), buf, base + y0 * line, str(self.path))
            out: NDArray[Any] = buf[(slice(None), *rest[1:])]
            return out
        buf = np.empty(shape, dtype=self._dtype)
        _read_exact(self._fileno(), buf, base, str(self.path))
        res: NDArray[Any] = buf[rest] if rest else buf
        return res

    def close(self) -> None:
        """Close the file (it is reopened on the next access)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_fd"] = None
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    """``(shape, dtype, data offset)`` of an ``.npy`` file, checking that the data is all there."""
    fmt = np.lib.format
    try:
        with path.open("rb") as fh:
            major, minor = fmt.read_magic(fh)
            if (major, minor) == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(fh)
            elif (major, minor) in ((2, 0), (3, 0)):
                shape, fortran, dtype = fmt.read_array_header_2_0(fh)
            else:
                raise DataError(f"{path}: unsupported .npy version {major}.{minor}")
            offset = fh.tell()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    except ValueError as exc:
        raise DataError(f"{path}: not an .npy file ({exc})") from exc
    if fortran:
        raise DataError(f"{path}: Fortran-order arrays are not supported")
    if dtype.hasobject:
        raise DataError(f"{path}: object arrays are refused (they need pickle)")
    need = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = path.stat().st_size
    if have < need:
        raise DataError(f"{path}: truncated: {have} bytes, header promises {need}")
    return tuple(int(v) for v in shape), dtype, offset


class _FolderItems:
    """The items of a folder read by its one :class:`FolderReader`, through an LRU cache shared by the
    image and the mask array (reading item ``i`` decodes its image and mask once, checked together)."""

    def __init__(self, entries: Sequence[FolderEntry], reader: FolderReader, cache: _ByteLRU) -> None:
        self.entries = tuple(entries)
        self.reader = reader
        self.cache = cache

    def keep(self, row: int, item: FolderItem) -> None:
        item.image.setflags(write=False)  # shared by the cache: callers get views they cannot corrupt
        if item.mask is not None:
            item.mask.setflags(write=False)
        self.cache.put(row, item)

    def get(self, row: int) -> FolderItem:
        item = self.cache.get(row)
        if item is None:
            item = self.reader(self.entries[row])
            self.keep(row, item)
        return item


class _FolderArray(LazyArray):
    """The images (or masks) of a folder, decoded on demand through :class:`_FolderItems`."""

    def __init__(self, items: _FolderItems, item_shape: tuple[int, int], masks: bool,
                 rows: NDArray[np.int64] | None = None) -> None:
        super().__init__(item_shape, np.dtype(np.uint8),
                         np.arange(len(items.entries), dtype=np.int64) if rows is None else rows)
        self._items = items
        self._masks = masks

    def _view(self, rows: NDArray[np.int64]) -> _FolderArray:
        return _FolderArray(self._items, (self._item_shape[0], self._item_shape[1]), self._masks, rows)

    def _read_item(self, row: int, rest: tuple[Any, ...]) -> NDArray[Any]:
        item = self._items.get(row)
        arr = item.mask if self._masks else item.image
        assert arr is not None  # a mask array exists only for folders whose every entry has a mask
        out: NDArray[Any] = arr[rest] if rest else arr
        return out


class _ByteLRU:
    """A thread-safe LRU of folder items bounded by their total bytes (at least the newest item is kept)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[int, FolderItem] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: int) -> FolderItem | None:
        with self._lock:
            arr = self._items.get(key)
            if arr is not None:
                self._items.move_to_end(key)
            return arr

    def __getstate__(self) -> dict[str, Any]:
        return {"max_bytes": self.max_bytes}  # a copy in another process starts empty

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(int(state["max_bytes"]))  # type: ignore[misc]

    def put(self, key: int, arr: FolderItem) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = arr
            self._bytes += arr.nbytes
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        return self._bytes


def take(a: Any, indices: NDArray[np.int64]) -> Any:
    """``a[indices]`` as a lazy view when ``a`` is a :class:`LazyArray`, else a contiguous copy (numpy)."""
    return a.take_rows(indices) if isinstance(a, LazyArray) else np.ascontiguousarray(a[indices])


# --- lazy folders ---------------------------------------------------------------------------------------


def open_folder_lazy(
    folder: PathLike,
    *,
    labels_csv: PathLike | None = None,
    masks_dir: PathLike | None = None,
    size: int | tuple[int, int] | None = None,
    window: tuple[float, float] | None = None,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    unlabelled: str = "error",
) -> ImageSet:
    """A folder of images as a lazy :class:`ImageSet`: files are decoded when indexed, not up front.

    Same layout, arguments, names, labels, and the same per-item reader
    (:class:`~sldpack.medical.folders.FolderReader`: mask rule, shape checks, resizing) as
    :func:`~sldpack.medical.loaders.load_folder`, so the result compares equal item by item and a defect
    raises the same error. Only the first item is decoded here (to fix ``(H, W)`` when ``size`` is not
    given); a defect of another item raises :class:`DataError` naming the file when that item is first
    read. Items (image + mask) share one LRU cache of at most ``cache_bytes`` bytes.

    Raises:
        DataError: as ``load_folder`` for the folder, CSV and names (every listed file must exist).
        UsageError: bad ``size`` or ``cache_bytes``.
    """
    from sldpack.medical.folders import list_folder

    root = Path(folder)
    if isinstance(cache_bytes, bool) or not isinstance(cache_bytes, int) or cache_bytes < 0:
        raise UsageError(f"cache_bytes must be a non-negative integer, got {cache_bytes!r}")
    listing = list_folder(root, labels_csv=labels_csv, masks_dir=masks_dir, size=size, unlabelled=unlabelled)
    entries = listing.entries
    reader = FolderReader(target=listing.target, window=window)
    first = reader(entries[0])  # fixes (H, W) and reports a defect of the first item up front
    items = _FolderItems(entries, reader.fixed_by(entries[0], first), _ByteLRU(cache_bytes))
    items.keep(0, first)  # not decoded a second time when item 0 is read
    shape = (int(first.image.shape[0]), int(first.image.shape[1]))
    img_arr = _FolderArray(items, shape, masks=False)
    mask_arr = _FolderArray(items, shape, masks=True) if listing.masks_dir is not None else None
    return ImageSet(images=cast(NDArray[np.uint8], img_arr),
                    masks=None if mask_arr is None else cast(NDArray[np.uint8], mask_arr),
                    labels=np.asarray([e.label for e in entries], dtype=np.int64),
                    names=tuple(e.image.name for e in entries))


# --- the store ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreInfo:
    """What :func:`write_store` (behind ``convert_to_store``) wrote."""

    path: Path
    count: int
    height: int
    width: int
    masks: bool
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"path": str(self.path), "count": self.count, "height": self.height, "width": self.width,
                "masks": self.masks, "bytes": self.bytes}


def is_store(path: PathLike) -> bool:
    """Whether ``path`` is a folder holding a store (its ``sldp_store.json`` marker)."""
    return (Path(path) / STORE_MARKER).is_file()


def _write_npy_streams(paths: Sequence[Path], shape: tuple[int, ...], dtype: np.dtype[Any],
                       items: Iterator[Sequence[NDArray[Any]]]) -> None:
    """Write one ``.npy`` of ``shape`` per path, item by item in lockstep (memory: one item of each), checking
    every item's shape. Lockstep: item ``i`` of a lazy folder (image + mask) is decoded once, not once per file."""
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(p.open("wb")) for p in paths]
        for fh in files:
            np.lib.format.write_array_header_2_0(fh, header)
        count = 0
        for parts in items:
            for fh, item in zip(files, parts, strict=True):
                a = np.ascontiguousarray(item, dtype=dtype)
                if a.shape != shape[1:]:
                    raise DataError(f"item {count} has shape {a.shape}, the store's items are {shape[1:]}")
                fh.write(a.tobytes())
            count += 1
        if count != shape[0]:
            raise DataError(f"{count} items written, {shape[0]} expected")
        for fh in files:
            fh.flush()
            os.fsync(fh.fileno())


def write_store(data: ImageSet, out: PathLike, *, source: str = "", overwrite: bool = False) -> StoreInfo:
    """Write ``data`` (eager or lazy) as a store folder, one image at a time (memory: one image).

    The folder is built under a temporary sibling name and renamed into place, so ``out`` never holds a
    half-written store.

    Raises:
        UsageError: ``out`` exists (and ``overwrite`` is false) or is not a folder we may replace.
        DataError: an image cannot be read (lazy sources fail here, naming the file).
    """
    dst = Path(out)
    if dst.exists():
        if not overwrite:
            raise UsageError(f"{dst}: already exists (choose a new output folder)")
        if not is_store(dst):
            raise UsageError(f"{dst}: exists and is not a store; refusing to replace it")
    dst.parent.mkdir(parents=True, exist_ok=True)
    # named like atomic.py's temporaries, so a rerun removes what a killed (SIGKILL) conversion left
    remove_stale_temporaries(dst)
    tmp = temporary_path(dst)
    n = len(data)
    h, w = data.shape
    tmp.mkdir()
    try:
        masks = data.masks
        if masks is None:
            _write_npy_streams([tmp / "images.npy"], (n, h, w), np.dtype(np.uint8),
                               ((data.images[i],) for i in range(n)))
        else:
            _write_npy_streams([tmp / "images.npy", tmp / "masks.npy"], (n, h, w), np.dtype(np.uint8),
                               ((data.images[i], np.asarray(masks[i] != 0, dtype=np.uint8)) for i in range(n)))
        np.save(tmp / "labels.npy", np.asarray(data.labels, dtype=np.int64))
        np.save(tmp / "names.npy", np.asarray(data.names, dtype=np.str_), allow_pickle=False)
        meta = {"format": STORE_FORMAT, "version": STORE_VERSION, "count": n, "height": h, "width": w,
                "masks": data.masks is not None, "source": source}
        (tmp / STORE_MARKER).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(tmp, dst)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(dst)  # a failed write (disk full) names the store it was writing
        raise
    total = sum(p.stat().st_size for p in dst.iterdir())
    return StoreInfo(dst, n, h, w, data.masks is not None, total)


def open_store(path: PathLike, *, mmap: bool = False) -> ImageSet:
    """Open a store folder as an :class:`ImageSet` whose images and masks stay on disk.

    Args:
        path: the store folder (see the module docstring for its layout).
        mmap: ``numpy.memmap`` arrays (the OS pages images in; they count in the resident set while
            mapped) instead of the default ``pread`` array-likes (:class:`NpyArray`).

    Raises:
        DataError: not a store, a newer version, a missing/truncated/mis-shaped file (naming it).
    """
    root = Path(path)
    marker = root / STORE_MARKER
    if not marker.is_file():
        raise DataError(f"{root}: not an sldp image store (no {STORE_MARKER}; make one with sldp data convert)")
    try:
        meta = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{marker}: unreadable ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != STORE_FORMAT:
        raise DataError(f"{marker}: format is not {STORE_FORMAT!r}")
    if meta.get("version") != STORE_VERSION:
        raise DataError(f"{marker}: store version {meta.get('version')!r}; this sldpack reads version "
                        f"{STORE_VERSION}")
    try:
        n, h, w = int(meta["count"]), int(meta["height"]), int(meta["width"])
        has_masks = bool(meta["masks"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{marker}: missing or bad field ({exc})") from exc
    want = (n, h, w)

    def array(name: str, shape: tuple[int, ...], dtype: Any) -> NDArray[Any]:
        p = root / name
        got_shape, got_dtype, _ = _npy_header(p)
        if got_shape != shape or got_dtype != np.dtype(dtype):
            raise DataError(f"{p}: {got_dtype} {list(got_shape)}, the store needs {np.dtype(dtype)} {list(shape)}")
        if mmap:
            return cast(NDArray[Any], np.load(p, mmap_mode="r", allow_pickle=False))
        return cast(NDArray[Any], NpyArray(p))

    images = array("images.npy", want, np.uint8)
    masks = array("masks.npy", want, np.uint8) if has_masks else None
    labels = np.array(array("labels.npy", (n,), np.int64), dtype=np.int64)
    if n and (labels.min() < 0 or labels.max() > MAX_LABEL):
        i = int(np.argmax((labels < 0) | (labels > MAX_LABEL)))
        raise DataError(f"{root / 'labels.npy'}: label {int(labels[i])} of image {i} is outside 0..{MAX_LABEL} "
                        "(labels are class indices)")
    names_path = root / "names.npy"
    try:
        raw_names = np.load(names_path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{names_path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{names_path}: unreadable ({exc})") from exc
    if raw_names.dtype.kind != "U" or raw_names.shape != (n,):
        raise DataError(f"{names_path}: must be {n} strings, got {raw_names.dtype} {raw_names.shape}")
    return ImageSet(images=images, masks=masks, labels=labels, names=tuple(str(s) for s in raw_names))


# --- shards -----------------------------------------------------------------------------------------------


def shard_range(n: int, rank: int, world: int) -> tuple[int, int]:
    """``(start, stop)`` of rank ``rank``'s contiguous share of ``n`` items: ``[rank n / world, (rank+1) n / world)``.

    The shares of ranks ``0..world-1`` are disjoint, cover ``range(n)`` in order and differ in size by at
    most one.

    Raises:
        UsageError: ``world < 1`` or ``rank`` outside ``0..world-1``.
    """
    for what, v in (("n", n), ("rank", rank), ("world", world)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise UsageError(f"{what} must be an integer, got {v!r}")
    if world < 1:
        raise UsageError(f"world size must be >= 1, got {world}")
    if not 0 <= rank < world:
        raise UsageError(f"rank must be in 0..{world - 1}, got {rank}")
    if n < 0:
        raise UsageError(f"n must be >= 0, got {n}")
    return (int(rank) * int(n)) // int(world), (int(rank) + 1) * int(n) // int(world)


def shard(data: ImageSet, rank: int, world: int) -> ImageSet:
    """Rank ``rank`` of ``world``'s share of ``data`` (see :func:`shard_range`), a view: nothing is read.

    For a store or lazy folder the images stay on disk (only this shard's images are ever read when it is
    indexed and sampled); for in-memory arrays the result shares their memory. Under ``torch.distributed``:
    ``shard(data, dist.get_rank(), dist.get_world_size())``. Names and labels are the shard's own.

    Raises:
        UsageError: as :func:`shard_range`.
    """
    start, stop = shard_range(len(data), rank, world)

    def part(a: Any) -> Any:
        return a.take_rows(slice(start, stop)) if isinstance(a, LazyArray) else a[start:stop]

    return ImageSet(images=part(data.images), masks=None if data.masks is None else part(data.masks),
                    labels=np.asarray(data.labels[start:stop]), names=tuple(data.names[start:stop]))
