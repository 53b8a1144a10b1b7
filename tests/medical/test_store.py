"""Data bigger than memory: the on-disk store, lazy folders and shards give what the eager loaders give."""

from __future__ import annotations

import itertools
import json
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from sldpack.errors import DataError, UsageError
from sldpack.medical import make_phantom
from sldpack.medical.loaders import ImageSet, load_folder, load_images
from sldpack.medical.loaders import convert_to_store as convert
from sldpack.medical.patches import PatchConfig, PatchSampler, build_patch_index, cut_patches, index_image_set
from sldpack.medical.store import (
    LazyArray,
    NpyArray,
    is_store,
    open_folder_lazy,
    open_store,
    shard,
    shard_range,
    write_store,
)

CFG = PatchConfig(size=16, stride=8)


@pytest.fixture(scope="module")
def eager() -> ImageSet:
    return make_phantom(12, size=64, seed=3).to_image_set()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, eager: ImageSet) -> Path:
    """The phantom as a folder: PNG images, 0/255 PNG masks, labels.csv (CSV order != file order)."""
    root = tmp_path_factory.mktemp("folder")
    (root / "masks").mkdir()
    order = list(range(len(eager)))[::-1]
    lines = ["name,label"]
    for i in order:
        name = f"scan{i:03d}.png"
        Image.fromarray(eager.images[i]).save(root / name)
        Image.fromarray((eager.masks[i] * 255).astype(np.uint8)).save(root / "masks" / name)  # type: ignore[index]
        lines.append(f"{name},{int(eager.labels[i])}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def _same(a: ImageSet, b: ImageSet) -> None:
    assert len(a) == len(b) and a.shape == b.shape and a.names == b.names
    np.testing.assert_array_equal(np.asarray(a.images), np.asarray(b.images))
    np.testing.assert_array_equal(a.labels, b.labels)
    assert (a.masks is None) == (b.masks is None)
    if a.masks is not None and b.masks is not None:
        np.testing.assert_array_equal(np.asarray(a.masks), np.asarray(b.masks))


def _index_equal(a: ImageSet, b: ImageSet) -> None:
    ia, ib = index_image_set(a, CFG), index_image_set(b, CFG)
    for f in ("image", "y", "x", "label"):
        np.testing.assert_array_equal(getattr(ia, f), getattr(ib, f))
    assert len(ia) > 0
    sa = PatchSampler(a.images, ia, out_size=8)
    sb = PatchSampler(b.images, ib, out_size=8)
    ra, rb = np.random.default_rng(5), np.random.default_rng(5)
    for _ in range(3):
        pa, la = sa.sample(17, ra)
        pb, lb = sb.sample(17, rb)
        np.testing.assert_array_equal(pa, pb)
        np.testing.assert_array_equal(la, lb)


def test_store_round_trip_and_layout(tmp_path: Path, eager: ImageSet) -> None:
    info = write_store(eager, tmp_path / "st", source="phantom")
    assert info.count == 12 and (info.height, info.width) == (64, 64) and info.masks
    assert is_store(tmp_path / "st") and not is_store(tmp_path)
    # the documented layout: plain .npy files numpy reads by itself
    assert np.array_equal(np.load(tmp_path / "st" / "images.npy"), eager.images)
    assert np.load(tmp_path / "st" / "masks.npy").dtype == np.uint8
    assert np.load(tmp_path / "st" / "labels.npy").dtype == np.int64
    assert tuple(np.load(tmp_path / "st" / "names.npy")) == eager.names
    meta = json.loads((tmp_path / "st" / "sldp_store.json").read_text())
    assert meta["format"] == "sldp-image-store" and meta["version"] == 1 and meta["count"] == 12
    for mmap in (False, True):
        st = open_store(tmp_path / "st", mmap=mmap)
        assert isinstance(st.images, np.memmap if mmap else NpyArray)
        _same(st, eager)
    # no temporary folder left beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["st"]


def test_npy_array_indexing_matches_numpy(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 255, (7, 9, 11), dtype=np.uint8)
    np.save(tmp_path / "a.npy", ref)
    a = NpyArray(tmp_path / "a.npy")
    assert a.shape == ref.shape and a.ndim == 3 and a.dtype == np.uint8 and len(a) == 7
    keys = [3, -1, (2, slice(1, 5), slice(2, 9)), (4, slice(None), 3), (1, 2), (0, slice(3, 3)),
            (5, slice(2, 8, 2)), slice(2, 5), slice(None, None, -2), np.array([4, 0, 4]),
            np.arange(7) % 2 == 0, (np.array([1, 6]), slice(0, 2)), (2, Ellipsis, 1),
            (np.array([1, 6]), np.array([0, 8])), (np.array([[1], [2]]), 3), [0, 2]]
    for k in keys:
        np.testing.assert_array_equal(a[k], ref[k], err_msg=repr(k))
    np.testing.assert_array_equal(np.asarray(a), ref)
    with pytest.raises(IndexError):
        a[7]
    v = a.take_rows([5, 1])
    assert isinstance(v, LazyArray) and v.shape == (2, 9, 11)
    np.testing.assert_array_equal(v[1, 2:4], ref[1, 2:4])
    np.testing.assert_array_equal(np.asarray(v.take_rows(slice(1, None))), ref[[1]])
    # pickles without its file descriptor (DataLoader workers, torch.distributed spawn)
    b = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(b[6], ref[6])


def test_lazy_folder_equals_eager_folder(folder: Path) -> None:
    lazy = open_folder_lazy(folder, cache_bytes=3 * 64 * 64)  # 3 decoded images: evictions happen
    assert not isinstance(lazy.images, np.ndarray)
    _same(lazy, load_folder(folder))
    again = pickle.loads(pickle.dumps(lazy))  # DataLoader workers / spawned ranks get a working copy
    _same(again, load_folder(folder))
    _index_equal(lazy, load_folder(folder))
    resized = open_folder_lazy(folder, size=32)
    _same(resized, load_folder(folder, size=32))


def test_lazy_folder_reports_a_bad_image_when_read(folder: Path, tmp_path: Path) -> None:
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    for f in (bad / "scan005.png", bad / "masks" / "scan005.png"):
        Image.fromarray(np.zeros((40, 40), np.uint8)).save(f)
    data = open_folder_lazy(bad)  # only the first listed item is read here
    with pytest.raises(DataError, match=r"scan005\.png: shape \(40, 40\) differs from scan011\.png"):
        np.asarray(data.images)
    (bad / "scan004.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"scan004\.png"):
        data.images[data.names.index("scan004.png")]


def test_converting_a_lazy_folder_decodes_each_file_once(folder: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import sldpack.medical.folders as folders

    seen: list[str] = []
    real = folders.read_image_file

    def counting(path: Any, **kw: Any) -> Any:
        seen.append(str(path))
        return real(path, **kw)

    monkeypatch.setattr(folders, "read_image_file", counting)
    info = convert(folder, tmp_path / "st")  # images.npy and masks.npy are written in lockstep
    assert info.count == 12 and info.masks
    assert len(seen) == 24 and len(set(seen)) == 24  # 12 images + 12 masks, none decoded twice


def _mask_of_other_shape(root: Path, stem: str) -> None:
    Image.fromarray(np.full((40, 40), 255, np.uint8)).save(root / "masks" / f"{stem}.png")


def _image_of_other_shape(root: Path, stem: str) -> None:
    for f in (root / f"{stem}.png", root / "masks" / f"{stem}.png"):
        Image.fromarray(np.zeros((40, 40), np.uint8)).save(f)


def _garbage_image(root: Path, stem: str) -> None:
    (root / f"{stem}.png").write_bytes(b"not a png")


def _garbage_mask(root: Path, stem: str) -> None:
    (root / "masks" / f"{stem}.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")


def _missing_mask(root: Path, stem: str) -> None:
    (root / "masks" / f"{stem}.png").unlink()


def _eager_error(root: Path, size: int | None) -> str:
    with pytest.raises(DataError) as e:
        load_folder(root, size=size)
    return str(e.value)


def _read_lazily(root: Path, size: int | None) -> None:
    data = open_folder_lazy(root, size=size, cache_bytes=0)  # reads the first item only
    np.asarray(data.images)
    np.asarray(data.masks)


def _lazy_error(root: Path, size: int | None) -> str:
    with pytest.raises(DataError) as e:
        _read_lazily(root, size)
    return str(e.value)


_DEFECTS = [
    (_mask_of_other_shape, r"masks/{stem}\.png: mask shape \(40, 40\) differs from image {stem}\.png shape \(64, 64\)"),
    (_garbage_image, r"{stem}\.png: cannot decode image"),
    (_garbage_mask, r"masks/{stem}\.png: cannot decode image"),
    (_missing_mask, r"\({stem}\.png\): names '{stem}' but .*masks has no mask file"),
]
_CASES = [(d, p, stem, size) for d, p in _DEFECTS for stem in ("scan011", "scan005") for size in (None, 32)] + [
    # an image of another shape than the set's (without size=): as the first item read, it fixes the shape
    (_image_of_other_shape, r"{stem}\.png: shape \(40, 40\) differs from scan011\.png \(64, 64\)", "scan005", None),
    (_image_of_other_shape, r"scan010\.png: shape \(64, 64\) differs from {stem}\.png \(40, 40\)", "scan011", None),
]


@pytest.mark.parametrize(("defect", "pattern", "stem", "size"), _CASES)
def test_a_defective_folder_fails_alike_eager_and_lazy(folder: Path, tmp_path: Path, defect: Any, pattern: str,
                                                       stem: str, size: int | None) -> None:
    # one per-item reader: the eager and the lazy loader refuse the same defect with the same message (the
    # lazy one used to resize a mask of another shape than its image silently when size= was given)
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    defect(bad, stem)
    eager_msg, lazy_msg = _eager_error(bad, size), _lazy_error(bad, size)
    assert eager_msg == lazy_msg
    assert re.search(pattern.format(stem=stem), eager_msg), eager_msg


def test_store_patch_index_and_samples_equal_eager(tmp_path: Path, eager: ImageSet) -> None:
    write_store(eager, tmp_path / "st")
    for mmap in (False, True):
        _index_equal(open_store(tmp_path / "st", mmap=mmap), eager)
    st = open_store(tmp_path / "st")
    idx = build_patch_index(st.masks, st.labels, CFG)  # type: ignore[arg-type]
    np.testing.assert_array_equal(cut_patches(st.images, idx.image[:9], idx.y[:9], idx.x[:9], 16),
                                  cut_patches(eager.images, idx.image[:9], idx.y[:9], idx.x[:9], 16))


def test_subset_of_a_store_is_lazy_and_equal(tmp_path: Path, eager: ImageSet) -> None:
    write_store(eager, tmp_path / "st")
    st = open_store(tmp_path / "st")
    sel = [7, 2, 9, 0]
    sub = st.subset(sel)
    assert isinstance(sub.images, LazyArray) and isinstance(sub.masks, LazyArray)
    _same(sub, eager.subset(sel))
    _index_equal(sub, eager.subset(sel))


def test_convert_folder_and_npz_and_open_through_loaders(tmp_path: Path, folder: Path, eager: ImageSet) -> None:
    info = convert(folder, tmp_path / "from_folder")
    assert info.count == 12
    _same(open_store(tmp_path / "from_folder"), load_folder(folder))
    # load_images / load_folder open a store folder lazily
    via = load_images(tmp_path / "from_folder")
    assert isinstance(via.images, NpyArray)
    _same(via, load_folder(folder))
    with pytest.raises(UsageError, match="convert it again"):
        load_folder(tmp_path / "from_folder", size=32)
    np.savez(tmp_path / "d.npz", images=eager.images, masks=eager.masks, labels=eager.labels)
    convert(tmp_path / "d.npz", tmp_path / "from_npz")
    assert np.array_equal(np.asarray(open_store(tmp_path / "from_npz").images), eager.images)
    with pytest.raises(UsageError, match="already exists"):
        convert(tmp_path / "d.npz", tmp_path / "from_npz")
    convert(folder, tmp_path / "from_npz", overwrite=True, size=32)  # replaces a store
    assert open_store(tmp_path / "from_npz").shape == (32, 32)
    (tmp_path / "plain").mkdir()
    with pytest.raises(UsageError, match="not a store"):
        convert(folder, tmp_path / "plain", overwrite=True)


def test_open_store_rejects_damaged_stores(tmp_path: Path, eager: ImageSet) -> None:
    with pytest.raises(DataError, match="not an sldp image store"):
        open_store(tmp_path)
    write_store(eager, tmp_path / "st")
    img = tmp_path / "st" / "images.npy"
    data = img.read_bytes()
    img.write_bytes(data[:-10])
    with pytest.raises(DataError, match=r"images\.npy: truncated"):
        open_store(tmp_path / "st")
    np.save(img, np.zeros((12, 64, 63), np.uint8))
    with pytest.raises(DataError, match=r"images\.npy: uint8 \[12, 64, 63\], the store needs"):
        open_store(tmp_path / "st")
    img.write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"images\.npy: not an \.npy file"):
        open_store(tmp_path / "st")
    meta = tmp_path / "st" / "sldp_store.json"
    meta.write_text(json.dumps({"format": "sldp-image-store", "version": 2}))
    with pytest.raises(DataError, match="store version 2"):
        open_store(tmp_path / "st")


@pytest.mark.parametrize(("n", "world"), [(0, 1), (1, 3), (10, 3), (12, 4), (20_000, 7)])
def test_shard_ranges_are_disjoint_and_cover(n: int, world: int) -> None:
    ranges = [shard_range(n, r, world) for r in range(world)]
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    for (a0, a1), (b0, _) in itertools.pairwise(ranges):
        assert a1 == b0 and a0 <= a1
    sizes = [b - a for a, b in ranges]
    assert max(sizes) - min(sizes) <= 1


def test_shard_views_are_disjoint_cover_and_stay_on_disk(tmp_path: Path, eager: ImageSet) -> None:
    write_store(eager, tmp_path / "st")
    for mmap in (False, True):
        st = open_store(tmp_path / "st", mmap=mmap)
        parts = [shard(st, r, 5) for r in range(5)]
        names = [n for p in parts for n in p.names]
        assert names == list(eager.names)  # disjoint, covering, in order
        assert all(not isinstance(p.images, np.ndarray) or isinstance(p.images, np.memmap) for p in parts)
        np.testing.assert_array_equal(np.concatenate([np.asarray(p.images) for p in parts]), eager.images)
        np.testing.assert_array_equal(np.concatenate([p.labels for p in parts]), eager.labels)
        # a rank indexes its own shard: the same patches as the full index restricted to its images
        start, stop = shard_range(len(eager), 2, 5)
        full = index_image_set(eager, CFG).for_images(range(start, stop))
        own = index_image_set(parts[2], CFG)
        np.testing.assert_array_equal(own.image + start, full.image)
        np.testing.assert_array_equal(own.y, full.y)
    # in-memory sets shard too (views, no copy)
    p = shard(eager, 1, 2)
    assert np.shares_memory(p.images, eager.images)
    for bad in ((0, 0), (2, 2), (-1, 2)):
        with pytest.raises(UsageError):
            shard(eager, *bad)


def test_shard_reads_only_its_own_images(tmp_path: Path, eager: ImageSet) -> None:
    write_store(eager, tmp_path / "st")
    st = open_store(tmp_path / "st")
    part = shard(st, 1, 3)  # images 4..7
    read: list[int] = []
    images = part.images
    assert isinstance(images, NpyArray)
    orig = NpyArray._read_item

    def spy(self: NpyArray, row: int, rest: tuple[object, ...]) -> np.ndarray:
        read.append(row)
        return orig(self, row, rest)

    NpyArray._read_item = spy  # type: ignore[method-assign]
    try:
        idx = index_image_set(part, CFG)
        PatchSampler(part.images, idx).sample(32, np.random.default_rng(0))
    finally:
        NpyArray._read_item = orig  # type: ignore[method-assign]
    assert read and set(read) <= {4, 5, 6, 7}


def test_dicom_folder_lazy_and_converted_equal_eager(tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    def _write_dicom(path: Path, stored: np.ndarray, **attrs: object) -> None:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR image storage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Rows, ds.Columns = stored.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        for k, v in attrs.items():
            setattr(ds, k, v)
        ds.PixelData = stored.tobytes()
        ds.save_as(str(path), enforce_file_format=True)

    rng = np.random.default_rng(4)
    root = tmp_path / "dcm"
    (root / "masks").mkdir(parents=True)
    lines = ["name,label"]
    for i in range(4):
        _write_dicom(root / f"ct{i}.dcm", rng.integers(-1000, 2000, (40, 40)).astype(np.int16),
                     RescaleSlope=1, RescaleIntercept=0, WindowCenter=40, WindowWidth=400)
        mask = np.zeros((40, 40), np.uint8)
        mask[5:30, 8:35] = 255
        Image.fromarray(mask).save(root / "masks" / f"ct{i}.png")
        lines.append(f"ct{i}.dcm,{i % 2}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    eager = load_folder(root)
    _same(open_folder_lazy(root), eager)
    _same(open_folder_lazy(root, window=(0.0, 1000.0)), load_folder(root, window=(0.0, 1000.0)))
    convert(root, tmp_path / "st")
    _same(open_store(tmp_path / "st"), eager)


def test_montgomery_store_gives_the_same_patches(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "montgomery_512.npz"
    if not src.is_file():
        pytest.skip(f"{src} is absent")
    eager = load_images(src)
    convert(src, tmp_path / "mont")
    st = open_store(tmp_path / "mont")
    cfg = PatchConfig(size=128, stride=64)
    a, b = index_image_set(eager, cfg), index_image_set(st, cfg)
    for f in ("image", "y", "x", "label"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    pa, la = PatchSampler(eager.images, a, out_size=32).sample(64, np.random.default_rng(1))
    pb, lb = PatchSampler(st.images, b, out_size=32).sample(64, np.random.default_rng(1))
    np.testing.assert_array_equal(pa, pb)
    np.testing.assert_array_equal(la, lb)
