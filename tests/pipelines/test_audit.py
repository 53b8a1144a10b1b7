"""Privacy audit: similarity measures, resizing, and the verdict on constructed data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import sldpack
from sldpack import ArchSpec, DataError, InitSpec, Manifest, Preprocessing, Provenance, Tensor, UsageError
from sldpack.pipelines.audit import (
    AuditConfig,
    RealImages,
    RealPatches,
    area_resize,
    audit_file,
    audit_images,
    distilled_pixels,
    load_real_images,
    ncc,
    ncc_matrix,
    save_sheet,
    ssim,
    ssim_batch,
)


def _smooth_images(n: int, size: int, seed: int) -> np.ndarray:
    """Distinct, image-like u8 pictures: random low-frequency fields (not noise, not copies)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, size, size), dtype=np.float64)
    for i in range(n):
        f = np.zeros((size, size))
        for _ in range(4):
            a, b, ph = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 2 * np.pi)
            f += rng.normal() * np.sin(2 * np.pi * (a * xx + b * yy) + ph)
        out[i] = f
    out -= out.min(axis=(1, 2), keepdims=True)
    out /= out.max(axis=(1, 2), keepdims=True)
    return np.round(out * 255).astype(np.uint8)


# --- NCC -----------------------------------------------------------------------------------------

def test_ncc_properties() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.random((2, 9, 11))
    assert ncc(x, x) == pytest.approx(1.0, abs=1e-12)
    assert ncc(x, -x) == pytest.approx(-1.0, abs=1e-12)
    assert ncc(x, y) == pytest.approx(ncc(y, x), abs=1e-15)
    assert ncc(x, 3.5 * x + 0.7) == pytest.approx(1.0, abs=1e-12)  # brightness/contrast invariant
    assert -1.0 <= ncc(x, y) <= 1.0
    assert ncc(np.full((4, 4), 2.0), x[:4, :4]) == 0.0  # constant image: no structure, defined as 0
    # equals the Pearson correlation
    assert ncc(x, y) == pytest.approx(np.corrcoef(x.ravel(), y.ravel())[0, 1], abs=1e-12)


def test_ncc_matrix_matches_pairwise() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.random((3, 2, 5, 5)), rng.random((4, 2, 5, 5))
    m = ncc_matrix(a, b)
    assert m.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            assert m[i, j] == pytest.approx(ncc(a[i], b[j]), abs=1e-12)
    with pytest.raises(UsageError):
        ncc(a[0], b[0, 0])


# --- SSIM ----------------------------------------------------------------------------------------

def _ssim_reference(x: np.ndarray, y: np.ndarray, w: int = 7) -> float:
    """Direct loop over every valid w x w window (uniform weights, population statistics)."""
    c1, c2 = 0.01**2, 0.03**2
    vals = []
    for i in range(x.shape[0] - w + 1):
        for j in range(x.shape[1] - w + 1):
            a, b = x[i:i + w, j:j + w], y[i:i + w, j:j + w]
            ma, mb = a.mean(), b.mean()
            va, vb = ((a - ma) ** 2).mean(), ((b - mb) ** 2).mean()
            cov = ((a - ma) * (b - mb)).mean()
            vals.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_ssim_identity_symmetry_and_reference() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.random((2, 12, 10))
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    assert ssim(x, x, window="gaussian") == pytest.approx(1.0, abs=1e-12)
    assert ssim(x, y) == pytest.approx(ssim(y, x), abs=1e-12)
    assert ssim(x, y) < 0.5
    assert ssim(x, y) == pytest.approx(_ssim_reference(x, y), abs=1e-10)
    z = np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1)
    assert ssim(x, z) == pytest.approx(_ssim_reference(x, z), abs=1e-10)
    assert ssim(x, y) < ssim(x, z) < 1.0


def test_ssim_batch_multichannel_and_small_images() -> None:
    rng = np.random.default_rng(3)
    x = rng.random((3, 8, 8))
    ys = rng.random((5, 3, 8, 8))
    ys[2] = x
    got = ssim_batch(x, ys)
    assert got.shape == (5,)
    assert got[2] == pytest.approx(1.0, abs=1e-12)
    # multichannel SSIM is the mean of the per-channel SSIMs
    assert got[0] == pytest.approx(np.mean([ssim(x[c], ys[0, c]) for c in range(3)]), abs=1e-12)
    # images smaller than the window: the window shrinks (5 -> 5x5 window on a 5x6 image)
    small = rng.random((5, 6))
    assert ssim(small, small) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(UsageError):
        ssim(x, x, win_size=6)


# --- resizing ------------------------------------------------------------------------------------

def test_area_resize_integer_factor_is_block_mean() -> None:
    rng = np.random.default_rng(4)
    x = rng.random((2, 8, 12))
    got = area_resize(x, (4, 3), dtype=np.float64)
    want = x.reshape(2, 4, 2, 3, 4).mean(axis=(2, 4))
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_area_resize_fractional_keeps_mean_and_constants() -> None:
    rng = np.random.default_rng(5)
    x = rng.random((7, 10))
    got = area_resize(x, (3, 4), dtype=np.float64)
    assert got.mean() == pytest.approx(x.mean(), abs=1e-12)  # every input pixel counted once
    np.testing.assert_allclose(area_resize(np.full((7, 10), 0.3), (3, 4), dtype=np.float64), 0.3, atol=1e-12)
    assert np.array_equal(area_resize(x, (7, 10), dtype=np.float64), x)


# --- the audit -----------------------------------------------------------------------------------

CFG = AuditConfig(real_sample=80, ssim_candidates=16, chunk=23)


def test_exact_copy_is_flagged_and_noise_is_not() -> None:
    real = _smooth_images(120, 16, seed=6)
    rng = np.random.default_rng(7)
    distilled = np.stack([real[17] / 255.0, rng.random((16, 16))])[:, None]
    res = audit_images(distilled, RealImages(real, (16, 16), 1), config=CFG)
    copy, noise = res.findings
    assert copy.flagged and copy.nn_ncc.index == 17 and copy.nn_ssim.index == 17
    assert copy.nn_ncc.ncc == pytest.approx(1.0) and copy.nn_ssim.ssim == pytest.approx(1.0)
    assert copy.ncc_percentile == 100.0
    assert not noise.flagged and noise.ncc_percentile == 0.0
    assert res.flagged and res.verdict == "FLAG"
    assert res.verdict_line().startswith("FLAG: image 0 is a near copy of train[17]")

    only_noise = audit_images(distilled[1:], RealImages(real, (16, 16), 1), config=CFG)
    assert not only_noise.flagged
    assert only_noise.verdict_line().startswith("PASS: no distilled image is closer")


def test_intensity_scaled_copy_is_flagged() -> None:
    real = _smooth_images(60, 16, seed=8)
    distilled = (0.5 * real[3] / 255.0 + 0.2)[None, None]
    res = audit_images(distilled, RealImages(real, (16, 16), 1), config=CFG)
    assert res.findings[0].flagged
    assert res.findings[0].nn_ncc.index == 3


def test_duplicates_in_real_set_do_not_inflate_the_reference() -> None:
    real = _smooth_images(60, 16, seed=9)
    real[40] = real[10]  # an exact duplicate pair, as in PneumoniaMNIST
    cfg = AuditConfig(real_sample=60, ssim_candidates=60, chunk=16)
    res = audit_images(real[:1][:, None] / 255.0, RealImages(real, (16, 16), 1), config=cfg)
    assert res.duplicates_excluded == 1
    assert res.real_real_ncc.max < 0.999  # the duplicate pair is not a "distinct images" pair
    assert res.findings[0].flagged  # a copy is still a copy


def test_chunking_does_not_change_the_result() -> None:
    real = _smooth_images(50, 12, seed=10)
    rng = np.random.default_rng(11)
    distilled = rng.random((3, 1, 12, 12))
    a = audit_images(distilled, RealImages(real, (12, 12), 1), config=AuditConfig(real_sample=50, chunk=7))
    b = audit_images(distilled, RealImages(real, (12, 12), 1), config=AuditConfig(real_sample=50, chunk=500))
    # Same neighbours; similarities equal up to BLAS blocking (matrix products over different chunk sizes
    # may round differently in the last bits, so 1e-12 relative, not bit-exact).
    assert _close(a.to_dict()["images"], b.to_dict()["images"])
    assert _close(a.real_real_ncc, b.real_real_ncc)


def _close(x: object, y: object) -> bool:
    """Structural equality with floats compared at 1e-12 relative (chunking changes only the last bits)."""
    if isinstance(x, float) and isinstance(y, float):
        return x == pytest.approx(y, rel=1e-12, abs=1e-12)
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_close(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        return len(x) == len(y) and all(_close(u, v) for u, v in zip(x, y, strict=True))
    if hasattr(x, "__dataclass_fields__") and type(x) is type(y):
        return all(_close(getattr(x, f), getattr(y, f)) for f in x.__dataclass_fields__)
    return x == y


def test_resized_real_images_and_channel_broadcast() -> None:
    real = _smooth_images(40, 32, seed=12)
    target = area_resize(real[5] / 255.0, (16, 16), dtype=np.float64)
    distilled = np.repeat(target[None, None], 3, axis=1)  # a 3-channel network, grayscale data
    res = audit_images(distilled, RealImages(real, (16, 16), 3), config=CFG)
    assert res.findings[0].flagged and res.findings[0].nn_ncc.index == 5
    assert res.channels == 3 and res.resolution == (16, 16)


def test_patch_mode_finds_the_source_window() -> None:
    real = _smooth_images(6, 32, seed=13)
    distilled = (real[4, 8:24, 16:32] / 255.0)[None, None]
    src = RealPatches(real, (16, 16), 1, stride=8)
    assert len(src) == 6 * 9
    res = audit_images(distilled, src, config=AuditConfig(real_sample=54, ssim_candidates=8))
    f = res.findings[0]
    assert f.flagged and f.nn_ncc.name == "train[4]@(8,16)"
    # overlapping windows of one image are not "distinct real images" for the reference
    assert res.real_real_ncc.max < 0.999


def test_bad_inputs() -> None:
    real = _smooth_images(5, 8, seed=14)
    with pytest.raises(DataError):
        audit_images(np.zeros((1, 1, 8, 8)), RealImages(real[:1], (8, 8), 1))
    with pytest.raises(DataError):
        audit_images(np.full((1, 1, 8, 8), np.nan), RealImages(real, (8, 8), 1))
    with pytest.raises(DataError):
        RealImages(np.zeros((3, 8, 8, 3), np.uint8), (8, 8), 1)  # RGB data, grayscale images
    with pytest.raises(DataError):
        RealPatches(real, (16, 16), 1, stride=4)
    with pytest.raises(UsageError):
        audit_images(np.zeros((1, 1, 8, 8)), RealImages(real, (8, 8), 1), config=AuditConfig(percentile=0))


def test_distilled_pixels_undoes_normalisation() -> None:
    x = np.array([[[[0.0, 2.0]]]])
    np.testing.assert_allclose(distilled_pixels(x, (0.5,), (0.25,)), [[[[0.5, 1.0]]]])
    np.testing.assert_array_equal(distilled_pixels(x, None, None), x)


def test_load_real_images(tmp_path: Path) -> None:
    imgs = np.zeros((4, 8, 8), np.uint8)
    np.savez(tmp_path / "m.npz", train_images=imgs, train_labels=np.arange(4)[:, None])
    got, labels = load_real_images(tmp_path / "m.npz", "train")
    assert got.shape == (4, 8, 8) and labels is not None and labels.tolist() == [0, 1, 2, 3]
    np.savez(tmp_path / "plain.npz", images=imgs)
    assert load_real_images(tmp_path / "plain.npz", "train")[1] is None
    with pytest.raises(DataError, match="no 'val_images'"):
        load_real_images(tmp_path / "m.npz", "val")
    np.save(tmp_path / "imgs.npy", imgs)
    mm, none = load_real_images(tmp_path / "imgs.npy")
    assert isinstance(mm, np.memmap) and none is None  # read chunk by chunk, never loaded whole
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError):
        load_real_images(tmp_path / "bad.npz")
    with pytest.raises(DataError):
        load_real_images(tmp_path / "missing.npz")


def _write_sldp(path: Path, images: np.ndarray) -> None:
    m = Manifest(arch=ArchSpec("convnet@1", 1, 2, images.shape[2:]), init=InitSpec(seed=0),
                 provenance=Provenance("test", "2026-01-01T00:00:00Z"),
                 preprocessing=Preprocessing((0.5,), (0.25,), images.shape[2:], 1))
    sldpack.write(path, m, {"images": Tensor("images", images.astype(np.float32)),
                            "lrs": Tensor("lrs", np.full(2, 0.01, np.float32))})


def test_audit_file_and_sheet(tmp_path: Path) -> None:
    real = _smooth_images(70, 16, seed=15)
    np.savez(tmp_path / "d.npz", train_images=real, train_labels=np.arange(70) % 2)
    norm = (real[[9]] / 255.0 - 0.5) / 0.25  # stored normalised, as a distiller stores them
    _write_sldp(tmp_path / "x.sldp", np.concatenate([norm, np.zeros_like(norm)])[:, None])
    res = audit_file(tmp_path / "x.sldp", tmp_path / "d.npz", config=CFG, sheet=tmp_path / "s.png")
    assert res.findings[0].flagged and res.findings[0].nn_ncc.index == 9
    assert res.findings[0].nn_ncc.label == 1
    assert not res.findings[1].flagged  # a constant image correlates with nothing
    from PIL import Image

    with Image.open(tmp_path / "s.png") as im:
        assert im.width >= 4 * 16 and im.height >= 2 * 16
    d = res.to_dict()
    assert d["verdict"] == "FLAG" and d["sheet"] == str(tmp_path / "s.png")
    assert d["source"]["split"] == "train"


def test_save_sheet_rgb(tmp_path: Path) -> None:
    real = np.repeat(_smooth_images(20, 8, seed=16)[..., None], 3, axis=-1)  # NHWC RGB
    src = RealImages(real, (8, 8), 3)
    distilled = src.take(np.array([2]))
    res = audit_images(distilled, src, config=AuditConfig(real_sample=20, k=2))
    save_sheet(res, distilled, src, tmp_path / "rgb.png")
    from PIL import Image

    with Image.open(tmp_path / "rgb.png") as im:
        assert im.mode == "RGB"


def test_pneumoniamnist_copy_flagged(shared_data: Path) -> None:
    raw, labels = load_real_images(shared_data / "pneumoniamnist_28.npz", "train")
    rng = np.random.default_rng(17)
    distilled = np.stack([raw[1234] / 255.0, rng.random((28, 28))])[:, None]
    res = audit_images(distilled, RealImages(raw, (28, 28), 1), labels=labels,
                       config=AuditConfig(real_sample=200, ssim_candidates=16))
    assert [f.flagged for f in res.findings] == [True, False]
    assert res.findings[0].nn_ncc.index == 1234
    # PneumoniaMNIST's train split holds exact duplicates; they must not reach the reference
    assert res.real_real_ncc.max < 0.999


def test_audit_data_for_chooses_the_real_side(tmp_path: Path) -> None:
    from sldpack.pipelines.audit import audit_data_for
    from sldpack.pipelines.inputs import DataSpec
    from sldpack.pipelines.patch_source import PatchTask

    mm = tmp_path / "m.npz"
    np.savez(mm, train_images=_smooth_images(6, 16, seed=1), train_labels=np.arange(6) % 2)
    _write_sldp(tmp_path / "whole.sldp", np.zeros((2, 1, 16, 16)))
    whole = audit_data_for(tmp_path / "whole.sldp", DataSpec(data=str(mm)), "train")
    assert whole.data == str(mm) and whole.items is None and whole.real[0].shape == (6, 16, 16)
    # a patch model: the real patches as the distiller saw them, from data with organ masks
    task = PatchTask(size=16, stride=8, out_size=8)
    m = Manifest(arch=ArchSpec("convnet@1", 1, 3, (8, 8)), init=InitSpec(seed=0),
                 provenance=Provenance("test", "2026-01-01T00:00:00Z"),
                 preprocessing=Preprocessing((0.5,), (0.25,), (8, 8), 1, options=task.to_options()))
    sldpack.write(tmp_path / "patch.sldp", m, {"images": Tensor("images", np.zeros((3, 1, 8, 8), np.float32)),
                                               "lrs": Tensor("lrs", np.full(2, 0.01, np.float32))})
    ph = DataSpec(phantom=6, phantom_size=64)
    chosen = audit_data_for(tmp_path / "patch.sldp", ph, "train")
    assert chosen.items is not None and "patches as distilled" in chosen.items[1] and "16 px windows" in chosen.items[1]
    assert len(chosen.real[0]) == 0
    native = audit_data_for(tmp_path / "patch.sldp", ph, "train", patch_stride=4)  # native windows instead
    assert native.items is None and len(native.real[0]) > 0
    with pytest.raises(UsageError, match="no organ masks"):
        audit_data_for(tmp_path / "patch.sldp", DataSpec(data=str(mm)), "train")
    with pytest.raises(UsageError, match="--source"):
        audit_data_for(tmp_path / "whole.sldp", DataSpec(source="phantom"), "train")
    with pytest.raises(UsageError, match="--stride only"):
        audit_data_for(tmp_path / "whole.sldp", DataSpec(data=str(mm), patch_size=8), "train")
