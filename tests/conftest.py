"""Shared test fixtures."""

from __future__ import annotations

import os
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
