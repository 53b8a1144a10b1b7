"""Shared test fixtures."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

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
