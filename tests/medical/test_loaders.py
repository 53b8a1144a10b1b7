"""Loaders: npz (plain and MedMNIST), image folders, DICOM, splits; corrupt inputs give clear DataErrors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sldpack.errors import DataError, UsageError
from sldpack.medical.loaders import (
    apply_window,
    load_folder,
    load_images,
    load_medmnist_npz,
    load_npz,
    read_dicom,
    read_image_file,
    split_indices,
)

RNG = np.random.default_rng(0)


def _arrays(n: int = 4, h: int = 12, w: int = 10) -> dict[str, np.ndarray]:
    images = RNG.integers(0, 256, size=(n, h, w), dtype=np.uint8)
    masks = (RNG.random((n, h, w)) < 0.5).astype(np.uint8)
    labels = np.array([0, 1] * (n // 2), dtype=np.uint8)
    return {"images": images, "masks": masks, "labels": labels}


# --- npz ----------------------------------------------------------------------------------------------------


def test_load_npz_roundtrip(tmp_path: Path) -> None:
    a = _arrays()
    names = np.array([f"img{i}.png" for i in range(4)])
    np.savez_compressed(tmp_path / "d.npz", **a, names=names)
    ds = load_npz(tmp_path / "d.npz")
    assert np.array_equal(ds.images, a["images"]) and ds.masks is not None
    assert np.array_equal(ds.masks, a["masks"])
    assert ds.labels.dtype == np.int64 and ds.labels.tolist() == [0, 1, 0, 1]
    assert ds.names == tuple(names.tolist())
    assert len(ds) == 4 and ds.shape == (12, 10)
    sub = ds.subset([3, 1])
    assert sub.names == ("img3.png", "img1.png") and sub.labels.tolist() == [1, 1]


def test_load_npz_masks_255_and_default_names(tmp_path: Path) -> None:
    a = _arrays()
    a["masks"] = a["masks"] * 255
    np.savez(tmp_path / "d.npz", **a)
    ds = load_npz(tmp_path / "d.npz")
    assert ds.masks is not None and set(np.unique(ds.masks).tolist()) <= {0, 1}
    assert ds.names[0] == "image_00000"


def test_truncated_npz(tmp_path: Path) -> None:
    np.savez_compressed(tmp_path / "d.npz", **_arrays())
    raw = (tmp_path / "d.npz").read_bytes()
    bad = tmp_path / "cut.npz"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"cut\.npz: not a readable \.npz"):
        load_npz(bad)


def test_corrupt_member_npz(tmp_path: Path) -> None:
    np.savez_compressed(tmp_path / "d.npz", **_arrays(n=40, h=64, w=64))
    raw = bytearray((tmp_path / "d.npz").read_bytes())
    mid = len(raw) // 3
    raw[mid : mid + 64] = bytes(64)  # damage compressed data inside a member, keep the zip directory
    (tmp_path / "d.npz").write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"d\.npz: array '\w+' is corrupt or truncated"):
        load_npz(tmp_path / "d.npz")


def test_missing_key(tmp_path: Path) -> None:
    a = _arrays()
    del a["labels"]
    np.savez(tmp_path / "d.npz", **a)
    with pytest.raises(DataError, match=r"d\.npz: missing array 'labels'"):
        load_npz(tmp_path / "d.npz")


def test_mismatched_shapes(tmp_path: Path) -> None:
    a = _arrays()
    a["masks"] = a["masks"][:, :-1]
    np.savez(tmp_path / "m.npz", **a)
    with pytest.raises(DataError, match=r"m\.npz: 'masks' has shape \(4, 11, 10\), images have \(4, 12, 10\)"):
        load_npz(tmp_path / "m.npz")
    b = _arrays()
    b["labels"] = b["labels"][:3]
    np.savez(tmp_path / "l.npz", **b)
    with pytest.raises(DataError, match="3 labels for 4 images"):
        load_npz(tmp_path / "l.npz")


def test_wrong_dtypes_and_pickle(tmp_path: Path) -> None:
    a = _arrays()
    a["images"] = a["images"].astype(np.float32)
    np.savez(tmp_path / "f.npz", **a)
    with pytest.raises(DataError, match="values stored as float"):
        load_npz(tmp_path / "f.npz")
    b = _arrays()
    b["masks"] = b["masks"] * 3
    np.savez(tmp_path / "v.npz", **b)
    with pytest.raises(DataError, match=r"'masks' values"):
        load_npz(tmp_path / "v.npz")
    c = _arrays()
    np.savez(tmp_path / "o.npz", images=c["images"], labels=np.array([0, 1, "x", None], dtype=object))
    with pytest.raises(DataError, match="without pickle"):
        load_npz(tmp_path / "o.npz")
    with pytest.raises(DataError, match="no such file"):
        load_npz(tmp_path / "absent.npz")


def test_medmnist(tmp_path: Path) -> None:
    tr = RNG.integers(0, 256, size=(6, 28, 28), dtype=np.uint8)
    rgb = RNG.integers(0, 256, size=(3, 28, 28, 3), dtype=np.uint8)
    np.savez(
        tmp_path / "m.npz",
        train_images=tr,
        train_labels=np.array([[0], [1], [1], [0], [1], [0]], dtype=np.uint8),
        test_images=rgb,
        test_labels=np.array([1, 0, 1], dtype=np.uint8),
    )
    splits = load_medmnist_npz(tmp_path / "m.npz")
    assert sorted(splits) == ["test", "train"]
    assert splits["train"].labels.tolist() == [0, 1, 1, 0, 1, 0] and splits["train"].masks is None
    assert splits["test"].images.shape == (3, 28, 28)
    px = rgb[0, 0, 0].astype(int)
    assert splits["test"].images[0, 0, 0] == (px[0] * 299 + px[1] * 587 + px[2] * 114 + 500) // 1000
    assert splits["train"].names[2] == "train_00002"
    assert load_images(tmp_path / "m.npz", split="test").labels.tolist() == [1, 0, 1]
    with pytest.raises(UsageError, match="choose its split"):
        load_images(tmp_path / "m.npz")
    with pytest.raises(UsageError, match="no split 'val'"):
        load_images(tmp_path / "m.npz", split="val")


def test_medmnist_errors(tmp_path: Path) -> None:
    np.savez(tmp_path / "half.npz", train_images=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DataError, match="'train_images' but not 'train_labels'"):
        load_medmnist_npz(tmp_path / "half.npz")
    np.savez(tmp_path / "none.npz", foo=np.zeros(3))
    with pytest.raises(DataError, match="no MedMNIST split"):
        load_medmnist_npz(tmp_path / "none.npz")
    np.savez(tmp_path / "ml.npz", train_images=np.zeros((2, 4, 4), np.uint8), train_labels=np.zeros((2, 5)))
    with pytest.raises(DataError, match="multi-label"):
        load_medmnist_npz(tmp_path / "ml.npz")


# --- folders ------------------------------------------------------------------------------------------------


def _make_folder(root: Path, n: int = 4, size: tuple[int, int] = (20, 16)) -> list[np.ndarray]:
    (root / "masks").mkdir(parents=True)
    imgs = []
    exts = [".png", ".tif", ".png", ".png"]
    for i in range(n):
        img = RNG.integers(0, 256, size=size, dtype=np.uint8)
        imgs.append(img)
        Image.fromarray(img).save(root / f"img{i}{exts[i % 4]}")
        m = np.zeros(size, np.uint8)
        m[2:10, 3:9] = 255
        Image.fromarray(m).save(root / "masks" / f"img{i}.png")
    rows = ["name,label"] + [f"img{i}{exts[i % 4]},{i % 2}" for i in range(n)]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return imgs


def test_load_folder(tmp_path: Path) -> None:
    imgs = _make_folder(tmp_path)
    (tmp_path / "notes.txt").write_text("not listed, ignored")
    ds = load_folder(tmp_path)
    assert ds.names == ("img0.png", "img1.tif", "img2.png", "img3.png")
    assert ds.labels.tolist() == [0, 1, 0, 1]
    assert all(np.array_equal(a, b) for a, b in zip(ds.images, imgs, strict=True))
    assert ds.masks is not None and int(ds.masks[0].sum()) == 48 and ds.masks[0, 2, 3] == 1
    # a second CSV selects and orders a subset; names may be stems
    (tmp_path / "test.csv").write_text("name,label\nimg3,1\nimg0,0\n")
    sub = load_folder(tmp_path, labels_csv=tmp_path / "test.csv")
    assert sub.names == ("img3.png", "img0.png")
    resized = load_folder(tmp_path, size=8)
    assert resized.images.shape == (4, 8, 8) and resized.masks is not None
    assert set(np.unique(resized.masks).tolist()) <= {0, 1}
    assert load_images(tmp_path).names == ds.names


def test_stem_with_dots(tmp_path: Path) -> None:
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.full((6, 6), 7, np.uint8)).save(tmp_path / "scan.v2.png")
    Image.fromarray(np.full((6, 6), 255, np.uint8)).save(tmp_path / "masks" / "scan.v2.tif")
    (tmp_path / "labels.csv").write_text("name,label\nscan.v2,1\n")
    ds = load_folder(tmp_path)
    assert ds.names == ("scan.v2.png",) and ds.masks is not None and int(ds.masks.sum()) == 36


def test_jpeg_and_rgb_are_read_as_gray(tmp_path: Path) -> None:
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(tmp_path / "c.jpg", quality=95)
    g = read_image_file(tmp_path / "c.jpg")
    assert g.shape == (8, 8) and abs(int(g.mean()) - 60) < 4  # 0.299 * 200
    Image.fromarray(np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)).save(tmp_path / "d.png")
    assert read_image_file(tmp_path / "d.png").tolist() == [[0, 64], [128, 255]]


def test_csv_naming_missing_image(tmp_path: Path) -> None:
    _make_folder(tmp_path)
    (tmp_path / "labels.csv").write_text("name,label\nimg0.png,0\nghost.png,1\n")
    with pytest.raises(DataError, match=r"labels\.csv: line 3: names 'ghost\.png' but .* has no image file"):
        load_folder(tmp_path)
    # a listed full file name must exist as written (img1 exists only as .tif)
    (tmp_path / "labels.csv").write_text("name,label\nimg1.png,0\n")
    with pytest.raises(DataError, match=r"line 2: names 'img1\.png'"):
        load_folder(tmp_path)


def test_non_image_file_in_folder(tmp_path: Path) -> None:
    _make_folder(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "labels.csv").write_text("name,label\nimg0.png,0\nnotes.txt,1\n")
    with pytest.raises(DataError, match=r"line 3: 'notes\.txt' is not a supported image type"):
        load_folder(tmp_path)
    (tmp_path / "fake.png").write_text("this is not a PNG")
    (tmp_path / "masks" / "fake.png").write_bytes((tmp_path / "masks" / "img0.png").read_bytes())
    (tmp_path / "labels.csv").write_text("name,label\nfake.png,0\n")
    # the unlisted images are checked first (before any decoding), so name them as left out on purpose
    with pytest.raises(DataError, match=r"have no row"):
        load_folder(tmp_path)
    with pytest.raises(DataError, match=r"fake\.png: cannot decode image"):
        load_folder(tmp_path, unlabelled="skip")


def test_folder_mask_problems(tmp_path: Path) -> None:
    _make_folder(tmp_path)
    (tmp_path / "masks" / "img2.png").unlink()
    with pytest.raises(DataError, match=r"img2\.png.*no mask file"):
        load_folder(tmp_path)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "masks" / "img2.png")
    with pytest.raises(DataError, match=r"img2\.png: mask shape \(5, 5\) differs"):
        load_folder(tmp_path)


def test_folder_shape_and_csv_problems(tmp_path: Path) -> None:
    _make_folder(tmp_path)
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(tmp_path / "img2.png")
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(tmp_path / "masks" / "img2.png")
    with pytest.raises(DataError, match="--resize N; sldp data convert: --size N"):
        load_folder(tmp_path)
    assert load_folder(tmp_path, size=(10, 12)).images.shape == (4, 10, 12)
    csv = tmp_path / "labels.csv"
    csv.write_text("file,diagnosis\nimg0.png,0\n")
    with pytest.raises(DataError, match="columns name,label"):
        load_folder(tmp_path)
    csv.write_text("name,label\nimg0.png,yes\n")
    with pytest.raises(DataError, match="line 2: label 'yes' is not an integer"):
        load_folder(tmp_path)
    csv.write_text("name,label\nimg0.png,0\nimg0,1\n")
    with pytest.raises(DataError, match="listed twice"):
        load_folder(tmp_path)
    csv.write_text("name,label\n")
    with pytest.raises(DataError, match="no rows"):
        load_folder(tmp_path)
    csv.unlink()
    with pytest.raises(DataError, match="labels CSV not found"):
        load_folder(tmp_path)
    with pytest.raises(DataError, match="not a folder"):
        load_folder(tmp_path / "nope")


# --- DICOM --------------------------------------------------------------------------------------------------


def _write_dicom(path: Path, stored: np.ndarray, **attrs: object) -> None:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR image storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if stored.dtype == np.int16 else 0
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.PixelData = stored.tobytes()
    ds.save_as(str(path), enforce_file_format=True)


def test_apply_window_formula() -> None:
    # CT soft-tissue window c=40, w=400: <= -160 -> 0, > 239 -> 255, linear in between
    x = np.array([-1000, -160, -159.5, 39.5, 239, 239.5, 3000])
    y = apply_window(x, 40, 400)
    assert y[0] == 0 and y[1] == 0 and y[-1] == 255 and y[-2] == 255
    assert y[3] == 128  # (39.5 - 39.5) / 399 + 0.5 = 0.5 -> 127.5 -> 128
    assert apply_window(x, 40, 400, invert=True).tolist() == (255 - y).tolist()
    assert apply_window(np.array([0.0, 50.0, 100.0]), 50, 100, function="LINEAR_EXACT").tolist() == [0, 128, 255]
    with pytest.raises(DataError, match="VOILUTFunction"):
        apply_window(x, 0, 10, function="GAMMA")


def test_read_dicom_rescale_and_window(tmp_path: Path) -> None:
    stored = np.array([[0, 100], [200, 1200]], dtype=np.uint16)
    # value = stored * 2 - 1024 -> [[-1024, -824], [-624, 1376]]; window c=-624 w=401 -> [-824.5, -424.5]
    _write_dicom(
        tmp_path / "a.dcm", stored, RescaleSlope=2, RescaleIntercept=-1024, WindowCenter=-624, WindowWidth=401
    )
    out = read_dicom(tmp_path / "a.dcm")
    expected = apply_window(stored.astype(float) * 2 - 1024, -624, 401)
    assert out.tolist() == expected.tolist() == [[0, 0], [128, 255]]
    override = read_dicom(tmp_path / "a.dcm", window=(0, 4000))  # [-2000.5, 1999.5]
    assert override.tolist() == apply_window(stored.astype(float) * 2 - 1024, 0, 4000).tolist()


def test_read_dicom_signed_values(tmp_path: Path) -> None:
    stored = np.array([[-1000, -1], [0, 1000]], dtype=np.int16)  # PixelRepresentation 1 (signed)
    _write_dicom(tmp_path / "s.dcm", stored, RescaleSlope=1, RescaleIntercept=-24, WindowCenter=0,
                 WindowWidth=2001, VOILUTFunction="LINEAR")
    expected = apply_window(stored.astype(float) - 24, 0, 2001)
    assert read_dicom(tmp_path / "s.dcm").tolist() == expected.tolist()
    assert expected[0, 0] == 0 and 120 < expected[1, 0] < 128


def test_read_dicom_monochrome1_and_no_window(tmp_path: Path) -> None:
    stored = np.array([[10, 20], [30, 50]], dtype=np.uint16)
    _write_dicom(tmp_path / "m1.dcm", stored, PhotometricInterpretation="MONOCHROME1")
    out = read_dicom(tmp_path / "m1.dcm")
    # no window: full range 10..50 -> 0, 64, 128, 255, then inverted (MONOCHROME1: low values bright)
    assert out.tolist() == [[255, 191], [127, 0]]


def test_dicom_in_folder_and_errors(tmp_path: Path) -> None:
    stored = np.arange(12, dtype=np.uint16).reshape(3, 4) * 100
    _write_dicom(tmp_path / "p.dcm", stored, WindowCenter=550, WindowWidth=1101)
    (tmp_path / "labels.csv").write_text("name,label\np.dcm,1\n")
    ds = load_folder(tmp_path)
    assert ds.images.shape == (1, 3, 4) and ds.masks is None and ds.names == ("p.dcm",)
    (tmp_path / "bad.dcm").write_bytes(b"\x00" * 10 + b"garbage")
    with pytest.raises(DataError, match=r"bad\.dcm: not a readable DICOM file"):
        read_dicom(tmp_path / "bad.dcm")


def test_dicom_without_pydicom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pydicom", None)  # import pydicom -> ImportError
    with pytest.raises(DataError, match=r"x\.dcm: reading DICOM needs .*sldpack\[dicom\]"):
        read_dicom(tmp_path / "x.dcm")


# --- splits -------------------------------------------------------------------------------------------------


def test_split_indices_partition_stratified_deterministic() -> None:
    labels = np.array([0] * 80 + [1] * 58)
    tr, te = split_indices(138, (0.7, 0.3), seed=0, labels=labels)
    assert np.array_equal(np.sort(np.concatenate([tr, te])), np.arange(138))
    assert np.intersect1d(tr, te).size == 0
    assert (int((labels[tr] == 0).sum()), int((labels[tr] == 1).sum())) == (56, 41)  # 0.7*80, round(0.7*58)
    again = split_indices(138, (0.7, 0.3), seed=0, labels=labels)
    assert all(np.array_equal(a, b) for a, b in zip((tr, te), again, strict=True))
    other = split_indices(138, (0.7, 0.3), seed=1, labels=labels)
    assert not np.array_equal(tr, other[0])
    three = split_indices(10, (0.5, 0.25, 0.25), seed=3)
    assert [p.size for p in three] == [5, 3, 2]  # 5, 2.5, 2.5: the tied remainder goes to the earlier part


def test_split_keeps_groups_together() -> None:
    groups = np.repeat(np.arange(20), 3)  # 20 patients x 3 images
    labels = np.repeat(np.arange(20) % 2, 3)
    a, b = split_indices(60, (0.5, 0.5), seed=0, labels=labels, groups=groups)
    assert np.intersect1d(groups[a], groups[b]).size == 0
    assert a.size == b.size == 30


def test_split_bad_arguments() -> None:
    with pytest.raises(UsageError, match="sum to 1"):
        split_indices(10, (0.5, 0.4))
    with pytest.raises(UsageError, match="labels has"):
        split_indices(10, (0.5, 0.5), labels=[0, 1])


def test_montgomery_file(shared_data: Path) -> None:
    ds = load_images(shared_data / "montgomery_512.npz")
    assert ds.images.shape == (138, 512, 512) and ds.masks is not None
    assert np.bincount(ds.labels).tolist() == [80, 58]
    assert set(np.unique(ds.masks[:5]).tolist()) == {0, 1}
    # names are MCUCXR_<patient>_<label>.png: one image per patient, and the name encodes the label
    patients = [n.split("_")[1] for n in ds.names]
    assert len(set(patients)) == 138
    assert [int(n.split("_")[2][0]) for n in ds.names] == ds.labels.tolist()


def test_folder_images_without_a_labels_row(tmp_path: Path) -> None:
    from sldpack.medical.loaders import count_unlabelled

    _make_folder(tmp_path)
    (tmp_path / "labels.csv").write_text("name,label\nimg0.png,0\nimg3.png,1\n")
    with pytest.raises(DataError, match=r"2 image file\(s\) .* have no row \(the first: 'img1\.tif'\)"):
        load_folder(tmp_path)
    ds = load_folder(tmp_path, unlabelled="skip")
    assert ds.names == ("img0.png", "img3.png")
    assert count_unlabelled(tmp_path, ds) == 2
