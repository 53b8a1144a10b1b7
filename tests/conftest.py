"""Shared test fixtures."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``../shared/data`` beside the checkout, or ``$SLDP_SHARED_DATA``."""
    env = os.environ.get("SLDP_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The real medical data folder; skips the test cleanly when it is absent."""
    d = shared_data_dir()
    if not d.is_dir():
        pytest.skip(f"real data folder {d} is absent (set SLDP_SHARED_DATA)")
    return d


@pytest.fixture(scope="session")
def toy_images() -> tuple[np.ndarray, np.ndarray]:
    """The CLI tests' toy MedMNIST-shaped set: 60 uint8 8x8 images, labels ``[60, 1]``; class 1 has a bright
    left half. Read-only: a test that needs other pixels copies them."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (60, 1)).astype(np.uint8)
    x = rng.integers(0, 100, (60, 8, 8)).astype(np.uint8)
    x[y[:, 0] == 1, :, :4] += 120
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One torch thread in tests that use torch: fast on a shared 2-core machine, and the replay
    fingerprint's reference count. Tests that compare thread counts set them explicitly (in subprocesses).
    Torch-free tests stay torch-free: the fixture only acts when torch is already imported."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
