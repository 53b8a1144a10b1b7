"""The spec's tables and the constants module must agree, so neither can drift silently."""

from __future__ import annotations

import itertools
import re
import struct
from pathlib import Path

from sldpack.format import constants as C

SPEC = (Path(__file__).resolve().parents[2] / "spec" / "SLDP-1.md").read_text(encoding="utf-8")


def _table(name: str) -> list[list[str]]:
    """Rows (without header) of the markdown table after ``<!-- table:name -->``."""
    at = SPEC.index(f"<!-- table:{name} -->")
    rows = []
    for line in SPEC[at:].splitlines()[1:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows[2:]  # drop header and separator


def test_header_layout() -> None:
    rows = _table("header")
    fields = [(int(r[0]), int(r[1]), r[2], r[3]) for r in rows]
    expected = [
        (C.OFF_MAGIC, 8, "bytes", "magic"),
        (C.OFF_VERSION_MAJOR, 2, "u16", "version_major"),
        (C.OFF_VERSION_MINOR, 2, "u16", "version_minor"),
        (C.OFF_RESERVED, 4, "u32", "reserved"),
        (C.OFF_MANIFEST_LENGTH, 8, "u64", "manifest_length"),
        (C.OFF_PAYLOAD_LENGTH, 8, "u64", "payload_length"),
        (C.OFF_MANIFEST_SHA256, 32, "bytes", "manifest_sha256"),
    ]
    assert fields == expected
    assert sum(f[1] for f in fields) == C.HEADER_SIZE == 64
    # offsets are contiguous and the struct format agrees with the sizes/types
    assert all(a[0] + a[1] == b[0] for a, b in itertools.pairwise(fields))
    fmt = {"u16": "H", "u32": "I", "u64": "Q"}
    assert C.HEADER_STRUCT.format == "<" + "".join(f"{s}s" if t == "bytes" else fmt[t] for _, s, t, _ in fields)
    magic_hex = re.search(r"`([0-9A-F ]+)`", rows[0][4])
    assert magic_hex is not None
    assert bytes.fromhex(magic_hex.group(1)) == C.MAGIC
    assert struct.calcsize(C.HEADER_STRUCT.format) == 64


def test_version() -> None:
    assert f"Version {C.VERSION_MAJOR}.{C.VERSION_MINOR}" in SPEC
    rows = {r[3]: r[4] for r in _table("header")}
    assert rows["version_major"].startswith(str(C.VERSION_MAJOR))
    assert rows["version_minor"].startswith(str(C.VERSION_MINOR))
    assert "little-endian" in SPEC
    assert C.BYTE_ORDER == "little"


def test_limits() -> None:
    got = {r[0]: int(r[1]) for r in _table("limits")}
    expected = {name: getattr(C, name) for name in got}
    assert got == expected
    assert set(got) == {"MAX_MANIFEST_BYTES", "MAX_TENSORS", "MAX_RANK", "MAX_TENSOR_NAME_BYTES",
                        "MAX_ST_HEADER_BYTES", "MAX_DECODED_PAYLOAD", "MAX_MSGPACK_DEPTH"}


def test_dtypes() -> None:
    got = {r[0]: int(r[1]) for r in _table("dtypes")}
    assert got == C.DTYPE_ITEMSIZE
    assert list(got) == list(C.DTYPE_ITEMSIZE)


def test_roles() -> None:
    assert tuple(r[0] for r in _table("roles")) == C.ROLES


def test_error_codes() -> None:
    got = {r[0]: r[1] for r in _table("errors")}
    assert got == C.ERROR_CODES


def test_compressions_and_transforms_named_in_spec() -> None:
    for c in C.COMPRESSIONS:
        assert f"`{c}`" in SPEC
    for t in C.LABEL_TRANSFORMS:
        assert f"`{t}`" in SPEC


def test_init_schemes_arch_id_and_roles() -> None:
    from sldpack.init import SCHEMES

    assert tuple(s for s in SCHEMES if s != "constant") == C.INIT_SCHEMES
    assert all(f"`{s}`" in SPEC for s in C.INIT_SCHEMES)
    assert f"`{C.ARCH_ID_PATTERN}`" in SPEC
    for good in ("convnet@1", "resnet18@1", "vgg16@12", "a@0"):
        assert re.match(C.ARCH_ID_PATTERN, good)
    for bad in ("convnet", "ConvNet@1", "convnet@01", "1net@1", "convnet@1 ", "conv-net@1"):
        assert not re.match(C.ARCH_ID_PATTERN, bad)
    assert [C.role_for_name(n) for n in ("images", "labels", "lrs", "bn.x.running_var", "bn.", "theta0.w",
                                         "imagesx", "extra.u")] == [
        "images", "labels", "lrs", "bn_stats", "extra", "theta0_check", "extra", "extra"]


def test_versions_table_names_every_key_that_raises_the_minor() -> None:
    rows = _table("versions")
    keys = {r[1].strip("`"): int(r[0].split(".")[1]) for r in rows if r[1] != "–"}
    assert keys == C.MINOR_FOR_ROOT_KEY
    assert max(int(r[0].split(".")[1]) for r in rows) == C.VERSION_MINOR
    assert all(f"| {k} | map | no |" in SPEC for k in C.MINOR_FOR_ROOT_KEY)  # and the root-key table lists them


def test_decision_enumerations_named_in_spec() -> None:
    for v in (*C.DECISION_RULES, *C.DECISION_DELTA_SOURCES, "max_hm", "sensitivity>=X"):
        assert f"`{v}`" in SPEC
    for good in ("max_hm", "sensitivity>=0.9", "sensitivity>=1", "sensitivity>=0", "sensitivity>=1.0"):
        assert re.match(C.DECISION_TARGET_PATTERN, good), good
    for bad in ("max_auc", "sensitivity>=1.5", "sensitivity>=.9", "sensitivity>= 0.9", "sensitivity>=0.1234567"):
        assert not re.match(C.DECISION_TARGET_PATTERN, bad), bad
