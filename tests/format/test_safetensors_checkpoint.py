"""The lenient safetensors reader/writer for user checkpoints (``__metadata__`` allowed), against the
reference ``safetensors`` package, and its rejection of hostile files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sldpack.errors import FormatError
from sldpack.format.safetensors_codec import encode_checkpoint, read_checkpoint, storage_dtype

st_numpy = pytest.importorskip("safetensors.numpy")

ARRAYS = {"b.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "a.count": np.array(7, dtype=np.int64),
          "c.half": np.array([1.5, -2.0], dtype=np.float16), "d.bytes": np.arange(5, dtype=np.uint8)}


def test_round_trip_and_reference_reader_agree() -> None:
    data = encode_checkpoint(ARRAYS, {"format": "pt", "arch": "convnet@1"})
    ref = st_numpy.load(data)
    got, meta = read_checkpoint(data)
    assert meta == {"format": "pt", "arch": "convnet@1"}
    assert set(got) == set(ref) == set(ARRAYS)
    for k, v in ARRAYS.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape and np.array_equal(got[k], v)
        assert np.array_equal(ref[k], v)


def test_reads_files_of_the_reference_writer() -> None:
    data = st_numpy.save(ARRAYS, metadata={"k": "v"})
    got, meta = read_checkpoint(data)
    assert meta == {"k": "v"}
    assert all(np.array_equal(got[k], v) for k, v in ARRAYS.items())


def test_dtype_names_come_from_the_one_table() -> None:
    assert storage_dtype(np.dtype("float32")) == "F32"
    assert storage_dtype("torch.int64") == "I64"
    assert storage_dtype(np.dtype("complex64")) is None
    with pytest.raises(FormatError) as e:
        encode_checkpoint({"z": np.zeros(2, dtype=np.complex64)})
    assert e.value.code == "E_DTYPE"


def _file(header: object, data: bytes = b"") -> bytes:
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data


@pytest.mark.parametrize(("blob", "code"), [
    (b"\x01\x00", "E_TRUNCATED"),
    ((1 << 40).to_bytes(8, "little") + b"{}", "E_LIMIT"),
    ((100).to_bytes(8, "little") + b"{}", "E_ST_HEADER"),
    (_file([1, 2]), "E_ST_HEADER"),
    (_file({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4), "E_ST_OFFSETS"),
    (_file({"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8), "E_ST_OFFSETS"),
    (_file({"x": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8), "E_DTYPE"),
    (_file({"x": {"dtype": "F32"}}), "E_ST_HEADER"),
])
def test_hostile_files_are_rejected_with_a_code(blob: bytes, code: str) -> None:
    with pytest.raises(FormatError) as e:
        read_checkpoint(blob)
    assert e.value.code == code
