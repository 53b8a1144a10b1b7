"""Sliding-window patches: integral image, I/N/P labels on hand-made masks, index, sampler, streaming."""

from __future__ import annotations

import numpy as np
import pytest

from sldpack.errors import DataError, UsageError
from sldpack.medical.loaders import ImageSet
from sldpack.medical.patches import (
    PATCH_CLASS_NAMES,
    PATCH_I,
    PATCH_N,
    PATCH_P,
    PatchConfig,
    PatchSampler,
    area_resize,
    build_patch_index,
    cut_patches,
    grid_positions,
    grid_window_sums,
    index_image_set,
    integral_image,
    iter_image_patches,
    label_patch_grid,
    organ_fraction,
    window_sums,
)


def _square_mask() -> np.ndarray:
    """100x100 with a 60x60 organ at rows/cols 20..79."""
    m = np.zeros((100, 100), dtype=np.uint8)
    m[20:80, 20:80] = 1
    return m


def test_class_ids_and_names() -> None:
    assert (PATCH_I, PATCH_N, PATCH_P) == (0, 1, 2)
    assert PATCH_CLASS_NAMES == ("I", "N", "P")


def test_grid_matches_the_paper() -> None:
    ys, xs = grid_positions(2048, 2048, 299, 50)
    assert ys.size == xs.size == 35  # 35 x 35 = 1,225 patches per image
    assert ys[-1] + 299 <= 2048
    assert grid_positions(10, 10, 11, 1)[0].size == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_integral_image_fraction_equals_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = rng.integers(20, 60, size=2)
    mask = (rng.random((h, w)) < rng.uniform(0.1, 0.9)).astype(np.uint8)
    sat = integral_image(mask)
    assert sat.shape == (h + 1, w + 1)
    assert sat[-1, -1] == mask.sum()
    for size, stride in [(7, 3), (10, 10), (1, 1)]:
        frac = organ_fraction(mask, size, stride)
        ys, xs = grid_positions(h, w, size, stride)
        brute = np.array([[mask[y : y + size, x : x + size].mean() for x in xs] for y in ys])
        assert frac.shape == brute.shape
        assert np.array_equal(frac, brute)  # exact: both are count / size^2


def test_grid_table_equals_full_integral_image() -> None:
    rng = np.random.default_rng(42)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(3, 50, size=2))
        size = int(rng.integers(1, min(h, w) + 1))
        stride = int(rng.integers(1, 2 * size + 2))  # strides below, at and above the window size
        mask = (rng.random((h, w)) < rng.random()).astype(np.uint8) * rng.integers(1, 256)
        ys, xs = grid_positions(h, w, size, stride)
        assert np.array_equal(grid_window_sums(mask, ys, xs, size), window_sums(integral_image(mask), ys, xs, size))


def test_hand_made_mask_counts() -> None:
    # 9x9 windows (size 20, stride 10). Windows at y or x in {0, 80} miss the organ entirely: 81 - 7*7 = 32
    # I. Windows with y, x in {20..60} lie fully inside: 5*5 = 25. The other 24 overlap half: discarded.
    cfg = PatchConfig(size=20, stride=10)
    grid = label_patch_grid(_square_mask(), 0, cfg)
    assert grid.shape == (9, 9)
    assert int((grid == PATCH_I).sum()) == 32
    assert int((grid == PATCH_N).sum()) == 25
    assert int((grid == -1).sum()) == 24
    assert np.all(grid[2:7, 2:7] == PATCH_N)
    diseased = label_patch_grid(_square_mask(), 1, cfg)
    assert int((diseased == PATCH_P).sum()) == 25 and int((diseased == PATCH_N).sum()) == 0


def test_thresholds_are_strict_and_configurable() -> None:
    cfg = PatchConfig(size=20, stride=20)
    m = np.zeros((20, 20), dtype=np.uint8)
    m.flat[:340] = 1  # exactly 85 %: not > 0.85 -> discarded
    assert label_patch_grid(m, 0, cfg)[0, 0] == -1
    m.flat[:341] = 1
    assert label_patch_grid(m, 0, cfg)[0, 0] == PATCH_N
    m[:] = 0
    m.flat[:4] = 1  # exactly 1 %: not < 0.01 -> discarded
    assert label_patch_grid(m, 0, cfg)[0, 0] == -1
    m.flat[3] = 0
    assert label_patch_grid(m, 0, cfg)[0, 0] == PATCH_I
    m.flat[:8] = 1  # 2 %
    loose = PatchConfig(size=20, stride=20, outside_max=0.025, inside_min=0.5)
    assert label_patch_grid(m, 1, loose)[0, 0] == PATCH_I
    m.flat[:201] = 1
    assert label_patch_grid(m, 1, loose)[0, 0] == PATCH_P


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 0, "stride": 1},
        {"size": 4, "stride": 0},
        {"size": 4, "stride": 1, "outside_max": 0.9, "inside_min": 0.5},
        {"size": 4, "stride": 1, "inside_min": 1.5},
    ],
)
def test_bad_config(kwargs: dict[str, float]) -> None:
    with pytest.raises(UsageError):
        PatchConfig(**kwargs)  # type: ignore[arg-type]


def _two_image_set() -> ImageSet:
    masks = np.stack([_square_mask(), np.zeros((100, 100), dtype=np.uint8)])
    masks[1, :, 50:] = 1  # right half organ
    images = np.arange(2 * 100 * 100, dtype=np.int64).reshape(2, 100, 100).astype(np.uint8)
    return ImageSet(images, masks, np.array([0, 1], dtype=np.int64), ("a", "b"))


def test_index_counts_and_order() -> None:
    ds = _two_image_set()
    ix = index_image_set(ds, PatchConfig(20, 10))
    per = ix.counts_per_image()
    # image 1: windows with x >= 50 are inside (x in 50..80: 4 columns x 9 rows = 36 P); x <= 30 are
    # outside (x in 0..30: 4 columns x 9 rows = 36 I); x = 40 straddles: discarded
    assert per.tolist() == [[32, 25, 0], [36, 0, 36]]
    assert ix.counts().tolist() == [68, 25, 36]
    assert ix.summary() == {"I": 68, "N": 25, "P": 36, "total": 129, "images": 2, "size": 20, "stride": 10}
    key = ix.image.astype(np.int64) * 10**6 + ix.y.astype(np.int64) * 1000 + ix.x
    assert np.all(np.diff(key) > 0)  # sorted by (image, y, x)
    lo, hi = ix.image_range(1)
    assert (lo, hi) == (57, 129)
    assert np.all(ix.for_images([1]).image == 1) and len(ix.for_images([1])) == 72


def test_index_rejects_bad_inputs() -> None:
    m = np.zeros((2, 30, 30), dtype=np.uint8)
    with pytest.raises(DataError, match="diagnosis"):
        build_patch_index(m, [0, 2], PatchConfig(10, 10))
    with pytest.raises(DataError, match="smaller than"):
        build_patch_index(m, [0, 1], PatchConfig(40, 10))
    with pytest.raises(DataError, match="2 masks"):
        build_patch_index(m, [0], PatchConfig(10, 10))
    ds = ImageSet(np.zeros((1, 30, 30), np.uint8), None, np.zeros(1, np.int64), ("x",))
    with pytest.raises(DataError, match="no organ masks"):
        index_image_set(ds, PatchConfig(10, 10))


def test_cut_patches_and_area_resize() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 40, 40), dtype=np.uint8)
    p = cut_patches(images, [2, 0], [4, 0], [8, 32], 8)
    assert p.dtype == np.float32 and p.shape == (2, 8, 8)
    assert np.array_equal(p[0], images[2, 4:12, 8:16].astype(np.float32) / np.float32(255))
    small = cut_patches(images, [1], [0], [0], 32, out_size=16)
    block = images[1, :32, :32].astype(np.float64).reshape(16, 2, 16, 2).mean(axis=(1, 3)) / 255
    assert np.allclose(small[0], block, atol=1e-6)
    odd = area_resize(images[:1, :30, :30].astype(np.float32), 7)
    assert odd.shape == (1, 7, 7)
    assert abs(float(odd.mean()) - float(images[0, :30, :30].mean())) < 1e-3  # area averaging keeps the mean
    with pytest.raises(DataError, match="outside"):
        cut_patches(images, [0], [35], [0], 8)


def _skewed_index():  # type: ignore[no-untyped-def]
    ds = _two_image_set()
    return ds, index_image_set(ds, PatchConfig(20, 10))


def test_sampler_balanced_uniform_and_deterministic() -> None:
    ds, ix = _skewed_index()
    s = PatchSampler(ds.images, ix)
    pos = s.draw(3000, np.random.default_rng(3), balanced=True)
    freq = np.bincount(ix.label[pos], minlength=3) / 3000
    assert np.array_equal(np.bincount(ix.label[pos], minlength=3), [1000, 1000, 1000])  # I is 68/129 of the index
    assert np.all(np.abs(freq - 1 / 3) < 1e-12)
    uni = s.draw(3000, np.random.default_rng(3), balanced=False)
    ufreq = np.bincount(ix.label[uni], minlength=3) / 3000
    assert np.all(np.abs(ufreq - ix.counts() / len(ix)) < 0.04)
    x1, y1 = s.sample(16, np.random.default_rng(9))
    x2, y2 = PatchSampler(ds.images, ix).sample(16, np.random.default_rng(9))
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert y1.dtype == np.int64 and x1.shape == (16, 20, 20)
    # the patches really are the indexed windows
    s2 = PatchSampler(ds.images, ix, out_size=10)
    pos = s2.draw(5, np.random.default_rng(1))
    xs, ys = s2.cut(pos)
    expect = cut_patches(ds.images, ix.image[pos], ix.y[pos], ix.x[pos], 20, out_size=10)
    assert np.array_equal(xs, expect) and np.array_equal(ys, ix.label[pos])
    assert sum(len(b) for b, _ in s.epoch(50)) == len(ix)


def test_sampler_epoch_and_subsample() -> None:
    ds, ix = _skewed_index()
    s = PatchSampler(ds.images, ix)
    labels = np.concatenate([y for _, y in s.epoch(50, np.random.default_rng(0))])
    assert labels.size == len(ix)
    assert np.bincount(labels, minlength=3).tolist() == ix.counts().tolist()
    sub = ix.subsample_per_class(30, seed=1)
    assert sub.counts().tolist() == [30, 25, 30]
    assert sub.subsample_per_class(30, seed=1).counts().tolist() == [30, 25, 30]
    assert np.array_equal(sub.image, ix.subsample_per_class(30, seed=1).image)
    with pytest.raises(DataError, match="no labelled patches"):
        PatchSampler(ds.images, ix.subset(np.zeros(len(ix), dtype=bool)))


def test_streaming_one_image() -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(50, 70), dtype=np.uint8)
    chunks = list(iter_image_patches(img, 16, 8, chunk=7))
    ys, xs = grid_positions(50, 70, 16, 8)
    total = ys.size * xs.size
    assert sum(c.patches.shape[0] for c in chunks) == total
    assert all(c.patches.shape[0] <= 7 for c in chunks)
    c0 = chunks[0]
    assert np.array_equal(c0.patches[1], img[c0.ys[1] : c0.ys[1] + 16, c0.xs[1] : c0.xs[1] + 16] / np.float32(255))
    order = np.concatenate([c.ys * 1000 + c.xs for c in chunks])
    assert np.all(np.diff(order) > 0)  # raster order
    picked = list(iter_image_patches(img, 16, 8, positions=(np.array([0, 10]), np.array([5, 3])), out_size=4))
    assert len(picked) == 1 and picked[0].patches.shape == (2, 4, 4)
    with pytest.raises(DataError):
        next(iter_image_patches(img[:10], 16, 8))


def test_montgomery_patch_counts(shared_data) -> None:  # type: ignore[no-untyped-def]
    from sldpack.medical.loaders import load_npz

    ds = load_npz(shared_data / "montgomery_512.npz")
    ix = index_image_set(ds, PatchConfig(size=64, stride=32))
    # 15 x 15 = 225 windows per image at 512 px
    assert grid_positions(512, 512, 64, 32)[0].size == 15
    assert ix.summary() == {"I": 14023, "N": 2580, "P": 2115, "total": 18718, "images": 138, "size": 64,
                            "stride": 32}
    per = ix.counts_per_image()
    assert np.all(per[ds.labels == 0, 2] == 0) and np.all(per[ds.labels == 1, 1] == 0)
    assert per.sum(axis=1).max() <= 225
