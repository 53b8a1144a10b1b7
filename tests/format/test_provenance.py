"""Provenance fields (spec 5.3): the training-data digest, run fields, round trips, the audit record."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import sldpack
from sldpack.errors import DataError, FormatError, UsageError
from sldpack.format import canonical_msgpack
from sldpack.format.audit_schema import MembershipAttack, MembershipRecord
from sldpack.format.manifest import AuditRecord
from sldpack.format.provenance import (
    audit_report_bytes,
    canonical_value,
    images_sha256,
    record_audit,
    run_provenance,
    source_data_sha256,
    training_data_sha256,
)
from sldpack.pipelines.sources import ArraySource

ROOT = Path(__file__).resolve().parents[2]


def _by_hand(parts: list[tuple[str, str, tuple[int, ...], bytes]]) -> str:
    """Spec 5.3.1 written out independently: tag, then NAME, DTYPE, SHAPE lines and the raw LE bytes."""
    h = hashlib.sha256(b"SLDP-TRAINING-DATA-1\n")
    for name, dt, shape, raw in parts:
        h.update(f"{name}\n{dt}\n{','.join(map(str, shape))}\n".encode())
        h.update(raw)
    return h.hexdigest()


def test_training_data_digest_known_answer() -> None:
    imgs = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    labels = np.array([1, 0])
    masks = np.array([[[0, 1, 1], [0, 0, 1]], [[1, 1, 1], [0, 0, 0]]], dtype=np.uint8)
    want = _by_hand([("images", "u1", (2, 2, 3), imgs.tobytes()),
                     ("labels", "i8", (2,), np.array([1, 0], "<i8").tobytes())])
    assert training_data_sha256(imgs, labels) == want
    assert training_data_sha256(imgs, labels.reshape(2, 1)) == want  # a label column is the same data
    assert training_data_sha256(imgs, labels.astype(np.int32)) == want  # labels are int64 by definition
    with_masks = _by_hand([("images", "u1", (2, 2, 3), imgs.tobytes()),
                           ("labels", "i8", (2,), np.array([1, 0], "<i8").tobytes()),
                           ("masks", "u1", (2, 2, 3), masks.tobytes())])
    assert training_data_sha256(imgs, labels, masks) == with_masks != want
    # the order of the items is part of the data
    assert training_data_sha256(imgs[::-1], labels[::-1]) != want
    # the known answer printed in spec 5.3.1
    assert want == "d140a353cba5b03abc076d5f0e164ead9fbb83b013ad6543610a4c9fa9601ed3"
    assert want == hashlib.sha256(b"SLDP-TRAINING-DATA-1\nimages\nu1\n2,2,3\n" + bytes(range(12))
                                  + b"labels\ni8\n2\n" + np.array([1, 0], "<i8").tobytes()).hexdigest()


def test_training_data_digest_byte_order_and_chunking(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 1, 4, 4)).astype(np.float32)  # > one update block of rows
    y = rng.integers(0, 3, 600)
    ref = _by_hand([("images", "f4", x.shape, x.astype("<f4").tobytes()),
                    ("labels", "i8", (600,), y.astype("<i8").tobytes())])
    assert training_data_sha256(x, y) == ref
    assert training_data_sha256(x.astype(">f4"), y.astype(">i8")) == ref  # values, not the host's byte order
    np.save(tmp_path / "x.npy", x)
    assert training_data_sha256(np.load(tmp_path / "x.npy", mmap_mode="r"), y) == ref


def test_training_data_digest_errors() -> None:
    with pytest.raises(DataError, match="do not match"):
        training_data_sha256(np.zeros((3, 2, 2)), np.zeros(2, np.int64))
    with pytest.raises(DataError, match="integers"):
        training_data_sha256(np.zeros((2, 2, 2)), np.zeros(2))
    with pytest.raises(DataError, match="masks"):
        training_data_sha256(np.zeros((2, 2, 2)), np.zeros(2, np.int64), np.zeros((3, 2, 2)))
    with pytest.raises(DataError, match="cannot be digested"):
        training_data_sha256(np.array([["a"], ["b"]]), np.zeros(2, np.int64))


def test_source_digest() -> None:
    x = np.random.default_rng(0).integers(0, 255, (10, 4, 4)).astype(np.uint8)
    y = np.arange(10) % 2
    src = ArraySource(x, y)
    assert source_data_sha256(src) == training_data_sha256(x, y)

    class Own:
        training_data_sha256 = "ab" * 32

    class Unknown:
        pass

    assert source_data_sha256(Own()) == "ab" * 32
    assert source_data_sha256(Unknown()) is None


def test_canonical_value_and_run_provenance() -> None:
    v = canonical_value({"a": (1, 2.5, np.float32(0.5)), "b": Path("x/y"), "c": float("nan"), "d": np.int64(3),
                         "e": None, "f": [True, {"g": float("-inf")}]})
    assert v == {"a": [1, 2.5, 0.5], "b": "x/y", "c": "nan", "d": 3, "e": None, "f": [True, {"g": "-inf"}]}
    canonical_msgpack.encode(v)  # encodable in the manifest
    src = ArraySource(np.zeros((4, 2, 2), np.uint8) + np.arange(4, dtype=np.uint8)[:, None, None],
                      np.array([0, 1, 0, 1]))
    p = run_provenance(src, {"lr": 0.1, "shape": (2, 2)}, argv=["/usr/local/bin/sldp", "distill", "--out", "r"])
    assert p["command_line"] == ("sldp", "distill", "--out", "r")
    assert p["sldpack_version"] == sldpack.__version__
    assert p["distill_config"] == {"lr": 0.1, "shape": [2, 2]}
    assert p["training_data_sha256"] == source_data_sha256(src)


def _manifest(prov: sldpack.Provenance) -> sldpack.Manifest:
    return sldpack.Manifest(arch=sldpack.ArchSpec("convnet@1", 1, 2, (4, 4)), init=sldpack.InitSpec(seed=1),
                            provenance=prov)


def _tensors() -> dict[str, sldpack.Tensor]:
    return {"images": sldpack.Tensor("images", np.ones((2, 1, 4, 4), np.float32)),
            "labels": sldpack.Tensor("labels", np.zeros((2, 2), np.float32)),
            "lrs": sldpack.Tensor("lrs", np.array([0.1], np.float32))}


def test_provenance_fields_round_trip(tmp_path: Path) -> None:
    rec = AuditRecord(verdict="FLAG", report_sha256="1" * 64, images_sha256="2" * 64, tool="t",
                      created="2026-12-01T00:00:00Z")
    prov = sldpack.Provenance("test", "2026-12-01T00:00:00Z", dataset_sha256="3" * 64, extra={"k": 1},
                              training_data_sha256="4" * 64, sldpack_version="0.1.0",
                              distill_config={"lr": 0.01, "arch_options": {"depth": 2}},
                              command_line=("sldp", "distill", "--data", "x.npz"), audit=rec)
    stored = sldpack.write(tmp_path / "a.sldp", _manifest(prov), _tensors())
    assert stored.provenance == prov
    with sldpack.open(tmp_path / "a.sldp") as f:
        assert f.manifest.provenance == prov
        assert f.manifest.provenance.audit is not None
        assert not f.manifest.provenance.audit.binds(f.manifest.tensors)  # "2"*64 is not these images
    # without the new fields a file's bytes are what they were: the keys are only written when set
    plain = sldpack.Provenance("test", "2026-12-01T00:00:00Z")
    assert set(plain.to_obj()) == {"tool", "created", "extra"}


_AUDIT = {"verdict": "PASS", "report_sha256": "1" * 64, "images_sha256": "2" * 64}
_ATTACK = {"attack": "loss", "target": "distilled", "auc": 0.52, "auc_low": 0.47, "auc_high": 0.57}
_MEM = {"verdict": "PASS", "flag_auc": 0.6, "attacks": [_ATTACK]}
_HIGH = {**_ATTACK, "auc": 0.75, "auc_low": 0.7, "auc_high": 0.8}  # lower bound above 0.6: the rule flags


def test_a_membership_record_round_trips_and_is_optional(tmp_path: Path) -> None:
    mem = MembershipRecord(verdict="FLAG", flag_auc=0.6, attacks=(
        MembershipAttack("loss", "distilled", 0.71, 0.65, 0.77, tpr_at_1pct_fpr=0.04, n=300),
        MembershipAttack("lira-offline", "trained", 0.9, 0.85, 0.95)))
    rec = AuditRecord(verdict="FLAG", report_sha256="1" * 64, images_sha256="2" * 64, membership=mem)
    prov = sldpack.Provenance("test", "2026-12-01T00:00:00Z", audit=rec)
    sldpack.write(tmp_path / "a.sldp", _manifest(prov), _tensors())
    with sldpack.open(tmp_path / "a.sldp") as f:
        assert f.manifest.provenance.audit == rec
    assert "membership" not in AuditRecord("PASS", "1" * 64, "2" * 64).to_obj()


@pytest.mark.parametrize(("key", "value", "field"), [
    ("audit", {"verdict": "MAYBE", "report_sha256": "1" * 64, "images_sha256": "2" * 64},
     "provenance.audit.verdict"),
    ("audit", {"verdict": "PASS", "report_sha256": "xyz", "images_sha256": "2" * 64},
     "provenance.audit.report_sha256"),
    ("audit", {"verdict": "PASS", "report_sha256": "1" * 64}, "provenance.audit.images_sha256"),
    ("audit", {**_AUDIT, "membership": {**_MEM, "verdict": "FLAG"}}, "provenance.audit.membership.verdict"),
    ("audit", {**_AUDIT, "membership": {**_MEM, "attacks": [_HIGH]}},
     "provenance.audit.membership.verdict"),  # the rule says FLAG: a PASS record contradicts it
    ("audit", {**_AUDIT, "verdict": "PASS", "membership": {**_MEM, "verdict": "FLAG",
                                                            "attacks": [_HIGH]}},
     "provenance.audit.verdict"),
    ("audit", {**_AUDIT, "membership": {**_MEM, "attacks": [{**_ATTACK, "target": "other"}]}},
     "provenance.audit.membership.attacks.0.target"),
    ("audit", {**_AUDIT, "membership": {**_MEM, "attacks": [{**_ATTACK, "target": "trained"}]}},
     "provenance.audit.membership.attacks"),
    ("audit", {**_AUDIT, "membership": {**_MEM, "attacks": [{**_ATTACK, "auc": 1.5}]}},
     "provenance.audit.membership.attacks.0.auc"),
    ("audit", {**_AUDIT, "membership": {**_MEM, "attacks": [{**_ATTACK, "auc_low": 0.58, "auc_high": 0.4}]}},
     "provenance.audit.membership.attacks.0.auc_low"),
    ("audit", {**_AUDIT, "membership": {**_MEM, "attacks": []}}, "provenance.audit.membership.attacks"),
    ("audit", {**_AUDIT, "membership": {**_MEM, "attacks": [{**_ATTACK, "n": 0}]}},
     "provenance.audit.membership.attacks.0.n"),
    ("command_line", ["sldp", 3], "provenance.command_line.1"),
    ("command_line", "sldp distill", "provenance.command_line"),
    ("training_data_sha256", "ABC", "provenance.training_data_sha256"),
    ("distill_config", [1], "provenance.distill_config"),
    ("sldpack_version", 1, "provenance.sldpack_version"),
])
def test_provenance_schema_errors(tmp_path: Path, key: str, value: object, field: str) -> None:
    good = sldpack.encode(_manifest(sldpack.Provenance("test", "2026-12-01T00:00:00Z")), _tensors())
    m = sldpack.read(good).manifest.to_obj()
    m["provenance"][key] = value
    mbytes = canonical_msgpack.encode(m)
    from sldpack.format.constants import HEADER_STRUCT, MAGIC
    from sldpack.format.container import header_digest

    f = sldpack.read(good)
    payload = good[f.payload_offset:]
    fields = (MAGIC, 1, 0, 0, len(mbytes), len(payload))
    data = HEADER_STRUCT.pack(*fields, header_digest(HEADER_STRUCT.pack(*fields, bytes(32)), mbytes))
    with pytest.raises(FormatError) as exc:
        sldpack.read(data + mbytes + payload)
    assert exc.value.code == "E_SCHEMA"
    assert exc.value.field == field


def test_record_audit_library(tmp_path: Path) -> None:
    f = tmp_path / "a.sldp"
    sldpack.write(f, _manifest(sldpack.Provenance("test", "2026-12-01T00:00:00Z")), _tensors())
    digest = images_sha256(f)
    with pytest.raises(UsageError, match="images changed while the audit ran"):
        record_audit(f, {"verdict": "PASS"}, images_digest="0" * 64)
    with pytest.raises(UsageError, match="PASS or FLAG"):
        record_audit(f, {"verdict": "ok"}, images_digest=digest)
    res = record_audit(f, {"verdict": "PASS", "n_distilled": 2}, images_digest=digest)
    body = res.report_path.read_bytes()
    assert body == audit_report_bytes({"verdict": "PASS", "n_distilled": 2}, digest)
    assert json.loads(body) == {"verdict": "PASS", "n_distilled": 2, "images_sha256": digest}
    with sldpack.open(f) as s:
        assert s.header.manifest_sha256 == res.manifest_sha256_after != res.manifest_sha256_before
        assert s.manifest.provenance.audit == res.record
        assert res.record.report_sha256 == hashlib.sha256(body).hexdigest()
    # a file without images cannot carry an audit record
    g = tmp_path / "b.sldp"
    sldpack.write(g, _manifest(sldpack.Provenance("t", "2026-12-01T00:00:00Z")),
                  {"lrs": sldpack.Tensor("lrs", np.array([0.1], np.float32))})
    with pytest.raises(DataError, match="no 'images' tensor"):
        images_sha256(g)


def test_record_audit_binds_a_membership_part_that_agrees_with_itself_and_the_verdict(tmp_path: Path) -> None:
    f = tmp_path / "a.sldp"
    sldpack.write(f, _manifest(sldpack.Provenance("test", "2026-12-01T00:00:00Z")), _tensors())
    digest = images_sha256(f)
    flag = MembershipRecord("FLAG", 0.6, (MembershipAttack("loss", "distilled", 0.8, 0.7, 0.9),))
    with pytest.raises(UsageError, match="must be FLAG"):
        record_audit(f, {"verdict": "PASS"}, images_digest=digest, membership=flag)
    with pytest.raises(UsageError, match="contradicts its attacks"):
        record_audit(f, {"verdict": "FLAG"}, images_digest=digest,
                     membership=MembershipRecord("PASS", 0.6, flag.attacks))
    res = record_audit(f, {"verdict": "FLAG", "membership": {"verdict": "FLAG"}}, images_digest=digest,
                       membership=flag)
    with sldpack.open(f) as s:
        audit = s.manifest.provenance.audit
        assert audit is not None and audit.membership == flag == res.record.membership


def test_record_audit_refuses_a_corrupt_file(tmp_path: Path) -> None:
    f = tmp_path / "a.sldp"
    sldpack.write(f, _manifest(sldpack.Provenance("test", "2026-12-01T00:00:00Z")), _tensors())
    digest = images_sha256(f)
    data = bytearray(f.read_bytes())
    data[-1] ^= 1  # a tensor byte: the structure is fine, a digest is not
    f.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="E_TENSOR_DIGEST"):
        record_audit(f, {"verdict": "PASS"}, images_digest=digest)
    assert f.read_bytes() == bytes(data)  # untouched
