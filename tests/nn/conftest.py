"""Fixtures for the torch tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One torch thread: fast on a shared 2-core machine, and the replay fingerprint's reference count.

    Tests that compare thread counts set them explicitly (in subprocesses).
    """
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
