"""Comparing a replay with a recorded fingerprint (spec annex replay, section 7): what "within" means."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

pytest.importorskip("torch")

from torch import nn

from sldpack.format.manifest import ArchSpec, InitSpec, ReplayFingerprint
from sldpack.nn.fingerprint import compare_fingerprint, compute_fingerprint, state_sketch
from sldpack.nn.network import build_module, canonical_state

OTHER_DIGEST = "00" * 32  # never the module's digest: the comparison then decides by the tolerances


@pytest.fixture(scope="module")
def net() -> tuple[nn.Module, ReplayFingerprint]:
    arch = ArchSpec("convnet@1", in_channels=1, num_classes=3, image_size=(8, 8), options={"depth": 1, "width": 4})
    module, _ = build_module(arch, InitSpec(seed=5))
    module.eval()
    fp = compute_fingerprint(module, probe_seed=3, probe_count=2, threads=1)
    return module, replace(fp, theta_opt_sha256=OTHER_DIGEST)


def test_a_deviation_equal_to_the_tolerance_is_within(net: tuple[nn.Module, ReplayFingerprint]) -> None:
    module, fp = net
    shifted = tuple(v + 0.25 for v in fp.probe_logits)  # exact in binary64: every deviation is 0.25
    at = compare_fingerprint(module, replace(fp, probe_logits=shifted, tolerance=0.25), threads=1)
    assert at.status == "within_tolerance"
    assert at.max_abs_deviation == 0.25
    above = compare_fingerprint(module, replace(fp, probe_logits=shifted, tolerance=math.nextafter(0.25, 0)),
                                threads=1)
    assert above.status == "failed"
    # t = 0 passes d = 0 only: the replay is the recorded one, sketches included
    zero = replace(fp, tolerance=0.0, state_tolerance=dict.fromkeys(fp.state_tolerance or {}, 0.0))
    assert compare_fingerprint(module, zero, threads=1).status == "within_tolerance"


def test_the_recorded_sketch_length_is_compared_per_tensor(net: tuple[nn.Module, ReplayFingerprint]) -> None:
    # a file may record k = 1..64 values per tensor (spec 5.9); sldpack writes 3 but must check any k
    module, fp = net
    ks = [1, 5, 64]
    sketch = {n: state_sketch(t, ks[i % 3]) for i, (n, t) in enumerate(canonical_state(module))}
    assert {len(v) for v in sketch.values()} == set(ks)
    got = compare_fingerprint(module, replace(fp, state_sketch=sketch), threads=1)
    assert got.status == "within_tolerance", got.reason
    assert got.worst_ratio == 0.0


def test_a_nan_sketch_deviation_is_beyond_every_tolerance(net: tuple[nn.Module, ReplayFingerprint]) -> None:
    module, fp = net
    assert fp.state_sketch is not None
    first = next(iter(fp.state_sketch))
    bad = {**fp.state_sketch, first: (math.nan, *fp.state_sketch[first][1:])}
    got = compare_fingerprint(module, replace(fp, state_sketch=bad), threads=1)
    assert got.status == "failed"
    assert got.worst_tensor == first
