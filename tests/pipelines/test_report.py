"""Sharing report: byte accounting adds up, storage precision, requantize, zoo checkpoint sizes, Table 4."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

import sldpack
from sldpack import (
    ArchSpec,
    DistillSpec,
    InitSpec,
    LabelSpec,
    Manifest,
    Preprocessing,
    Provenance,
    ReplayFingerprint,
    Tensor,
    UsageError,
)
from sldpack.pipelines.report import byte_report, precision_table, render_report, requantize, requantize_bytes


def _manifest(replay: bool = False) -> Manifest:
    fp = ReplayFingerprint(theta_opt_sha256="a" * 64, probe_seed=1, probe_count=2, probe_logits=(0.5,) * 4,
                           tolerance=1e-3, reference={"threads": 1}) if replay else None
    return Manifest(arch=ArchSpec("convnet@1", 1, 2, (8, 8), batchnorm=True), init=InitSpec(seed=3),
                    provenance=Provenance("test", "2026-01-01T00:00:00Z"),
                    distill=DistillSpec("sldd", 2, 1, ((0, 1), (0, 1))), labels=LabelSpec(("N", "P")),
                    preprocessing=Preprocessing((0.5,), (0.25,), (8, 8), 1), replay=fp)


def _tensors(seed: int = 0) -> dict[str, Tensor]:
    rng = np.random.default_rng(seed)
    return {
        "images": Tensor("images", rng.standard_normal((2, 1, 8, 8)).astype(np.float32)),
        "labels": Tensor("labels", rng.standard_normal((2, 2)).astype(np.float32)),
        "lrs": Tensor("lrs", np.array([0.01, 0.02], np.float32)),
        "bn.features.1.running_mean": Tensor("bn_stats", np.zeros(16, np.float32)),
        "bn.features.1.running_var": Tensor("bn_stats", np.ones(16, np.float32)),
        "theta0.check": Tensor("theta0_check", np.zeros(3, np.float64)),
        "note": Tensor("extra", np.arange(5, dtype=np.uint8)),
    }


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_lines_add_up_to_the_file_size(tmp_path: Path, compression: str) -> None:
    path = tmp_path / "f.sldp"
    sldpack.write(path, _manifest(), _tensors(), compression=compression)
    rep = byte_report(path)
    size = path.stat().st_size
    assert rep.file_size == size
    assert sum(ln.stored for ln in rep.lines) == size
    parts = rep.by_part()
    # decoded role bytes are exactly the tensors' bytes
    assert parts["images"].decoded == 2 * 8 * 8 * 4
    assert parts["labels"].decoded == 16 and parts["lrs"].decoded == 8
    assert parts["bn_stats"].decoded == 128 and parts["bn_stats"].tensors == 2
    assert parts["theta0_check"].decoded == 24 and parts["extra"].decoded == 5
    assert parts["header"].stored == 64
    with sldpack.open(path) as f:
        assert parts["manifest"].stored == f.header.manifest_length
        lay = f.layout()
    if compression == "none":
        assert parts["images"].stored == parts["images"].decoded
        assert parts["index"].stored == lay.st_header_bytes
        assert rep.overhead == 64 + lay.st_header_bytes
    else:
        assert parts["images"].stored == 0
        assert parts["compressed payload"].stored == lay.payload_stored_bytes
        assert parts["compressed payload"].decoded == lay.payload_decoded_bytes
        assert rep.overhead == 64
    # the same from the bytes
    assert [ln.stored for ln in byte_report(path.read_bytes()).lines] == [ln.stored for ln in rep.lines]
    d = rep.to_dict()
    assert d["stored_total"] == size and d["rate"] is None


def test_rate_and_render(tmp_path: Path) -> None:
    path = tmp_path / "f.sldp"
    sldpack.write(path, _manifest(), _tensors())
    rep = byte_report(path).with_checkpoint(1_000_000, "test")
    assert rep.rate == pytest.approx(path.stat().st_size / 1_000_000)
    text = render_report(rep)
    assert f"{path.stat().st_size:,}" in text and "compression rate" in text
    assert "= file size" in text


def test_roles_absent_still_listed(tmp_path: Path) -> None:
    path = tmp_path / "f.sldp"
    t = _tensors()
    sldpack.write(path, _manifest(), {k: t[k] for k in ("images", "labels", "lrs")})
    parts = byte_report(path).by_part()
    assert parts["bn_stats"].stored == 0 and parts["bn_stats"].tensors == 0
    assert "extra" not in parts and "theta0_check" not in parts


def test_precision_table_halves_images(tmp_path: Path) -> None:
    path = tmp_path / "f.sldp"
    sldpack.write(path, _manifest(), _tensors())
    rows = {(r.images_dtype, r.compression): r for r in precision_table(path, level=3)}
    f32, f16 = rows[("F32", "none")], rows[("F16", "none")]
    assert f32.file_size == path.stat().st_size and f32.max_abs_change == 0.0
    assert f16.images_bytes * 2 == f32.images_bytes
    # only the image bytes change size ("F16" and "F32" are spelled with as many bytes)
    assert f32.file_size - f16.file_size == f16.images_bytes
    assert 0 < rows[("BF16", "none")].max_abs_change < 0.05
    assert rows[("F32", "zstd")].level == 3


def test_requantize_float16(tmp_path: Path) -> None:
    src, dst = tmp_path / "a.sldp", tmp_path / "b.sldp"
    t = _tensors()
    sldpack.write(src, _manifest(), t)
    res = requantize(src, dst, "float16", "zstd", 5)
    assert res.images_dtype_in == ("F32",) and res.images_dtype_out == "F16"
    assert res.fingerprint == "none in input" and res.size_out == dst.stat().st_size
    with sldpack.open(dst) as f:
        f.verify()
        assert f.manifest.tensors["images"].dtype == "F16"
        assert f.manifest.payload is not None and f.manifest.payload.compression == "zstd"
        np.testing.assert_array_equal(f.tensor("images"), t["images"].array.astype(np.float16))
        with sldpack.open(src) as g:
            for name in t:
                if name != "images":  # everything else is byte-identical
                    assert f.manifest.tensors[name] == g.manifest.tensors[name]
        assert f.manifest.provenance.extra["requantized"]["images_dtype_to"] == "F16"
    assert res.max_abs_change == pytest.approx(
        float(np.max(np.abs(t["images"].array.astype(np.float16).astype(np.float64) - t["images"].array))))


def test_requantize_fingerprint_handling(tmp_path: Path) -> None:
    src = tmp_path / "a.sldp"
    sldpack.write(src, _manifest(replay=True), _tensors())
    # unchanged values (only compression changes): the fingerprint still describes the file
    _, same = requantize_bytes(src, "float32", "zstd", 3)
    assert same.fingerprint == "kept (images unchanged)"
    # changed values without torch replay: dropped, and the file says so
    data, dropped = requantize_bytes(src, "bfloat16", fingerprint_fn=False)
    assert dropped.fingerprint.startswith("dropped")
    f = sldpack.read(data)
    assert f.manifest.replay is None
    assert f.manifest.provenance.extra["requantized"]["fingerprint"].startswith("dropped")
    f.close()
    # a recomputing function sees the stored (rounded) values
    seen: dict[str, np.ndarray] = {}

    def fake(manifest: Manifest, arrays: Mapping[str, np.ndarray]) -> ReplayFingerprint:
        seen.update(arrays)
        assert manifest.replay is not None
        return ReplayFingerprint(theta_opt_sha256="b" * 64, probe_seed=1, probe_count=2,
                                 probe_logits=(0.25,) * 4, tolerance=1e-3)

    data, redone = requantize_bytes(src, "float16", fingerprint_fn=fake)
    assert redone.fingerprint == "recomputed"
    assert seen["images"].dtype == np.float16
    f = sldpack.read(data)
    assert f.manifest.replay is not None and f.manifest.replay.theta_opt_sha256 == "b" * 64
    f.close()


def test_requantize_rejects_bad_arguments(tmp_path: Path) -> None:
    src = tmp_path / "a.sldp"
    t = _tensors()
    t["images"] = Tensor("images", np.full((1, 1, 8, 8), 1e6, np.float32))
    sldpack.write(src, _manifest(), t)
    with pytest.raises(UsageError, match="float16 range"):
        requantize(src, tmp_path / "b.sldp", "float16")
    with pytest.raises(UsageError):
        requantize(src, tmp_path / "b.sldp", "int8")
    with pytest.raises(UsageError):
        requantize(src, tmp_path / "b.sldp", "float32", "gzip")
    assert not (tmp_path / "b.sldp").exists()


# --- torch side: zoo sizes and Table 4 --------------------------------------------------------------

@pytest.fixture
def torch_zoo() -> None:
    """Skip (only these tests) where torch is not installed: the zoo needs it."""
    pytest.importorskip("torch")


def _state_bytes(arch_id: str, bn: bool, **kw: object) -> int:
    from sldpack.nn import zoo

    ps = zoo.param_shapes(arch_id, batchnorm=bn, **kw)  # type: ignore[arg-type]
    bs = zoo.buffer_shapes(arch_id, batchnorm=bn, **kw)  # type: ignore[arg-type]
    # fp32 parameters and running stats; num_batches_tracked is a 0-d int64
    return 4 * sum(math.prod(s) for _, s in ps) + sum(
        8 if n.endswith("num_batches_tracked") else 4 * math.prod(s) for n, s in bs)


@pytest.mark.parametrize(("arch_id", "bn", "params", "nbytes"), [
    ("alexnet@1", False, 57_000_643, 228_002_572),
    ("vgg16@1", False, 134_271_683, 537_086_732),
    ("vgg19@1", False, 139_581_379, 558_325_516),
    ("resnet18@1", True, 11_171_779, 44_725_676),
])
@pytest.mark.usefixtures("torch_zoo")
def test_checkpoint_size_is_every_parameter_and_buffer(arch_id: str, bn: bool, params: int, nbytes: int) -> None:
    from sldpack.nn import zoo
    from sldpack.pipelines.sharing import checkpoint_size

    kw = {"in_channels": 1, "num_classes": 3, "image_size": (227, 227)}
    assert zoo.param_count(arch_id, batchnorm=bn, **kw) == params  # type: ignore[arg-type]
    arch = ArchSpec(arch_id, 1, 3, (227, 227), batchnorm=bn)
    assert checkpoint_size(arch) == _state_bytes(arch_id, bn, **kw) == nbytes


@pytest.mark.usefixtures("torch_zoo")
def test_table4_file_is_a_complete_file() -> None:
    from sldpack.nn import zoo
    from sldpack.pipelines.sharing import table4_file

    data = table4_file("resnet18@1", True, 1)
    f = sldpack.read(data)
    m = f.manifest
    assert m.tensors["images"].shape == (1, 1, 227, 227) and m.tensors["lrs"].shape == (9,)
    bn = [n for n, t in m.tensors.items() if t.role == "bn_stats"]
    float_buffers = [n for n, _ in zoo.buffer_shapes("resnet18@1", in_channels=1, num_classes=3,
                                                     image_size=(227, 227), batchnorm=True)
                     if not n.endswith("num_batches_tracked")]
    assert sorted(bn) == sorted(f"bn.{n}" for n in float_buffers)
    assert m.init.theta0_sha256 is not None and len(m.init.theta0_sha256) == 62
    assert m.replay is not None and m.distill is not None and m.distill.steps * m.distill.epochs == 9
    f.close()
    rep = byte_report(data)
    assert sum(ln.stored for ln in rep.lines) == len(data)
    # float16 images save exactly half the image bytes
    half = table4_file("resnet18@1", True, 1, images_dtype="F16")
    assert len(data) - len(half) == 227 * 227 * 2


@pytest.mark.usefixtures("torch_zoo")
def test_table4_rows_and_render() -> None:
    from sldpack.pipelines.sharing import render_table4, table4

    rows = table4(level=1, setting=(("alexnet@1", False, 1), ("vgg16@1", False, 2)))
    alex, vgg = rows
    assert alex.paper is not None and vgg.paper is not None
    assert vgg.checkpoint_bytes == 537_086_732
    assert vgg.roles_f32["images"] == 2 * 227 * 227 * 4
    assert vgg.rate_f32 == pytest.approx(vgg.sldp_f32 / vgg.checkpoint_bytes)
    assert vgg.sldp_f16 < 0.52 * vgg.sldp_f32  # about half
    text = render_table4(rows)
    assert "512.21 MB" in text and "402.01 KB" in text and "217.44 MB" in text and "201.29 KB" in text


def _tiny_replayable(path: Path) -> None:
    """A small convnet file with a genuine replay fingerprint."""
    from sldpack.nn.fingerprint import refingerprint

    rng = np.random.default_rng(5)
    arch = ArchSpec("convnet@1", 1, 2, (8, 8), options={"depth": 1, "width": 4})
    m = Manifest(arch=arch, init=InitSpec(seed=3), provenance=Provenance("test", "2026-01-01T00:00:00Z"),
                 distill=DistillSpec("sldd", 2, 1, ((0, 1), (0, 1))), labels=LabelSpec(("N", "P")),
                 preprocessing=Preprocessing((0.5,), (0.25,), (8, 8), 1),
                 replay=ReplayFingerprint(theta_opt_sha256="0" * 64, probe_seed=7, probe_count=2,
                                          probe_logits=(0.0,) * 4, tolerance=1e-3, reference={"threads": 1}))
    arrays = {"images": rng.standard_normal((2, 1, 8, 8)).astype(np.float32) * 1.3,
              "labels": np.array([[2.0, -2.0], [-2.0, 2.0]], np.float32),
              "lrs": np.array([0.05, 0.05], np.float32)}
    m = dataclasses.replace(m, replay=refingerprint(m, arrays))
    sldpack.write(path, m, {"images": Tensor("images", arrays["images"]),
                            "labels": Tensor("labels", arrays["labels"]), "lrs": Tensor("lrs", arrays["lrs"])})


@pytest.mark.usefixtures("torch_zoo")
def test_requantize_recomputes_a_fingerprint_that_verifies(tmp_path: Path) -> None:
    from sldpack.nn.verify import verify_replay

    src, dst = tmp_path / "a.sldp", tmp_path / "b.sldp"
    _tiny_replayable(src)
    assert verify_replay(src).status == "exact"
    res = requantize(src, dst, "bfloat16")
    assert res.fingerprint == "recomputed"
    rep = verify_replay(dst)
    assert rep.status == "exact", rep
    with sldpack.open(src) as a, sldpack.open(dst) as b:
        assert a.manifest.replay is not None and b.manifest.replay is not None
        # rounding the images changes theta_opt: the old fingerprint would no longer describe the file
        assert a.manifest.replay.theta_opt_sha256 != b.manifest.replay.theta_opt_sha256
        assert b.manifest.replay.probe_seed == 7
