#!/usr/bin/env python3
"""Generate the SLDP 1.x conformance corpus (valid/, invalid/, index.json).

Run from the repository root: ``python spec/conformance/make_corpus.py``. The output is deterministic;
``tests/format/test_conformance.py`` checks that regenerating it reproduces the committed bytes exactly, so the
valid files double as golden files that every later reader must keep reading.

Expected offsets of invalid cases are computed here from how each defect is built (where the damaged field
sits), not by running the reader.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

import sldpack
from sldpack.format import canonical_msgpack as cm
from sldpack.format.conformance import jsonable
from sldpack.format.constants import HEADER_DIGEST_PREFIX, HEADER_SIZE, HEADER_STRUCT, MAGIC, MAX_TENSORS
from sldpack.format.manifest import AuditRecord

ROOT = Path(__file__).resolve().parent
CREATED = "2026-11-27T00:00:00Z"
TOOL = "sldpack corpus generator"


# --- building blocks ---------------------------------------------------------------------------

def base_manifest(**kw: Any) -> sldpack.Manifest:
    return sldpack.Manifest(
        arch=sldpack.ArchSpec("convnet@1", in_channels=1, num_classes=3, image_size=(2, 2),
                              options={"depth": 1, "width": 4}),
        init=sldpack.InitSpec(seed=1),
        provenance=sldpack.Provenance(tool=TOOL, created=CREATED),
        **kw,
    )


def small_tensors() -> dict[str, sldpack.Tensor]:
    return {
        "images": sldpack.Tensor("images", np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2) / 4),
        "labels": sldpack.Tensor("labels", np.array([[2.0, -1.0, 0.5]], dtype=np.float32)),
        "lrs": sldpack.Tensor("lrs", np.array([0.01, 0.02], dtype=np.float32)),
    }


def split(data: bytes) -> tuple[bytes, bytes, dict[str, Any]]:
    """(manifest bytes, payload bytes, decoded manifest obj) of a valid file."""
    _, _, _, _, mlen, _, _ = HEADER_STRUCT.unpack(data[:HEADER_SIZE])
    mbytes = data[HEADER_SIZE:HEADER_SIZE + mlen]
    obj, _ = cm.decode(mbytes)
    return mbytes, data[HEADER_SIZE + mlen:], obj


def assemble(mbytes: bytes, payload: bytes, *, magic: bytes = MAGIC, major: int = 1, minor: int = 0,
             reserved: int = 0, mlen: int | None = None, plen: int | None = None,
             digest: bytes | None = None) -> bytes:
    header = HEADER_STRUCT.pack(magic, major, minor, reserved, len(mbytes) if mlen is None else mlen,
                                len(payload) if plen is None else plen, bytes(32))[:HEADER_DIGEST_PREFIX]
    # manifest_sha256 covers header bytes 0..31, then the manifest (spec section 9)
    header += hashlib.sha256(header + mbytes).digest() if digest is None else digest
    return header + mbytes + payload


def key_offset_of(obj: dict[str, Any], path: str) -> int:
    """Absolute file offset of the map *key* whose value is at ``path`` in the canonical encoding of ``obj``."""
    keys: dict[str, int] = {}
    cm.decode(cm.encode(obj), key_offsets=keys)
    return HEADER_SIZE + keys[path]


def offset_of(obj: dict[str, Any], path: str) -> int:
    """Absolute file offset of the value at ``path`` in the canonical encoding of ``obj``."""
    _, offsets = cm.decode(cm.encode(obj))
    return HEADER_SIZE + offsets[path]


def with_user_raw(obj: dict[str, Any], user_value: bytes) -> tuple[bytes, int]:
    """Manifest bytes whose ``user`` value (the last key) is ``user_value`` verbatim; also its offset."""
    o = dict(obj)
    o["user"] = {}
    canon = cm.encode(o)
    assert canon.endswith(b"\x80")  # "user" sorts last; its value is the empty fixmap
    prefix = canon[:-1]
    return prefix + user_value, HEADER_SIZE + len(prefix)


# --- the cases ---------------------------------------------------------------------------------

Case = dict[str, Any]


def valid_cases() -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    out["minimal"] = sldpack.encode(base_manifest(), small_tensors())

    full_manifest = base_manifest(
        distill=sldpack.DistillSpec(method="sldd", steps=2, epochs=2, schedule=((0, 1), (1,)),
                                    label_transform="softmax"),
        labels=sldpack.LabelSpec(("I", "N", "P")),
        preprocessing=sldpack.Preprocessing(mean=(0.5,), std=(0.25,), image_size=(2, 2), channels=1,
                                            options={"patch": {"size": 64, "stride": 32}}),
        replay=sldpack.ReplayFingerprint(theta_opt_sha256="ab" * 32, probe_seed=7, probe_count=2,
                                         probe_logits=(0.25, -1.5, 3.0, 0.0, 1e-3, -2.5), tolerance=1e-4,
                                         reference={"device": "cpu", "threads": 1}),
        user={"hospital": "Zürich Kantonsspital", "nested": {"a": [1, -2, 3.5, None, True]}, "raw": b"\x00\xff"},
    )
    full_tensors = {
        "images": sldpack.Tensor("images", np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 1, 2, 2), "F16"),
        "labels": sldpack.Tensor("labels", np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3]], np.float32), "BF16"),
        "lrs": sldpack.Tensor("lrs", np.array([0.01, 0.02, 0.03, 0.04], dtype=np.float32)),
        "bn.features.1.running_mean": sldpack.Tensor("bn_stats", np.array([0.5, -0.5, 0.0, 1.0], np.float32)),
        "bn.features.1.running_var": sldpack.Tensor("bn_stats", np.array([1.0, 2.0, 0.5, 0.25], np.float32)),
        "extra.f64": sldpack.Tensor("extra", np.array([math.pi, -math.e], dtype=np.float64)),
        "extra.i64": sldpack.Tensor("extra", np.array([[-(2**40), 7]], dtype=np.int64)),
        "extra.u8": sldpack.Tensor("extra", np.array([0, 128, 255], dtype=np.uint8)),
        "extra.i32": sldpack.Tensor("extra", np.array([-5, 5], dtype=np.int32)),
        "extra.Ω-unicode": sldpack.Tensor("extra", np.array([1.0], dtype=np.float32)),
    }
    out["full"] = sldpack.encode(full_manifest, full_tensors)
    out["full_zstd"] = sldpack.encode(full_manifest, full_tensors, compression="zstd", level=19)
    out["empty_and_scalar_tensors"] = sldpack.encode(base_manifest(), {
        **small_tensors(),
        "extra.empty": sldpack.Tensor("extra", np.zeros((0, 3), dtype=np.float32)),
        "extra.scalar": sldpack.Tensor("extra", np.array(42, dtype=np.int64)),
        "extra.empty_u8": sldpack.Tensor("extra", np.zeros((0,), dtype=np.uint8)),
    })
    # a file from a newer minor version: unknown keys must be ignored, the file read normally
    _, payload, obj = split(out["minimal"])
    obj["future_section"] = {"anything": [1, 2, 3]}
    obj["arch"]["future_option"] = "ignored by 1.0 readers"
    out["newer_minor_unknown_keys"] = assemble(cm.encode(obj), payload, minor=7)
    # 1.1: the image-level decision rule (spec 5.10); the writer picks version 1.1 because of it
    labelled = {"labels": sldpack.LabelSpec(("I", "N", "P"))}
    out["decision_calibrated"] = sldpack.encode(base_manifest(**labelled, decision=sldpack.DecisionRule(
        rule="eq9", positive="P", negative="N", ignored=("I",), delta=0.275, delta_source="calibrated",
        calibration=sldpack.Calibration(target="max_hm", images=34, hm=0.8125, iteration=250,
                                        sensitivity=0.8125, specificity=0.8125))), small_tensors())
    out["decision_argmax"] = sldpack.encode(base_manifest(
        labels=sldpack.LabelSpec(("normal", "pneumonia", "other")),
        decision=sldpack.DecisionRule(rule="argmax", positive="pneumonia")), small_tensors())
    # 1.1: the model card (spec 5.11), every field, next to the decision rule it refers to
    out["card_full"] = sldpack.encode(base_manifest(
        labels=sldpack.LabelSpec(("normal", "pneumonia")),
        decision=sldpack.DecisionRule(rule="argmax", positive="pneumonia"),
        card=sldpack.ModelCard(
            name="Pneumonia screening (PneumoniaMNIST, ConvNet)", summary="Flags paediatric chest X-rays with "
            "signs of pneumonia.", intended_use="Research on sharing distilled data; not for diagnosis.",
            limitations="28 px images of one hospital's paediatric patients; not tested on adults.",
            modality="chest X-ray", license="CC-BY-4.0", data_license="CC-BY-4.0", contact="imaging-ai@example.org",
            label_meanings={"normal": "no pneumonia", "pneumonia": "bacterial or viral pneumonia"},
            input_range=(0.0, 255.0), input_size=(28, 28),
            dataset=sldpack.CardDataset(name="PneumoniaMNIST", version="MedMNIST v2",
                                        citation="Yang et al., Scientific Data 10, 41 (2023)",
                                        url="https://medmnist.com"),
            evaluation=(sldpack.CardEvaluation(metric="hm", value=0.8125, n=624, split="the file's test split",
                                               ci95=(0.78, 0.84)),
                        sldpack.CardEvaluation(metric="auc", value=0.9, n=624, split="the file's test split")))),
        small_tensors())
    return out


def invalid_cases() -> list[tuple[str, str, bytes, str, int]]:
    """(name, description, bytes, code, offset)."""
    cases: list[tuple[str, str, bytes, str, int]] = []

    def add(name: str, desc: str, data: bytes, code: str, offset: int) -> None:
        cases.append((name, desc, data, code, offset))

    good = sldpack.encode(base_manifest(), small_tensors())
    mbytes, payload, obj = split(good)
    size = len(good)

    # header
    add("empty_file", "zero bytes", b"", "E_TRUNCATED", 0)
    add("header_truncated", "file cut inside the fixed header", good[:30], "E_TRUNCATED", 30)
    add("header_truncated_magic_prefix", "5-byte file: the start of the magic", good[:5], "E_TRUNCATED", 5)
    add("short_file_not_magic", "10-byte file that does not start like the magic", b"SLDP file\n", "E_MAGIC", 0)
    add("text_mode_short_file", "20-byte file whose magic went through CRLF->LF", good[:5] + good[6:21],
        "E_TEXT_MODE", 0)
    add("text_mode_lone_lf_to_crlf", "only the lone final LF of the magic turned into CRLF",
        good[:7] + b"\r\n" + good[8:], "E_TEXT_MODE", 0)
    add("magic_near_text_mode", "magic bytes 5-7 are CR CR X: not a text-mode pattern",
        good[:5] + b"\r\rX" + good[8:], "E_MAGIC", 0)
    add("version_minor_flipped", "version_minor 0 -> 255 (one byte flipped), digest not updated",
        good[:10] + b"\xff" + good[11:], "E_MANIFEST_DIGEST", 32)
    add("bad_magic", "a PNG signature instead of the SLDP magic", b"\x89PNG\r\n\x1a\n" + good[8:], "E_MAGIC", 0)
    add("text_mode_crlf_to_lf", "CRLF in the magic turned into LF by a text-mode copy",
        good[:5] + good[6:], "E_TEXT_MODE", 0)
    add("text_mode_lf_to_crlf", "LF in the magic turned into CRLF by a text-mode copy",
        good[:7] + b"\r" + good[7:], "E_TEXT_MODE", 0)
    add("version_major_2", "major version 2", assemble(mbytes, payload, major=2), "E_VERSION_MAJOR", 8)
    add("version_major_0", "major version 0", assemble(mbytes, payload, major=0), "E_VERSION_MAJOR", 8)
    add("reserved_nonzero", "reserved header field set", assemble(mbytes, payload, reserved=1), "E_RESERVED", 12)
    add("manifest_length_over_limit", "manifest_length of 1 TiB",
        assemble(mbytes, payload, mlen=1 << 40), "E_LIMIT", 16)
    add("payload_length_over_limit", "payload_length of 2^63",
        assemble(mbytes, payload, plen=1 << 63), "E_LIMIT", 24)
    add("truncated_in_manifest", "file cut inside the manifest", good[:HEADER_SIZE + 10], "E_TRUNCATED",
        HEADER_SIZE + 10)
    add("truncated_in_payload", "last byte missing", good[:-1], "E_TRUNCATED", size - 1)
    add("trailing_bytes", "one byte after the declared end", good + b"\x00", "E_TRAILING", size)
    add("manifest_digest_mismatch", "one manifest byte changed, digest not updated",
        good[:HEADER_SIZE + 5] + bytes([good[HEADER_SIZE + 5] ^ 0x01]) + good[HEADER_SIZE + 6:],
        "E_MANIFEST_DIGEST", 32)

    # msgpack
    def raw_top(items: list[tuple[str, bytes]]) -> bytes:
        n = len(items)
        head = bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")
        return head + b"".join(cm.encode(k) + v for k, v in items)

    canon_items = [(k, cm.encode(obj[k])) for k in sorted(obj)]
    dup = canon_items[:1] + canon_items[:1] + canon_items[1:]
    m = raw_top(dup)
    add("msgpack_duplicate_key", "top-level key 'arch' appears twice", assemble(m, payload),
        "E_MSGPACK_DUPLICATE_KEY", HEADER_SIZE + 1 + len(cm.encode("arch")) + len(canon_items[0][1]))
    swapped = [canon_items[1], canon_items[0], *canon_items[2:]]
    m = raw_top(swapped)
    add("msgpack_unsorted_keys", "top-level keys out of order", assemble(m, payload),
        "E_MSGPACK_NONCANONICAL", HEADER_SIZE + 1 + len(cm.encode(swapped[0][0])) + len(swapped[0][1]))
    # init.seed = 1 written as uint16
    init_raw = b"\x83" + cm.encode("rng") + cm.encode(obj["init"]["rng"]) + cm.encode("scheme") + \
        cm.encode(obj["init"]["scheme"]) + cm.encode("seed") + b"\xcd\x00\x01"
    items = [(k, init_raw if k == "init" else v) for k, v in canon_items]
    m = raw_top(items)
    add("msgpack_nonminimal_int", "seed 1 encoded as uint16", assemble(m, payload), "E_MSGPACK_NONCANONICAL",
        HEADER_SIZE + m.index(b"\xcd\x00\x01"))
    m, at = with_user_raw(obj, b"\x81\xa1x\xca\x3f\x80\x00\x00")
    add("msgpack_float32", "a float32 value in user metadata", assemble(m, payload), "E_MSGPACK_TYPE", at + 3)
    m, at = with_user_raw(obj, b"\x81\xa1x\xd4\x01\x00")
    add("msgpack_ext", "an ext value in user metadata", assemble(m, payload), "E_MSGPACK_TYPE", at + 3)
    m, at = with_user_raw(obj, b"\x81\x01\xc0")
    add("msgpack_int_key", "a map with an integer key", assemble(m, payload), "E_MSGPACK_TYPE", at + 1)
    m, at = with_user_raw(obj, b"\x81\xa1x\xa2\xff\xfe")
    add("msgpack_invalid_utf8", "a string that is not UTF-8", assemble(m, payload), "E_MSGPACK", at + 3)
    m, at = with_user_raw(obj, b"\x83\xa1a\xc0\xa1b\xc0\xa1a\xc0")
    add("msgpack_repeated_key_not_adjacent", "keys a, b, a: compared with the previous key only, 'a' < 'b'",
        assemble(m, payload), "E_MSGPACK_NONCANONICAL", at + 7)
    m, at = with_user_raw(obj, b"\x81\xa1x\xc1")
    add("msgpack_reserved_byte", "the never-used type byte 0xc1", assemble(m, payload), "E_MSGPACK", at + 3)
    m, at = with_user_raw(obj, b"\x81\xa1x\xcb" + struct.pack(">d", math.nan))
    add("msgpack_nan", "NaN in user metadata", assemble(m, payload), "E_NONFINITE", at + 3)
    m, at = with_user_raw(obj, b"\x81\xa1x" + b"\x91" * 40 + b"\xc0")
    # root map is depth 0, user map depth 1, its value depth 2: the 31st nested array hits depth 33
    add("msgpack_too_deep", "arrays nested 40 deep", assemble(m, payload), "E_MSGPACK_DEPTH", at + 3 + 31)
    m, at = with_user_raw(obj, b"\x81\xa1x\xdd\xff\xff\xff\xff")
    add("msgpack_huge_count", "array declaring 4 billion elements", assemble(m, payload), "E_MSGPACK", at + 3)
    m, at = with_user_raw(obj, b"\x81\xa1x\xc0\xc0")
    add("msgpack_trailing_value", "a second value after the manifest map", assemble(m, payload), "E_MSGPACK",
        at + 4)
    m, at = with_user_raw(obj, b"\x81\xa1x\xa5ab")
    add("msgpack_truncated_string", "a string running past the manifest's end", assemble(m, payload),
        "E_MSGPACK", at + 3)
    m, at = with_user_raw(obj, b"\x81\xa1x\xd9\x03abc")
    add("msgpack_nonminimal_str", "a 3-byte string with a str8 prefix", assemble(m, payload),
        "E_MSGPACK_NONCANONICAL", at + 3)
    m, at = with_user_raw(obj, b"\x81\xa1x\xd0\x05")
    add("msgpack_signed_positive", "a positive integer in a signed form", assemble(m, payload),
        "E_MSGPACK_NONCANONICAL", at + 3)

    # schema
    def schema(name: str, desc: str, mutate: Callable[[dict[str, Any]], None], code: str, path: str,
               *, minor: int = 0) -> None:
        o = json.loads(json.dumps(jsonable(obj)))  # deep copy
        mutate(o)
        add(name, desc, assemble(cm.encode(o), payload, minor=minor), code,
            offset_of(o, path) if path else HEADER_SIZE)

    schema("schema_missing_arch", "required section 'arch' missing", lambda o: o.pop("arch"), "E_SCHEMA", "")
    schema("schema_seed_is_string", "init.seed is a string", lambda o: o["init"].update(seed="1"), "E_SCHEMA",
           "init.seed")
    schema("schema_seed_negative", "init.seed is negative", lambda o: o["init"].update(seed=-1), "E_SCHEMA",
           "init.seed")
    schema("schema_arch_id_unversioned", "arch.id without @version", lambda o: o["arch"].update(id="convnet"),
           "E_SCHEMA", "arch.id")
    schema("schema_unknown_role", "tensor role not in the spec",
           lambda o: o["tensors"]["lrs"].update(role="weights"), "E_SCHEMA", "tensors.lrs.role")
    schema("schema_bad_dtype", "tensor dtype F8", lambda o: o["tensors"]["images"].update(dtype="F8"),
           "E_DTYPE", "tensors.images.dtype")
    schema("schema_rank_over_limit", "a rank-9 shape",
           lambda o: o["tensors"]["images"].update(shape=[1] * 9), "E_LIMIT", "tensors.images.shape")
    schema("schema_digest_uppercase", "sha256 in uppercase hex",
           lambda o: o["tensors"]["images"].update(sha256=o["tensors"]["images"]["sha256"].upper()),
           "E_SCHEMA", "tensors.images.sha256")
    schema("schema_stored_size_mismatch", "payload.stored_size differs from the header",
           lambda o: o["payload"].update(stored_size=o["payload"]["stored_size"] + 1), "E_SCHEMA",
           "payload.stored_size")
    schema("schema_uncompressed_sizes_differ", "compression none but decoded_size != stored_size",
           lambda o: o["payload"].update(decoded_size=o["payload"]["decoded_size"] + 8), "E_SCHEMA",
           "payload.decoded_size")
    schema("schema_decoded_size_over_limit", "decoded_size of 8 GiB",
           lambda o: o["payload"].update(decoded_size=1 << 33), "E_LIMIT", "payload.decoded_size")
    schema("schema_unknown_compression", "compression 'gzip'",
           lambda o: o["payload"].update(compression="gzip"), "E_SCHEMA", "payload.compression")
    def keyed(name: str, desc: str, mutate: Callable[[dict[str, Any]], None], code: str, path: str) -> None:
        o = json.loads(json.dumps(jsonable(obj)))
        mutate(o)
        add(name, desc, assemble(cm.encode(o), payload), code, key_offset_of(o, path))

    def renamed(new: str) -> Callable[[dict[str, Any]], None]:
        return lambda o: o["tensors"].update({new: o["tensors"].pop("lrs")})

    keyed("schema_empty_tensor_name", "a tensor named ''", renamed(""), "E_NAME", "tensors.")
    keyed("schema_name_too_long", "a 257-byte tensor name (E_NAME, not E_LIMIT)", renamed("extra." + "n" * 251),
          "E_NAME", "tensors.extra." + "n" * 251)
    keyed("schema_name_control_char", "a tensor name with a TAB", renamed("extra.a\tb"), "E_NAME", "tensors.extra.a\tb")
    add("schema_root_not_map", "the manifest is an array, not a map", assemble(cm.encode([1, 2]), payload),
        "E_SCHEMA", HEADER_SIZE)
    schema("schema_role_name_disagree", "tensor 'images' with role extra",
           lambda o: o["tensors"]["images"].update(role="extra"), "E_SCHEMA", "tensors.images.role")
    schema("schema_role_bn_prefix", "tensor 'bn.x' with role extra", lambda o: o["tensors"].update(
        {"bn.x": {**o["tensors"]["lrs"], "role": "extra"}}), "E_SCHEMA", "tensors.bn.x.role")
    schema("schema_arch_id_leading_zero", "arch.id version with a leading zero",
           lambda o: o["arch"].update(id="convnet@01"), "E_SCHEMA", "arch.id")
    schema("schema_arch_id_uppercase", "arch.id with an uppercase name",
           lambda o: o["arch"].update(id="ConvNet@1"), "E_SCHEMA", "arch.id")
    schema("schema_init_rng_unknown", "init.rng is not philox4x32-10",
           lambda o: o["init"].update(rng="mt19937"), "E_SCHEMA", "init.rng")
    schema("schema_init_scheme_unknown", "init.scheme not in the init annex",
           lambda o: o["init"].update(scheme="orthogonal"), "E_SCHEMA", "init.scheme")
    schema("schema_init_scheme_constant", "init.scheme 'constant' (1.0 has no field for its value)",
           lambda o: o["init"].update(scheme="constant"), "E_SCHEMA", "init.scheme")
    prep = {"mean": [0.5], "std": [0.25], "image_size": [2, 2], "channels": 1, "options": {}}
    schema("schema_mean_length", "preprocessing.mean has 2 values for 1 channel",
           lambda o: o.update(preprocessing={**prep, "mean": [0.5, 0.5]}), "E_SCHEMA", "preprocessing.mean")
    schema("schema_std_length", "preprocessing.std has 0 values for 1 channel",
           lambda o: o.update(preprocessing={**prep, "std": []}), "E_SCHEMA", "preprocessing.std")
    fp = {"theta_opt_sha256": "ab" * 32, "probe_seed": 1, "probe_count": 2, "probe_logits": [0.0] * 6,
          "tolerance": 1e-3, "reference": {}}
    schema("schema_probe_logits_length", "5 probe logits for 2 probes x 3 classes",
           lambda o: o.update(replay={**fp, "probe_logits": [0.0] * 5}), "E_SCHEMA", "replay.probe_logits")
    schema("schema_tolerance_negative", "replay.tolerance is negative",
           lambda o: o.update(replay={**fp, "tolerance": -1e-3}), "E_SCHEMA", "replay.tolerance")
    schema("schema_shape_mismatch_size", "manifest shape implies a different payload size",
           lambda o: o["tensors"]["images"].update(shape=[1, 1, 2, 3]), "E_SCHEMA", "payload.decoded_size")
    schema("schema_schedule_length", "distill.schedule shorter than distill.steps",
           lambda o: o.update(distill={"method": "sldd", "steps": 2, "epochs": 1, "schedule": [[0]],
                                       "label_transform": "softmax", "loss": "cross_entropy",
                                       "inner_batchnorm": "batch_stats", "options": {}}),
           "E_SCHEMA", "distill.schedule")

    # 1.1 decision rule (spec 5.10): one bad value each, in a 1.1 file
    dec = {"rule": "eq9", "positive": "P", "negative": "N", "ignored": ["I"], "delta": 0.4,
           "delta_source": "calibrated",
           "calibration": {"target": "max_hm", "images": 20, "hm": 0.75, "iteration": 100}}

    def decision(name: str, desc: str, change: dict[str, Any], path: str, *, drop: tuple[str, ...] = (),
                 calibration: dict[str, Any] | None = None, labels: bool = False) -> None:
        def mutate(o: dict[str, Any]) -> None:
            d = {**dec, **change}
            if calibration is not None:
                d["calibration"] = {**dec["calibration"], **calibration}
            for key in drop:
                d.pop(key)
            o["decision"] = d
            if labels:
                o["labels"] = {"names": ["I", "N", "P"]}
        schema(name, desc, mutate, "E_SCHEMA", path, minor=1)

    schema("schema_decision_not_map", "decision is a string", lambda o: o.update(decision="eq9"), "E_SCHEMA",
           "decision", minor=1)
    decision("schema_decision_unknown_rule", "decision.rule 'majority'", {"rule": "majority"}, "decision.rule")
    decision("schema_decision_delta_zero", "decision.delta 0 (every image positive)", {"delta": 0.0},
             "decision.delta")
    decision("schema_decision_delta_over_one", "decision.delta 1.5", {"delta": 1.5}, "decision.delta")
    decision("schema_decision_delta_string", "decision.delta is a string", {"delta": "0.4"}, "decision.delta")
    decision("schema_decision_missing_delta", "eq9 rule without delta", {}, "decision", drop=("delta",))
    decision("schema_decision_unknown_source", "decision.delta_source 'tuned'", {"delta_source": "tuned"},
             "decision.delta_source")
    decision("schema_decision_calibrated_without_calibration", "delta_source calibrated, no calibration map", {},
             "decision", drop=("calibration",))
    decision("schema_decision_default_with_calibration", "delta_source default with a calibration map",
             {"delta_source": "default"}, "decision.calibration")
    decision("schema_decision_target_unknown", "calibration.target 'sensitivity>=1.5'", {},
             "decision.calibration.target", calibration={"target": "sensitivity>=1.5"})
    decision("schema_decision_calibration_images_zero", "calibration.images 0", {}, "decision.calibration.images",
             calibration={"images": 0})
    decision("schema_decision_calibration_hm_negative", "calibration.hm -0.1", {}, "decision.calibration.hm",
             calibration={"hm": -0.1})
    decision("schema_decision_argmax_with_delta", "rule argmax with an eq9 delta",
             {"rule": "argmax"}, "decision.delta", drop=("negative", "ignored", "delta_source", "calibration"))
    decision("schema_decision_classes_not_distinct", "negative class equal to the positive one",
             {"negative": "P"}, "decision.negative")
    decision("schema_decision_unknown_class", "decision.positive 'Q' is not in labels.names", {"positive": "Q"},
             "decision.positive", labels=True)

    # 1.1 model card (spec 5.11): one bad value each, in a 1.1 file
    good_eval = {"metric": "hm", "value": 0.8, "n": 40, "split": "test", "ci95": [0.7, 0.9]}

    def card(name: str, desc: str, value: Any, path: str) -> None:
        def mutate(o: dict[str, Any]) -> None:
            o["card"] = value
            o["labels"] = {"names": ["normal", "pneumonia"]}
        schema(name, desc, mutate, "E_SCHEMA", path, minor=1)

    card("schema_card_not_map", "card is a string", "a good model", "card")
    card("schema_card_text_not_string", "card.intended_use is an int", {"intended_use": 3}, "card.intended_use")
    card("schema_card_input_range_decreasing", "card.input_range [255, 0]", {"input_range": [255.0, 0.0]},
         "card.input_range")
    card("schema_card_input_size_one_value", "card.input_size [28]", {"input_size": [28]}, "card.input_size")
    card("schema_card_label_meaning_not_string", "card.label_meanings.pneumonia is an int",
         {"label_meanings": {"pneumonia": 1}}, "card.label_meanings.pneumonia")
    card("schema_card_dataset_without_name", "card.dataset without its name", {"dataset": {"version": "2"}},
         "card.dataset")
    card("schema_card_evaluation_not_array", "card.evaluation is a map", {"evaluation": good_eval},
         "card.evaluation")
    card("schema_card_evaluation_missing_n", "card.evaluation[0] without n",
         {"evaluation": [{k: v for k, v in good_eval.items() if k != "n"}]}, "card.evaluation.0")
    card("schema_card_evaluation_ci_excludes_value", "card.evaluation[0].ci95 [0.85, 0.9] around 0.8",
         {"evaluation": [{**good_eval, "ci95": [0.85, 0.9]}]}, "card.evaluation.0.ci95")
    card("schema_card_evaluation_n_zero", "card.evaluation[0].n 0", {"evaluation": [{**good_eval, "n": 0}]},
         "card.evaluation.0.n")

    def unknown_meaning(o: dict[str, Any]) -> None:
        o["card"] = {"label_meanings": {"normal": "healthy", "tumour": "a class the file does not have"}}
        o["labels"] = {"names": ["normal", "pneumonia"]}

    o_unknown = json.loads(json.dumps(jsonable(obj)))
    unknown_meaning(o_unknown)
    add("schema_card_label_meaning_unknown_class", "card.label_meanings names class 'tumour' not in labels.names",
        assemble(cm.encode(o_unknown), payload, minor=1), "E_SCHEMA",
        key_offset_of(o_unknown, "card.label_meanings.tumour"))

    def many(o: dict[str, Any]) -> None:
        t = o["tensors"]["lrs"]
        for i in range(MAX_TENSORS + 1):
            o["tensors"][f"t{i:05d}"] = t
    schema("schema_too_many_tensors", f"{MAX_TENSORS + 1} tensors", many, "E_LIMIT", "tensors")

    # safetensors payload: same length as the canonical header, so the manifest stays consistent
    ptensors = {**small_tensors(), "zzmetadatazz": sldpack.Tensor("extra", np.array([1.0], dtype=np.float32))}
    pgood = sldpack.encode(base_manifest(), ptensors)
    pm, pp, _ = split(pgood)
    p_off = HEADER_SIZE + len(pm)
    n = int.from_bytes(pp[:8], "little")
    hdr = pp[8:8 + n]
    data_start = 8 + n

    def st(name: str, desc: str, new_hdr: bytes, code: str, rel: int) -> None:
        assert len(new_hdr) == len(hdr), name
        add(name, desc, assemble(pm, pp[:8] + new_hdr + pp[8 + n:]), code, p_off + rel)

    st("st_not_json", "safetensors header is not JSON", b"[" + hdr[1:], "E_ST_HEADER", 8)
    st("st_not_object", "safetensors header is a JSON array", b"[0]".ljust(len(hdr)), "E_ST_HEADER", 8)
    st("st_metadata", "safetensors __metadata__ present", hdr.replace(b'"zzmetadatazz"', b'"__metadata__"'),
       "E_ST_HEADER", 8)
    st("st_duplicate_name", "two tensors named 'images'", hdr.replace(b'"labels"', b'"images"'), "E_NAME", 8)
    st("st_bad_dtype", "dtype F31 in the payload header", hdr.replace(b'"F32"', b'"F31"', 1), "E_DTYPE", 8)
    st("st_span_mismatch", "data_offsets span differs from dtype x shape", hdr.replace(b"[16,28]", b"[16,29]"),
       "E_ST_OFFSETS", 8)
    st("st_overlap", "two tensors' data overlap",
       hdr.replace(b"[16,28]", b"[12,24]"), "E_ST_OFFSETS", 8)
    st("st_hole", "a gap between two tensors' data",
       hdr.replace(b"[16,28]", b"[20,32]").replace(b"[28,36]", b"[32,40]"), "E_ST_OFFSETS", 8)
    st("st_out_of_range", "last tensor runs past the payload",
       hdr.replace(b'"shape":[2],"data_offsets":[28,36]', b'"shape":[3],"data_offsets":[28,40]'),
       "E_ST_OFFSETS", 8)
    st("st_shape_differs", "payload shape differs from the manifest's",
       hdr.replace(b"[1,1,2,2]", b"[1,2,1,2]"), "E_ST_MISMATCH", 8)
    st("st_dtype_differs", "payload dtype I32 where the manifest says F32 (same size)",
       hdr.replace(b'"F32"', b'"I32"', 1), "E_ST_MISMATCH", 8)
    st("st_noncanonical_key_order", "entry keys in another order (valid safetensors, not canonical)",
       hdr.replace(b'"dtype":"F32","shape":[1,1,2,2]', b'"shape":[1,1,2,2],"dtype":"F32"'), "E_ST_MISMATCH", 8)
    # JSON string escaping (spec 6.1): names are raw UTF-8, only '"' and '\\' escaped. The same header with
    # an escaped '/' or a \\u escape, shortened by as many padding spaces, is valid JSON but not canonical.
    for case_name, desc, raw_name, escaped in (
            ("st_escaped_solidus", "a '/' in a name written as '\\/'", "extra/a", b"extra\\/a"),
            ("st_escaped_non_ascii", "a 'ü' in a name written as '\\u00fc' (json.dumps default)", "extra.ü",
             b"extra.\\u00fc")):
        grow = len(escaped) - len(raw_name.encode("utf-8"))
        for fill in range(8):  # pick a name length whose padding can absorb the longer escape
            name_ = raw_name + "x" * fill
            et = {**small_tensors(), name_: sldpack.Tensor("extra", np.array([1.0], dtype=np.float32))}
            eg = sldpack.encode(base_manifest(), et)
            em, ep, _ = split(eg)
            en = int.from_bytes(ep[:8], "little")
            ehdr = ep[8:8 + en]
            if len(ehdr) - len(ehdr.rstrip(b" ")) >= grow:
                break
        raw = ehdr.rstrip(b" ").replace(json.dumps(name_, ensure_ascii=False).encode("utf-8"),
                                        b'"' + escaped + b"x" * fill + b'"')
        assert json.loads(raw)[name_] and len(raw) <= len(ehdr), case_name
        add(case_name, desc, assemble(em, ep[:8] + raw.ljust(len(ehdr)) + ep[8 + en:]), "E_ST_MISMATCH",
            HEADER_SIZE + len(em) + 8)
    add("st_header_length_over_limit", "safetensors header length of 2 MiB",
        assemble(pm, (1 << 21).to_bytes(8, "little") + pp[8:]), "E_LIMIT", p_off)
    add("st_header_length_past_payload", "safetensors header length past the payload's end",
        assemble(pm, len(pp).to_bytes(8, "little") + pp[8:]), "E_ST_HEADER", p_off)

    # tensor data
    lab_rel = data_start + 16  # 'labels' follows the 16 bytes of 'images' (canonical name order)
    flipped = bytearray(pp)
    flipped[lab_rel] ^= 0x40
    add("tensor_digest_mismatch", "one bit of 'labels' flipped", assemble(pm, bytes(flipped)), "E_TENSOR_DIGEST",
        p_off + lab_rel)

    small_data_start = 8 + int.from_bytes(payload[:8], "little")

    def bad_lr(value: float) -> tuple[bytes, int]:
        lrs_rel = small_data_start + 28  # after images (16 bytes) and labels (12 bytes)
        data = bytearray(payload)
        data[lrs_rel + 4:lrs_rel + 8] = struct.pack("<f", value)
        o = json.loads(json.dumps(jsonable(obj)))
        o["tensors"]["lrs"]["sha256"] = hashlib.sha256(bytes(data[lrs_rel:lrs_rel + 8])).hexdigest()
        m = cm.encode(o)
        return assemble(m, bytes(data)), HEADER_SIZE + len(m) + lrs_rel + 4

    d, at = bad_lr(math.nan)
    add("lr_nan", "second learning rate is NaN (digest matches)", d, "E_NONFINITE", at)
    d, at = bad_lr(math.inf)
    add("lr_inf", "second learning rate is +inf (digest matches)", d, "E_NONFINITE", at)

    # zstd
    import zstandard

    decoded = payload  # canonical uncompressed payload of the small file

    def zfile(frame: bytes, decoded_size: int = len(decoded)) -> tuple[bytes, int]:
        o = json.loads(json.dumps(jsonable(obj)))
        o["payload"] = {"compression": "zstd", "stored_size": len(frame), "decoded_size": decoded_size,
                        "stored_sha256": hashlib.sha256(frame).hexdigest()}
        m = cm.encode(o)
        return assemble(m, frame), HEADER_SIZE + len(m)

    frame = zstandard.ZstdCompressor(level=3).compress(decoded)
    d, at = zfile(frame)
    flipped_frame = bytearray(d)
    flipped_frame[-1] ^= 0x01
    add("zstd_stored_digest_mismatch", "last bit of the zstd frame flipped, stored_sha256 not updated",
        bytes(flipped_frame), "E_PAYLOAD_DIGEST", at)
    o = json.loads(json.dumps(jsonable(obj)))
    o["payload"] = {"compression": "zstd", "stored_size": len(frame), "decoded_size": len(decoded)}
    add("schema_zstd_without_stored_sha256", "zstd payload without payload.stored_sha256",
        assemble(cm.encode(o), frame), "E_SCHEMA", offset_of(o, "payload"))
    schema("schema_stored_sha256_uncompressed", "payload.stored_sha256 with compression none",
           lambda o: o["payload"].update(stored_sha256="00" * 32), "E_SCHEMA", "payload.stored_sha256")
    d, at = zfile(b"\x00" * len(frame))
    add("zstd_not_a_frame", "payload is zeros, not a zstd frame", d, "E_ZSTD", at)
    d, at = zfile(zstandard.ZstdCompressor(level=3).compress(decoded + b"\x00"))
    add("zstd_declared_size_differs", "frame header declares decoded_size + 1", d, "E_ZSTD_SIZE", at)
    bomb = zstandard.ZstdCompressor(level=3, write_content_size=False).compress(decoded + b"\x00" * 4_000_000)
    d, at = zfile(bomb)
    add("zstd_bomb", "frame without declared size that inflates to 4 MB", d, "E_ZSTD_SIZE", at)
    d, at = zfile(zstandard.ZstdCompressor(level=3, write_content_size=False).compress(decoded[:-4]))
    add("zstd_short", "frame decodes to 4 bytes less than decoded_size", d, "E_ZSTD_SIZE", at)
    d, at = zfile(frame[:-3])
    add("zstd_truncated", "frame cut short", d, "E_ZSTD", at)
    d, at = zfile(b"\x50\x2a\x4d\x18" + (4).to_bytes(4, "little") + b"skip" + frame)
    add("zstd_skippable_frame", "a skippable frame before the zstd frame", d, "E_ZSTD", at)
    d, at = zfile(frame + b"\x50\x2a\x4d\x18" + (0).to_bytes(4, "little"))
    add("zstd_skippable_frame_after", "an empty skippable frame after the zstd frame", d, "E_ZSTD", at)
    fhd = frame[4]
    did_at = 5 + (0 if fhd & 0x20 else 1)  # the Dictionary_ID field follows the Window_Descriptor, if any
    d, at = zfile(frame[:4] + bytes([fhd | 0x01]) + frame[5:did_at] + b"\x07" + frame[did_at:])
    add("zstd_dictionary", "frame header names dictionary 7", d, "E_ZSTD", at)
    d, at = zfile(frame[:4] + bytes([fhd | 0x10]) + frame[5:])
    add("zstd_unused_bit", "frame header descriptor's unused bit set (zstd decoders ignore it)", d, "E_ZSTD", at)
    d, at = zfile(frame + frame)
    add("zstd_two_frames", "a second frame after the first", d, "E_ZSTD", at)
    return cases


# --- added cases (issue 24: rules the independent reader found without a case) --------------------
# Appended after the cases above, under new names, so that every earlier file keeps its bytes.

def _deep(value: Any, levels: int) -> Any:
    """``value`` wrapped in ``levels`` one-element arrays."""
    for _ in range(levels):
        value = [value]
    return value


def more_valid_cases() -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    # rank-0 tensors of every dtype (shape [], one element; [] in the safetensors header)
    out["scalar_tensors"] = sldpack.encode(base_manifest(), {
        **small_tensors(),
        "extra.s_f64": sldpack.Tensor("extra", np.array(-2.5, dtype=np.float64)),
        "extra.s_f32": sldpack.Tensor("extra", np.array(0.75, dtype=np.float32)),
        "extra.s_f16": sldpack.Tensor("extra", np.array(1.5, dtype=np.float32), "F16"),
        "extra.s_bf16": sldpack.Tensor("extra", np.array(-3.0, dtype=np.float32), "BF16"),
        "extra.s_i32": sldpack.Tensor("extra", np.array(-7, dtype=np.int32)),
        "extra.s_u8": sldpack.Tensor("extra", np.array(200, dtype=np.uint8)),
    })
    # the optional fingerprint parts: a state sketch of k = 1, 3 and 64 values, a zero tolerance
    replay = sldpack.ReplayFingerprint(
        theta_opt_sha256="cd" * 32, probe_seed=2**64 - 1, probe_count=1, probe_logits=(0.5, -0.25, 2.0),
        tolerance=0.0, reference={"device": "cpu", "dtype": "float32", "threads": 1},
        state_sketch={"features.0.weight": (0.125,), "features.0.bias": (1.0, -2.0, 0.0),
                      "classifier.weight": tuple(float(i) / 8 for i in range(64))},
        state_tolerance={"features.0.weight": 0.0, "features.0.bias": 1e-6, "classifier.weight": 3.5})
    out["replay_state_sketch"] = sldpack.encode(base_manifest(replay=replay), small_tensors())
    # init.theta0_sha256 (a digest per parameter name)
    out["init_theta0_sha256"] = sldpack.encode(replace(base_manifest(), init=sldpack.InitSpec(
        seed=1, theta0_sha256={"features.0.weight": "0f" * 32, "features.0.bias": "a1" * 32,
                               "classifier.weight": "00" * 32, "classifier.bias": "ff" * 32})), small_tensors())
    # every optional provenance field, with an audit record bound to the images; times with a fraction
    images_digest = sldpack.read(sldpack.encode(base_manifest(), small_tensors())).manifest.tensors["images"].sha256

    def provenance(audit_images: str) -> sldpack.Provenance:
        return sldpack.Provenance(
            tool=TOOL, created="2028-02-29T23:59:59.999999999Z", dataset_sha256="1d" * 32,
            extra={"run": "r-17", "hosts": ["a", "b"]}, training_data_sha256="2e" * 32, sldpack_version="0.9.0",
            distill_config={"lr": 0.01, "iterations": 600, "schedule": "per-step", "seed": 0},
            command_line=("sldp", "distill", "--data", "train.npz", "--out", "run"),
            audit=AuditRecord(verdict="PASS", report_sha256="3f" * 32, images_sha256=audit_images,
                                      tool="sldpack audit", created="2026-11-27T00:05:00.5Z"))
    out["provenance_fields"] = sldpack.encode(replace(base_manifest(), provenance=provenance(images_digest)),
                                              small_tensors())
    # an audit record of other images is a stale claim, not a format error (spec section 14): valid
    out["provenance_stale_audit"] = sldpack.encode(replace(base_manifest(), provenance=provenance("00" * 32)),
                                                   small_tensors())
    # the depth boundary (spec section 4): every value at depth 32 at most; root 0, user 1, its values 2
    good = sldpack.encode(base_manifest(), small_tensors())
    _, payload, obj = split(good)
    obj["user"] = {"nil_at_32": _deep(None, 30), "empty_array_at_32": _deep([], 30),
                   "key_at_32": _deep({"k": {}}, 29)}
    out["msgpack_depth_32"] = assemble(cm.encode(obj), payload)
    return out


def _schema_case(obj: dict[str, Any], payload: bytes, mutate: Callable[[dict[str, Any]], None],
                 path: str) -> tuple[bytes, int]:
    """A copy of ``obj`` changed by ``mutate``, as file bytes; the offset of the value at ``path``."""
    o = json.loads(json.dumps(jsonable(obj)))
    mutate(o)
    return assemble(cm.encode(o), payload), offset_of(o, path)


def _lr_file(dtype: str, index: int, raw_value: bytes) -> tuple[bytes, int]:
    """A file whose ``lrs`` (stored as ``dtype``) has ``raw_value`` at ``index``, digests updated."""
    lrs = np.array([0.01, 0.02, 0.03], dtype=np.float32)
    good = sldpack.encode(base_manifest(), {**small_tensors(), "lrs": sldpack.Tensor("lrs", lrs, dtype)})
    _, payload, obj = split(good)
    n = int.from_bytes(payload[:8], "little")
    begin, end = json.loads(payload[8:8 + n])["lrs"]["data_offsets"]
    rel = 8 + n + begin
    item = (end - begin) // 3
    assert len(raw_value) == item
    data = bytearray(payload)
    data[rel + index * item:rel + (index + 1) * item] = raw_value
    o = json.loads(json.dumps(jsonable(obj)))
    o["tensors"]["lrs"]["sha256"] = hashlib.sha256(bytes(data[rel:rel + end - begin])).hexdigest()
    m = cm.encode(o)
    return assemble(m, bytes(data)), HEADER_SIZE + len(m) + rel + index * item


def more_invalid_cases() -> list[tuple[str, str, bytes, str, int]]:
    """(name, description, bytes, code, offset), like :func:`invalid_cases`."""
    cases: list[tuple[str, str, bytes, str, int]] = []
    good = sldpack.encode(base_manifest(), small_tensors())
    _, payload, obj = split(good)

    def schema(name: str, desc: str, mutate: Callable[[dict[str, Any]], None], path: str,
               code: str = "E_SCHEMA") -> None:
        data, at = _schema_case(obj, payload, mutate, path)
        cases.append((name, desc, data, code, at))

    # msgpack depth (spec 4): every value counts, keys too; the first value at depth 33 is reported
    for name, desc, raw, rel in (
            ("msgpack_depth_nil_at_33", "a nil at depth 33 (inside 31 arrays in user metadata)",
             b"\x91" * 31 + b"\xc0", 31),
            ("msgpack_depth_key_at_33", "a map at depth 32 with one key: the key is at depth 33",
             b"\x91" * 30 + b"\x81\xa1k\xc0", 31),
            ("msgpack_depth_empty_array_at_33", "an empty array at depth 33", b"\x91" * 31 + b"\x90", 31)):
        m, at = with_user_raw(obj, b"\x81\xa1x" + raw)
        cases.append((name, desc, assemble(m, payload), "E_MSGPACK_DEPTH", at + 3 + rel))

    # replay fingerprint (spec 5.9)
    fp = {"theta_opt_sha256": "ab" * 32, "probe_seed": 1, "probe_count": 1, "probe_logits": [0.0] * 3,
          "tolerance": 1e-3, "reference": {}}
    sk = {"a.weight": [0.5, -1.0, 0.25], "a.bias": [0.0, 0.0, 0.0]}
    st = {"a.weight": 1e-4, "a.bias": 1e-5}

    def replay_case(name: str, desc: str, change: dict[str, Any], path: str) -> None:
        schema(name, desc, lambda o: o.update(replay={**fp, **change}), path)

    replay_case("schema_state_sketch_without_tolerance", "replay.state_sketch without state_tolerance",
                {"state_sketch": sk}, "replay")
    replay_case("schema_state_tolerance_without_sketch", "replay.state_tolerance without state_sketch",
                {"state_tolerance": st}, "replay")
    replay_case("schema_state_tolerance_keys_differ", "state_tolerance names a tensor state_sketch does not",
                {"state_sketch": sk, "state_tolerance": {"a.weight": 1e-4, "b.bias": 1e-5}},
                "replay.state_tolerance")
    replay_case("schema_state_tolerance_negative", "a negative state_tolerance value",
                {"state_sketch": sk, "state_tolerance": {**st, "a.bias": -1e-5}}, "replay.state_tolerance.a.bias")
    replay_case("schema_state_sketch_empty", "a state_sketch entry with no values",
                {"state_sketch": {**sk, "a.bias": []}, "state_tolerance": st}, "replay.state_sketch.a.bias")
    replay_case("schema_state_sketch_too_long", "a state_sketch entry with 65 values",
                {"state_sketch": {**sk, "a.bias": [0.0] * 65}, "state_tolerance": st}, "replay.state_sketch.a.bias")
    replay_case("schema_probe_count_zero", "replay.probe_count 0 (no probe logits)",
                {"probe_count": 0, "probe_logits": []}, "replay.probe_count")
    replay_case("schema_probe_seed_negative", "replay.probe_seed -1", {"probe_seed": -1}, "replay.probe_seed")

    # distill, labels, preprocessing
    dist = {"method": "sldd", "steps": 2, "epochs": 1, "schedule": [[0], [-1]], "label_transform": "softmax",
            "loss": "cross_entropy", "inner_batchnorm": "batch_stats", "options": {}}
    schema("schema_schedule_negative_index", "a negative image index in distill.schedule",
           lambda o: o.update(distill=dist), "distill.schedule.1.0")
    schema("schema_label_names_duplicate", "labels.names repeats a name (reported at the array)",
           lambda o: o.update(labels={"names": ["I", "N", "I"]}), "labels.names")
    prep = {"mean": [0.5], "std": [0.25], "image_size": [2, 2], "channels": 1, "options": {}}
    schema("schema_std_zero", "preprocessing.std 0", lambda o: o.update(preprocessing={**prep, "std": [0.0]}),
           "preprocessing.std.0")
    schema("schema_std_negative", "preprocessing.std negative",
           lambda o: o.update(preprocessing={**prep, "std": [-0.25]}), "preprocessing.std.0")

    # provenance (spec 5.3): the optional fields are checked when present; times follow one grammar
    def prov(name: str, desc: str, key: str, value: Any, path: str | None = None) -> None:
        schema(name, desc, lambda o: o["provenance"].update({key: value}), path or f"provenance.{key}")

    prov("schema_created_not_utc", "provenance.created with a +01:00 offset", "created", "2026-11-27T01:00:00+01:00")
    prov("schema_created_not_a_date", "provenance.created 2026-02-29 (not a leap year)", "created",
         "2026-02-29T00:00:00Z")
    prov("schema_created_trailing_newline", "provenance.created followed by a newline", "created",
         "2026-11-27T00:00:00Z\n")
    prov("schema_training_data_sha256_uppercase", "provenance.training_data_sha256 in upper case",
         "training_data_sha256", "2E" * 32)
    prov("schema_sldpack_version_not_str", "provenance.sldpack_version is an integer", "sldpack_version", 9)
    prov("schema_distill_config_not_map", "provenance.distill_config is an array", "distill_config", [1])
    prov("schema_command_line_not_strings", "provenance.command_line holds an integer", "command_line",
         ["sldp", 3], "provenance.command_line.1")
    audit = {"verdict": "PASS", "report_sha256": "3f" * 32,
             "images_sha256": sldpack.read(good).manifest.tensors["images"].sha256}
    prov("schema_audit_verdict_unknown", "provenance.audit.verdict 'OK'", "audit", {**audit, "verdict": "OK"},
         "provenance.audit.verdict")
    prov("schema_audit_missing_images_sha256", "provenance.audit without images_sha256", "audit",
         {k: v for k, v in audit.items() if k != "images_sha256"}, "provenance.audit")
    prov("schema_audit_created_leap_second", "provenance.audit.created with second 60", "audit",
         {**audit, "created": "2026-12-31T23:59:60Z"}, "provenance.audit.created")

    # init.theta0_sha256 and the regular expressions (fullmatch: no trailing newline)
    schema("schema_theta0_sha256_not_map", "init.theta0_sha256 is a string",
           lambda o: o["init"].update(theta0_sha256="ab" * 32), "init.theta0_sha256")
    schema("schema_theta0_sha256_not_hex", "an init.theta0_sha256 value that is not a digest",
           lambda o: o["init"].update(theta0_sha256={"classifier.bias": "xyz"}), "init.theta0_sha256.classifier.bias")
    schema("schema_arch_id_trailing_newline", "arch.id 'convnet@1' followed by a newline",
           lambda o: o["arch"].update(id="convnet@1\n"), "arch.id")
    schema("schema_digest_trailing_newline", "a tensor sha256 followed by a newline",
           lambda o: o["tensors"]["images"].update(sha256=o["tensors"]["images"]["sha256"] + "\n"),
           "tensors.images.sha256")

    # safetensors JSON integers (spec 6.1): no fraction, no exponent, no booleans; -0 is 0
    ptensors = {**small_tensors(), "zzmetadatazz": sldpack.Tensor("extra", np.array([1.0], dtype=np.float32))}
    pm, pp, _ = split(sldpack.encode(base_manifest(), ptensors))
    n = int.from_bytes(pp[:8], "little")
    hdr = pp[8:8 + n]
    for name, desc, old, new, code in (
            ("st_shape_float", "a shape entry written 1.0", b"[1,1,2,2]", b"[1.0,1,2,2]", "E_ST_HEADER"),
            ("st_shape_exponent", "a shape entry written 1e0", b"[1,1,2,2]", b"[1e0,1,2,2]", "E_ST_HEADER"),
            ("st_shape_true", "a shape entry written true", b"[1,1,2,2]", b"[true,1,2,2]", "E_ST_HEADER"),
            ("st_offsets_float", "a data_offsets entry written 16.0", b"[0,16]", b"[0,16.0]", "E_ST_OFFSETS"),
            ("st_offsets_negative_zero", "a data_offsets entry written -0 (an integer, not canonical)",
             b"[0,16]", b"[-0,16]", "E_ST_MISMATCH")):
        new_hdr = hdr.rstrip(b" ").replace(old, new, 1)
        assert len(new_hdr) <= len(hdr), name  # the padding absorbs the longer spelling
        cases.append((name, desc, assemble(pm, pp[:8] + new_hdr.ljust(len(hdr)) + pp[8 + n:]), code,
                      HEADER_SIZE + len(pm) + 8))

    # non-finite step sizes in every floating-point dtype (the element's first byte)
    for name, desc, dtype, index, raw in (
            ("lr_nan_f16", "an F16 learning rate is NaN (digest matches)", "F16", 1, b"\x00\x7e"),
            ("lr_inf_f16", "an F16 learning rate is -inf (digest matches)", "F16", 2, b"\x00\xfc"),
            ("lr_nan_bf16", "a BF16 learning rate is NaN (digest matches)", "BF16", 1, b"\xc0\x7f"),
            ("lr_inf_bf16", "a BF16 learning rate is +inf (digest matches)", "BF16", 0, b"\x80\x7f"),
            ("lr_nan_f64", "an F64 learning rate is NaN (digest matches)", "F64", 2, struct.pack("<d", math.nan)),
            ("lr_inf_f64", "an F64 learning rate is -inf (digest matches)", "F64", 1, struct.pack("<d", -math.inf))):
        d, at = _lr_file(dtype, index, raw)
        cases.append((name, desc, d, "E_NONFINITE", at))

    # zstd frame header: the reserved bit (bit 3) set
    import zstandard

    frame = zstandard.ZstdCompressor(level=3).compress(payload)
    frame = frame[:4] + bytes([frame[4] | 0x08]) + frame[5:]
    o = json.loads(json.dumps(jsonable(obj)))
    o["payload"] = {"compression": "zstd", "stored_size": len(frame), "decoded_size": len(payload),
                    "stored_sha256": hashlib.sha256(frame).hexdigest()}
    m = cm.encode(o)
    cases.append(("zstd_reserved_bit", "frame header descriptor's reserved bit set", assemble(m, frame), "E_ZSTD",
                  HEADER_SIZE + len(m)))
    return cases


def write_corpus(root: Path = ROOT) -> list[dict[str, Any]]:
    """Write every file and index.json under ``root``; return the index's cases."""
    index: list[dict[str, Any]] = []
    (root / "valid").mkdir(parents=True, exist_ok=True)
    (root / "invalid").mkdir(parents=True, exist_ok=True)
    for name, data in {**valid_cases(), **more_valid_cases()}.items():
        (root / "valid" / f"{name}.sldp").write_bytes(data)
        f = sldpack.read(data)
        _, _, obj = split(data)
        sidecar = {
            "header": {"version_major": f.header.version_major, "version_minor": f.header.version_minor},
            "manifest": jsonable(obj),
            "tensors": {n: {"dtype": t.dtype, "shape": list(t.shape), "sha256": t.sha256}
                        for n, t in f.manifest.tensors.items()},
        }
        (root / "valid" / f"{name}.json").write_text(json.dumps(sidecar, indent=1, sort_keys=True,
                                                                ensure_ascii=False) + "\n", encoding="utf-8")
        index.append({"file": f"valid/{name}.sldp", "expect": "valid", "sidecar": f"valid/{name}.json"})
    seen: set[str] = set()
    for name, desc, data, code, offset in [*invalid_cases(), *more_invalid_cases()]:
        assert name not in seen, name
        seen.add(name)
        (root / "invalid" / f"{name}.sldp").write_bytes(data)
        index.append({"file": f"invalid/{name}.sldp", "expect": "invalid", "code": code, "offset": offset,
                      "description": desc})
    (root / "index.json").write_text(json.dumps({"format": "SLDP", "version": "1.1", "cases": index},
                                                indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return index


if __name__ == "__main__":
    cases = write_corpus(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
    n_valid = sum(c["expect"] == "valid" for c in cases)
    print(f"wrote {len(cases)} cases ({n_valid} valid, {len(cases) - n_valid} invalid)")
