"""Phantom generator: determinism, shapes, label balance, resolution independence, a learnable signal."""

from __future__ import annotations

import numpy as np
import pytest

from sldpack.errors import UsageError
from sldpack.medical.phantom import make_phantom


def test_same_seed_gives_identical_bytes() -> None:
    a = make_phantom(6, size=64, seed=5)
    b = make_phantom(6, size=64, seed=5)
    assert a.images.tobytes() == b.images.tobytes()
    assert a.masks.tobytes() == b.masks.tobytes()
    assert a.labels.tobytes() == b.labels.tobytes()
    c = make_phantom(6, size=64, seed=6)
    assert c.images.tobytes() != a.images.tobytes()


def test_shapes_dtypes_and_values() -> None:
    p = make_phantom(5, size=(48, 80), seed=1)
    assert p.images.shape == p.masks.shape == (5, 48, 80)
    assert p.images.dtype == p.masks.dtype == p.labels.dtype == np.uint8
    assert set(np.unique(p.masks).tolist()) == {0, 1}
    assert len(p) == 5
    frac = p.masks.reshape(5, -1).mean(axis=1)
    assert np.all((frac > 0.1) & (frac < 0.6))  # a real organ, with background around it
    # the organ is brighter than the background (barium-filled stomach on soft tissue)
    for img, m in zip(p.images, p.masks, strict=True):
        assert img[m == 1].mean() > img[m == 0].mean() + 30


@pytest.mark.parametrize(("n", "p", "expected"), [(10, 0.5, 5), (7, 0.5, 4), (9, 0.0, 0), (4, 1.0, 4), (10, 0.3, 3)])
def test_exact_number_of_diseased_images(n: int, p: float, expected: int) -> None:
    assert int(make_phantom(n, size=32, seed=0, p_diseased=p).labels.sum()) == expected


def test_anatomy_is_resolution_independent() -> None:
    small = make_phantom(3, size=64, seed=2)
    large = make_phantom(3, size=128, seed=2)
    assert small.labels.tolist() == large.labels.tolist()
    f_small = small.masks.reshape(3, -1).mean(axis=1)
    f_large = large.masks.reshape(3, -1).mean(axis=1)
    assert np.allclose(f_small, f_large, atol=0.02)


def test_image_set_view() -> None:
    p = make_phantom(3, size=32, seed=0)
    ds = p.to_image_set()
    assert ds.names == ("phantom_00000", "phantom_00001", "phantom_00002")
    assert ds.labels.dtype == np.int64
    assert np.array_equal(ds.labels, p.labels)
    assert ds.masks is not None and np.array_equal(ds.masks, p.masks)


def _spectral_concentration(img: np.ndarray) -> float:
    h = img.shape[0]
    crop = img[h // 4 : 3 * h // 4, h // 4 : 3 * h // 4].astype(np.float64)
    power = np.abs(np.fft.fft2(crop - crop.mean())) ** 2
    top = np.sort(power.ravel())[::-1]
    return float(top[:4].sum() / top.sum())


def test_normal_folds_are_more_periodic_than_diseased() -> None:
    # straight parallel folds put their energy into one spatial frequency; wavy/converging folds and coarse
    # texture spread it -- the signal a patch classifier must learn
    p = make_phantom(20, size=128, seed=7)
    conc = np.array([_spectral_concentration(im) for im in p.images])
    assert conc[p.labels == 0].mean() > conc[p.labels == 1].mean() + 0.03


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_images": 0},
        {"n_images": 2, "size": 8},
        {"n_images": 2, "seed": -1},
        {"n_images": 2, "p_diseased": 1.5},
        {"n_images": True},
    ],
)
def test_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        make_phantom(**kwargs)  # type: ignore[arg-type]
