"""Replay: determinism across calls, processes and thread counts; verify outcomes; checkpoint output."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import sldpack
from sldpack.errors import ReplayMismatchError, UsageError
from sldpack.nn.device import deterministic, resolve_device
from sldpack.nn.distill import DistillConfig, distill
from sldpack.nn.fingerprint import probe_inputs, probe_logits
from sldpack.nn.network import canonical_state, save_safetensors, theta_digest
from sldpack.nn.replay import load_model, replay
from sldpack.nn.verify import verify_replay
from sldpack.pipelines.sources import ArraySource

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sldp_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny batch-norm ConvNet distilled for a few iterations (BN makes thread effects likelier)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    x = rng.integers(0, 255, (120, 1, 8, 8)).astype(np.uint8)
    src = ArraySource(x, y, class_names=("I", "N", "P"))
    cfg = DistillConfig(arch_options={"depth": 2, "width": 8}, batchnorm=True, steps=3, epochs=2, iterations=3,
                        batch_real=12, device="cpu", bn_batches=2, bn_batch_size=24, lr=0.05)
    d = tmp_path_factory.mktemp("replay")
    res = distill(src, cfg, run_dir=d)
    torch.set_num_threads(old)
    assert res.sldp_path is not None
    return res.sldp_path


def _manifest_with(path: Path, out: Path, **replay_changes: Any) -> Path:
    """Copy a file with its replay fingerprint (or init) changed."""
    f = sldpack.read(path)
    m = f.manifest
    arrays = f.arrays()
    tensors = {n: sldpack.Tensor(t.role, arrays[n], t.dtype) for n, t in m.tensors.items()}
    init = replay_changes.pop("init", None)
    if init is not None:
        m = dataclasses.replace(m, init=init)
    if replay_changes.pop("drop", False):
        m = dataclasses.replace(m, replay=None)
    elif replay_changes:
        assert m.replay is not None
        m = dataclasses.replace(m, replay=dataclasses.replace(m.replay, **replay_changes))
    sldpack.write(out, m, tensors)
    return out


def test_replay_twice_identical_and_exact(sldp_file: Path) -> None:
    a = replay(sldp_file)
    b = replay(sldp_file)
    da = theta_digest(canonical_state(a.module))
    db = theta_digest(canonical_state(b.module))
    assert da == db
    with sldpack.open(sldp_file) as f:
        fp = f.manifest.replay
    assert fp is not None
    assert da == fp.theta_opt_sha256
    assert a.theta0_status == "match"
    assert not a.module.training
    assert len(a.inner_losses) == 6  # steps x epochs
    # the module's own forward gives the recorded probe logits exactly
    got = probe_logits(a.module, probe_inputs(fp.probe_seed, fp.probe_count, 1, (8, 8)))
    np.testing.assert_array_equal(got.reshape(-1), np.asarray(fp.probe_logits, dtype=np.float32))


_CHILD = """
import json, sys, torch
from sldpack.nn.network import canonical_state, theta_digest
from sldpack.nn.replay import replay
from sldpack.nn.verify import verify_replay
out = {}
for n in (1, 2):
    torch.set_num_threads(n)
    out[f"digest_{n}"] = theta_digest(canonical_state(replay(sys.argv[1]).module))
rep = verify_replay(sys.argv[1])  # ambient: 2 threads; verify switches to the reference's count
out.update(verify=rep.status, verify_threads=rep.threads)
print(json.dumps(out))
"""


def test_replay_in_another_process_and_thread_counts(sldp_file: Path) -> None:
    with sldpack.open(sldp_file) as f:
        fp = f.manifest.replay
    assert fp is not None
    assert fp.reference["threads"] == 1
    here = theta_digest(canonical_state(replay(sldp_file).module))  # this process, 1 thread
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *sys.path]))
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(sldp_file)], capture_output=True, text=True,
                          env=env, timeout=300, check=True)
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    # same thread count, two processes: identical, and equal to the recorded reference digest
    assert child["digest_1"] == here == fp.theta_opt_sha256
    # whatever the ambient thread count, verify replays under the reference's count and is exact
    assert child["verify"] == "exact"
    assert child["verify_threads"] == 1
    # Recorded finding (spec/SLDP-1-replay.md): on torch 2.13 CPU the thread count can change the digest
    # (it does for this batch-norm network on the development machine); the test reports, not asserts, it.
    print(f"thread count changes the digest: {child['digest_1'] != child['digest_2']}")


def test_verify_outcomes(sldp_file: Path, tmp_path: Path) -> None:
    ok = verify_replay(sldp_file)
    assert ok.status == "exact"
    assert ok.ok
    assert ok.max_abs_deviation == 0.0
    ok.raise_for_status()
    # digest differs, logits identical: within tolerance (what another device/stack would get)
    near = verify_replay(_manifest_with(sldp_file, tmp_path / "near.sldp", theta_opt_sha256="0" * 64))
    assert near.status == "within_tolerance"
    assert near.max_abs_deviation == 0.0
    # logits recorded with an offset beyond the tolerance: failed, with the deviation reported
    with sldpack.open(sldp_file) as f:
        fp = f.manifest.replay
    assert fp is not None
    shifted = tuple(v + 10 * fp.tolerance for v in fp.probe_logits)
    bad = verify_replay(_manifest_with(sldp_file, tmp_path / "bad.sldp", theta_opt_sha256="0" * 64,
                                       probe_logits=shifted))
    assert bad.status == "failed"
    assert bad.max_abs_deviation == pytest.approx(10 * fp.tolerance, rel=1e-3)
    with pytest.raises(ReplayMismatchError):
        bad.raise_for_status()
    assert "FAILED" in bad.summary()
    none = verify_replay(_manifest_with(sldp_file, tmp_path / "none.sldp", drop=True))
    assert none.status == "no_fingerprint"
    assert not none.ok


def test_theta0_mismatch_is_reported(sldp_file: Path, tmp_path: Path) -> None:
    with sldpack.open(sldp_file) as f:
        init = f.manifest.init
    assert init.theta0_sha256 is not None
    digests = dict(init.theta0_sha256)
    digests["fc.weight"] = "f" * 64
    path = _manifest_with(sldp_file, tmp_path / "t0.sldp", init=dataclasses.replace(init, theta0_sha256=digests))
    rep = verify_replay(path)
    assert rep.theta0 == "mismatch: fc.weight"
    assert rep.status == "exact"  # theta_opt itself is still re-derived exactly


def test_load_model_and_safetensors_checkpoint(sldp_file: Path, tmp_path: Path) -> None:
    model = load_model(sldp_file)
    assert isinstance(model, torch.nn.Module)
    assert not model.training
    out = tmp_path / "model.safetensors"
    n = save_safetensors(out, model.state_dict(), metadata={"arch": "convnet@1"})
    assert out.stat().st_size == n
    from sldpack.nn.zoo import build_from_spec

    with sldpack.open(sldp_file) as f:
        arch = f.manifest.arch
    fresh = build_from_spec(arch)
    st = pytest.importorskip("safetensors.torch")
    fresh.load_state_dict(st.load_file(str(out)))
    fresh.eval()
    x = torch.from_numpy(probe_inputs(7, 3, 1, (8, 8)))
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


def test_replay_rejects_inconsistent_files(sldp_file: Path, tmp_path: Path) -> None:
    f = sldpack.read(sldp_file)
    arrays = f.arrays()
    tensors = {n: sldpack.Tensor(t.role, arrays[n]) for n, t in f.manifest.tensors.items()}
    tensors["lrs"] = sldpack.Tensor("lrs", arrays["lrs"][:4])
    sldpack.write(tmp_path / "short.sldp", f.manifest, tensors)
    with pytest.raises(UsageError, match="lrs"):
        replay(tmp_path / "short.sldp")
    tensors = {n: sldpack.Tensor(t.role, arrays[n]) for n, t in f.manifest.tensors.items()}
    del tensors["bn.bn2.running_var"]
    sldpack.write(tmp_path / "nobn.sldp", f.manifest, tensors)
    with pytest.raises(UsageError, match="theta_bn"):
        replay(tmp_path / "nobn.sldp")


def test_device_resolution_and_determinism_flags() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA"):
            resolve_device("cuda")
    with pytest.raises(UsageError):
        resolve_device("tpu")
    before = torch.are_deterministic_algorithms_enabled()
    with deterministic(torch.device("cuda")):  # flags only; no CUDA call is made
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic
        assert not torch.backends.cuda.matmul.allow_tf32
    assert torch.are_deterministic_algorithms_enabled() == before


def test_probe_inputs_are_portable_values() -> None:
    p = probe_inputs(0, 2, 1, (4, 4))
    assert p.dtype == np.float32
    assert p.shape == (2, 1, 4, 4)
    assert float(p.min()) >= -2.0
    assert float(p.max()) < 2.0
    # every value is an exact multiple of 2^-22 (4 * k * 2^-24 - 2)
    k = (p.astype(np.float64) + 2.0) * 2.0**22
    assert np.array_equal(k, np.round(k))
    np.testing.assert_array_equal(p, probe_inputs(0, 2, 1, (4, 4)))
    assert not np.array_equal(p, probe_inputs(1, 2, 1, (4, 4)))


def test_state_sketch_catches_one_tensor_and_names_it(sldp_file: Path, tmp_path: Path) -> None:
    from sldpack.nn.fingerprint import compare_fingerprint, state_sketch

    with sldpack.open(sldp_file) as f:
        fp = f.manifest.replay
    assert fp is not None and fp.state_sketch is not None and fp.state_tolerance is not None
    assert fp.reference["calibration"] == 3  # the writer calibrated the tolerances on three perturbed replays
    module = replay(sldp_file).module
    names = [n for n, _ in canonical_state(module)]
    assert set(fp.state_sketch) == set(names)  # a msgpack map: stored in key order
    assert all(len(v) == 3 for v in fp.state_sketch.values())
    assert all(fp.state_tolerance[n] > 0 for n in names)
    # the sketch is a fixed projection: the same values give the same sketch, a change moves it by ~rms
    w = dict(canonical_state(module))[names[0]]
    assert state_sketch(w) == fp.state_sketch[names[0]]
    moved = state_sketch(w + 1e-3)
    assert max(abs(a - b) for a, b in zip(moved, fp.state_sketch[names[0]], strict=True)) > 1e-5
    # one tensor pushed beyond its tolerance while logits stay within theirs: failed, and it is named
    target = names[1]
    with torch.no_grad():
        dict(module.named_parameters())[target].add_(100 * fp.state_tolerance[target])
    cmp = compare_fingerprint(module, dataclasses.replace(fp, tolerance=1e9), threads=1)
    assert cmp.status == "failed"
    assert cmp.worst_tensor == target
    assert cmp.worst_ratio > 1
    assert target in cmp.reason


def test_flipped_image_bit_fails_replay_at_other_thread_count(sldp_file: Path, tmp_path: Path) -> None:
    """A correct replay at 2 threads passes; a stored image with its mantissa MSB flipped (digests
    recomputed, old fingerprint) fails, at either thread count."""
    assert verify_replay(sldp_file, threads=2).ok
    f = sldpack.read(sldp_file)
    arrays = f.arrays()
    img = arrays["images"].copy().reshape(-1)
    img.view(np.uint32)[3] ^= np.uint32(1 << 22)
    arrays["images"] = img.reshape(arrays["images"].shape)
    bad = tmp_path / "flipped.sldp"
    tensors = {n: sldpack.Tensor(t.role, arrays[n], t.dtype) for n, t in f.manifest.tensors.items()}
    sldpack.write(bad, f.manifest, tensors)
    for threads in (1, 2):
        assert verify_replay(bad, threads=threads).status == "failed"
