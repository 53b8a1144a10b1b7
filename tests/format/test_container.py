"""Round trips, atomic writes, laziness and writer-side validation of the container."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

import sldpack
from sldpack.format.constants import HEADER_SIZE, MAGIC
from sldpack.format.container import header_digest


def _manifest(**kw: object) -> sldpack.Manifest:
    return sldpack.Manifest(arch=sldpack.ArchSpec("convnet@1", 1, 3, (8, 8)), init=sldpack.InitSpec(seed=5),
                            provenance=sldpack.Provenance("test", "2026-11-27T00:00:00Z"), **kw)  # type: ignore[arg-type]


def _tensors() -> dict[str, sldpack.Tensor]:
    rng = np.random.default_rng(0)
    return {
        "images": sldpack.Tensor("images", rng.standard_normal((2, 1, 8, 8)).astype(np.float32)),
        "labels": sldpack.Tensor("labels", rng.standard_normal((2, 3)).astype(np.float32)),
        "lrs": sldpack.Tensor("lrs", np.array([0.1, 0.05, 0.01], np.float32)),
        "bn.features.1.running_var": sldpack.Tensor("bn_stats", np.ones(4, np.float32)),
    }


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_round_trip_bytes_and_path(tmp_path: Path, compression: str) -> None:
    t = _tensors()
    stored = sldpack.write(tmp_path / "a.sldp", _manifest(), t, compression=compression)
    data = (tmp_path / "a.sldp").read_bytes()
    assert data == sldpack.encode(_manifest(), t, compression=compression)  # deterministic
    for src in (data, tmp_path / "a.sldp", str(tmp_path / "a.sldp")):
        with sldpack.read(src) as f:
            assert f.manifest == stored
            assert f.file_size == len(data)
            for name, tensor in t.items():
                np.testing.assert_array_equal(f.tensor(name), tensor.array)
                assert f.tensor(name).dtype == tensor.array.dtype


def test_manifest_tables_are_filled_by_writer() -> None:
    f = sldpack.read(sldpack.encode(_manifest(), _tensors()))
    info = f.manifest.tensors["images"]
    assert (info.role, info.dtype, info.shape) == ("images", "F32", (2, 1, 8, 8))
    raw = _tensors()["images"].array.astype("<f4").tobytes()
    assert info.sha256 == hashlib.sha256(raw).hexdigest()
    assert f.manifest.payload is not None
    assert f.manifest.payload.compression == "none"
    assert list(f.manifest.tensors) == sorted(_tensors(), key=lambda n: n.encode())


def test_storage_dtypes_f16_bf16() -> None:
    x = np.array([1.0, 1.00390625, -3.14159, 65504.0, 1e-8], np.float32)
    f = sldpack.read(sldpack.encode(_manifest(), {"a": sldpack.Tensor("extra", x, "F16"),
                                                  "b": sldpack.Tensor("extra", x, "BF16")}))
    np.testing.assert_array_equal(f.tensor("a"), x.astype(np.float16))
    b = f.tensor("b")
    assert b.dtype == np.float32
    # bf16 keeps 8 significant bits: relative error below 2^-8, and exact for 1.0
    assert b[0] == 1.0
    np.testing.assert_allclose(b, x, rtol=2**-8)
    assert f.manifest.tensors["b"].nbytes == 10


def test_bf16_rounds_to_nearest_even() -> None:
    # 1 + 2^-8 lies exactly halfway between bf16 1.0 and 1 + 2^-7: ties go to the even mantissa (1.0)
    # 1 + 3*2^-8 lies halfway between 1 + 2^-7 and 1 + 2^-6: even is 1 + 2^-6
    x = np.array([1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20], np.float32)
    f = sldpack.read(sldpack.encode(_manifest(), {"b": sldpack.Tensor("extra", x, "BF16")}))
    np.testing.assert_array_equal(f.tensor("b"), np.array([1.0, 1 + 2**-6, 1 + 2**-7], np.float32))


def test_open_is_lazy_inspect_does_not_read_payload(tmp_path: Path) -> None:
    data = bytearray(sldpack.encode(_manifest(), _tensors()))
    data[-1] ^= 0xFF  # damage the last tensor byte: only reading the payload can notice
    p = tmp_path / "damaged.sldp"
    p.write_bytes(bytes(data))
    with sldpack.open(p) as f:
        assert f.manifest.arch.id == "convnet@1"
        assert f.layout().payload_stored_bytes == f.header.payload_length
        with pytest.raises(sldpack.DigestError) as exc:
            f.verify()
    assert exc.value.code == "E_TENSOR_DIGEST"
    assert exc.value.path == str(p)


def test_layout_adds_up_to_file_size() -> None:
    for comp in ("none", "zstd"):
        data = sldpack.encode(_manifest(), _tensors(), compression=comp)
        lay = sldpack.read(data).layout()
        assert lay.header_bytes + lay.manifest_bytes + lay.payload_stored_bytes == len(data)
        assert lay.st_header_bytes + sum(lay.tensor_bytes.values()) == lay.payload_decoded_bytes


def test_atomic_write_leaves_old_file_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.sldp"
    target.write_bytes(b"old content")

    def boom(fd: int) -> None:
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="simulated"):
        sldpack.write(target, _manifest(), _tensors())
    assert target.read_bytes() == b"old content"
    assert [p.name for p in tmp_path.iterdir()] == ["out.sldp"]  # no temp file left behind


@pytest.mark.parametrize(
    ("tensors", "match"),
    [
        ({"": sldpack.Tensor("extra", np.zeros(1, np.float32))}, "name"),
        ({"x" * 300: sldpack.Tensor("extra", np.zeros(1, np.float32))}, "name"),
        ({"a": sldpack.Tensor("weights", np.zeros(1, np.float32))}, "role"),
        ({"a": sldpack.Tensor("extra", np.zeros(1, np.float32), "F8")}, "dtype"),
        ({"a": sldpack.Tensor("extra", np.zeros(1, np.complex64))}, "complex64"),
        ({"a": sldpack.Tensor("extra", np.zeros((1,) * 9, np.float32))}, "rank"),
        ({"lrs": sldpack.Tensor("lrs", np.array([0.1, np.nan], np.float32))}, "finite"),
    ],
)
def test_writer_rejects_bad_tensors(tensors: dict[str, sldpack.Tensor], match: str) -> None:
    with pytest.raises(sldpack.UsageError, match=match):
        sldpack.encode(_manifest(), tensors)


def test_writer_rejects_bad_compression() -> None:
    with pytest.raises(sldpack.UsageError, match="compression"):
        sldpack.encode(_manifest(), _tensors(), compression="gzip")


def test_tensor_unknown_name_is_usage_error() -> None:
    f = sldpack.read(sldpack.encode(_manifest(), _tensors()))
    with pytest.raises(sldpack.UsageError, match="no tensor named"):
        f.tensor("nope")


def test_missing_file_and_directory_are_io_errors(tmp_path: Path) -> None:
    for p in (tmp_path / "missing.sldp", tmp_path):
        with pytest.raises(sldpack.FormatError) as exc:
            sldpack.open(p)
        assert exc.value.code == "E_IO"


def test_newer_minor_is_accepted_newer_major_names_both_versions() -> None:
    data = bytearray(sldpack.encode(_manifest(), _tensors()))
    data[10:12] = (9).to_bytes(2, "little")
    with pytest.raises(sldpack.FormatError) as dig:  # the digest covers the header: no silent change
        sldpack.read(bytes(data))
    assert (dig.value.code, dig.value.offset) == ("E_MANIFEST_DIGEST", 32)
    mlen = int.from_bytes(data[16:24], "little")
    data[32:64] = header_digest(bytes(data[:32]), bytes(data[HEADER_SIZE:HEADER_SIZE + mlen]))
    assert sldpack.read(bytes(data)).header.version_minor == 9  # a writer of 1.9 is read by this 1.0 reader
    data[8:10] = (2).to_bytes(2, "little")
    with pytest.raises(sldpack.VersionError) as exc:
        sldpack.read(bytes(data))
    assert "SLDP 2.9" in str(exc.value)
    assert "1.x" in str(exc.value)


def test_error_carries_offset_expected_got() -> None:
    data = sldpack.encode(_manifest(), _tensors())
    with pytest.raises(sldpack.FormatError) as exc:
        sldpack.read(data + b"xx")
    err = exc.value
    assert (err.code, err.offset) == ("E_TRAILING", len(data))
    assert err.to_dict()["got"] == f"{len(data) + 2} bytes"
    assert isinstance(err, ValueError)  # callers may catch the standard exception too
    assert data.startswith(MAGIC)
    assert len(data) > HEADER_SIZE


def test_safetensors_interop() -> None:
    st = pytest.importorskip("safetensors.numpy")
    t = _tensors()
    f = sldpack.read(sldpack.encode(_manifest(), t))
    start = f.payload_offset
    decoded = sldpack.encode(_manifest(), t)[start:]
    loaded = st.load(decoded)
    for name, tensor in t.items():
        np.testing.assert_array_equal(loaded[name], tensor.array)


def test_written_file_has_normal_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    p = tmp_path / "sub" / "perm.sldp"  # missing parent folders are created
    sldpack.write(p, _manifest(), _tensors())
    assert p.stat().st_mode & 0o777 == 0o666 & ~umask


def test_disallowed_tensor_dtype_is_e_dtype_in_code_and_message(tmp_path: Path) -> None:
    # the code is chosen when the error is made: the rendered message and .code cannot disagree
    obj = sldpack.encode(_manifest(), _tensors())
    with sldpack.read(obj) as f:
        raw = f.manifest.to_obj()
    raw["tensors"]["images"]["dtype"] = "C64"
    with pytest.raises(sldpack.FormatError) as e:
        sldpack.Manifest.from_obj(raw)
    assert e.value.code == "E_DTYPE"
    assert e.value.field == "tensors.images.dtype"
    assert str(e.value).startswith("[E_DTYPE] dtype not allowed") and "got C64" in str(e.value)


_DECISION = sldpack.DecisionRule(rule="eq9", positive="P", negative="N", ignored=("I",), delta=0.3,
                                 delta_source="calibrated",
                                 calibration=sldpack.Calibration("sensitivity>=0.9", images=40, hm=0.71,
                                                                 iteration=120, sensitivity=0.9))


def test_writer_writes_the_lowest_version_that_carries_the_content() -> None:
    plain = sldpack.encode(_manifest(), _tensors())
    assert sldpack.read(plain).header.version_minor == 0  # no 1.1 key: a 1.0 file, as a 1.0 writer wrote it
    with_rule = sldpack.encode(_manifest(labels=sldpack.LabelSpec(("I", "N", "P")), decision=_DECISION),
                               _tensors())
    f = sldpack.read(with_rule)
    assert (f.header.version_major, f.header.version_minor) == (1, 1)
    assert f.manifest.decision == _DECISION  # typed round trip
    assert f.manifest.decision is not None and f.manifest.decision.calibration is not None
    assert f.manifest.decision.calibration.iteration == 120


def test_repack_keeps_a_higher_minor_and_raises_a_lower_one() -> None:
    from sldpack.format.container import assemble

    f = sldpack.read(sldpack.encode(_manifest(decision=_DECISION), _tensors()))
    payload = sldpack.encode(_manifest(decision=_DECISION), _tensors())[HEADER_SIZE + f.header.manifest_length:]
    assert sldpack.read(assemble(f.manifest, payload, version=(1, 0))).header.version_minor == 1
    assert sldpack.read(assemble(f.manifest, payload, version=(1, 7))).header.version_minor == 7


@pytest.mark.parametrize(("change", "field"), [
    ({"delta": 0.0}, "decision.delta"),
    ({"rule": "argmax"}, "decision.negative"),
    ({"delta_source": "default"}, "decision.calibration"),
    ({"ignored": ["N"]}, "decision.ignored.0"),
    ({"positive": "X"}, "decision.positive"),
])
def test_bad_decision_is_schema_error_naming_the_field(change: dict[str, object], field: str) -> None:
    from sldpack.format import canonical_msgpack as cm
    from sldpack.format.container import header_digest

    data = sldpack.encode(_manifest(labels=sldpack.LabelSpec(("I", "N", "P")), decision=_DECISION), _tensors())
    mlen = int.from_bytes(data[16:24], "little")
    obj, _ = cm.decode(data[HEADER_SIZE:HEADER_SIZE + mlen])
    obj["decision"].update(change)
    m = cm.encode(obj)
    head = bytearray(data[:HEADER_SIZE])
    head[16:24] = len(m).to_bytes(8, "little")
    head[32:64] = header_digest(bytes(head[:32]), m)
    with pytest.raises(sldpack.FormatError) as exc:
        sldpack.read(bytes(head) + m + data[HEADER_SIZE + mlen:])
    _, offsets = cm.decode(m)
    assert (exc.value.code, exc.value.field, exc.value.offset) == ("E_SCHEMA", field, HEADER_SIZE + offsets[field])
