"""Manifest schema rules at their boundaries (spec section 5); each case also has a corpus file where one fits."""

from __future__ import annotations

from typing import Any

import pytest

import sldpack
from sldpack.format import canonical_msgpack as cm
from sldpack.format.constants import HEADER_SIZE, MAX_PROBE_COUNT, MAX_SKETCH_VALUES


def _obj() -> dict[str, Any]:
    m = sldpack.Manifest(arch=sldpack.ArchSpec("convnet@1", in_channels=1, num_classes=2, image_size=(2, 2)),
                         init=sldpack.InitSpec(seed=1), provenance=sldpack.Provenance("t", "2026-11-27T00:00:00Z"))
    data = sldpack.encode(m, {})
    mlen = int.from_bytes(data[16:24], "little")
    obj, _ = cm.decode(data[HEADER_SIZE:HEADER_SIZE + mlen])
    assert isinstance(obj, dict)
    return obj


def _check(obj: dict[str, Any]) -> sldpack.Manifest:
    """Decode ``obj`` as a reader does (canonical bytes, offsets) and narrow it."""
    raw = cm.encode(obj)
    value, offsets = cm.decode(raw, base=HEADER_SIZE)
    return sldpack.Manifest.from_obj(value, offsets=offsets, base=HEADER_SIZE)


@pytest.mark.parametrize(("created", "ok"), [
    ("2026-11-27T01:20:00Z", True),
    ("2028-02-29T23:59:59Z", True),  # a leap day
    ("0001-01-01T00:00:00Z", True),
    ("2026-11-27T01:20:00.5Z", True),
    ("2026-11-27T01:20:00.123456789Z", True),  # 9 fraction digits
    ("2026-11-27T01:20:00.1234567890Z", False),  # 10
    ("2026-11-27T01:20:00.Z", False),
    ("2026-11-27T01:20:00z", False),
    ("2026-11-27t01:20:00Z", False),
    ("2026-11-27 01:20:00Z", False),
    ("2026-11-27T01:20:00+00:00", False),
    ("2026-11-27T01:20:00", False),
    ("2026-11-27", False),
    ("2026-11-27T01:20:00Z\n", False),
    ("2026-02-29T00:00:00Z", False),  # 2026 is no leap year
    ("2026-13-01T00:00:00Z", False),
    ("2026-11-31T00:00:00Z", False),
    ("0000-01-01T00:00:00Z", False),
    ("2026-11-27T24:00:00Z", False),
    ("2026-11-27T23:60:00Z", False),
    ("2026-12-31T23:59:60Z", False),  # no leap second
    ("", False),
])
@pytest.mark.parametrize("where", ["provenance", "audit"])
def test_provenance_times(created: str, ok: bool, where: str) -> None:
    o = _obj()
    if where == "provenance":
        o["provenance"]["created"] = created
    else:
        o["provenance"]["audit"] = {"verdict": "PASS", "report_sha256": "1" * 64, "images_sha256": "2" * 64,
                                    "created": created}
    if ok:
        _check(o)
        return
    with pytest.raises(sldpack.FormatError) as e:
        _check(o)
    assert e.value.code == "E_SCHEMA"
    assert e.value.field == ("provenance.created" if where == "provenance" else "provenance.audit.created")


def _replay(**change: Any) -> dict[str, Any]:
    fp = {"theta_opt_sha256": "ab" * 32, "probe_seed": 0, "probe_count": 1, "probe_logits": [0.0, 1.0],
          "tolerance": 0.0, "reference": {}}
    fp.update(change)
    return fp


@pytest.mark.parametrize(("change", "field"), [
    ({"probe_count": 0, "probe_logits": []}, "replay.probe_count"),
    ({"probe_count": MAX_PROBE_COUNT + 1, "probe_logits": []}, "replay.probe_count"),
    ({"probe_seed": -1}, "replay.probe_seed"),
    ({"state_sketch": {"w": []}, "state_tolerance": {"w": 0.0}}, "replay.state_sketch.w"),
    ({"state_sketch": {"w": [0.0] * (MAX_SKETCH_VALUES + 1)}, "state_tolerance": {"w": 0.0}}, "replay.state_sketch.w"),
    ({"state_sketch": {"w": [0.0]}}, "replay.state_tolerance"),
    ({"state_tolerance": {"w": 0.0}}, "replay.state_sketch"),
    ({"state_sketch": {"w": [0.0]}, "state_tolerance": {"v": 0.0}}, "replay.state_tolerance"),
])
def test_replay_fingerprint_bounds(change: dict[str, Any], field: str) -> None:
    o = _obj()
    o["replay"] = _replay(**change)
    with pytest.raises(sldpack.FormatError) as e:
        _check(o)
    assert (e.value.code, e.value.field) == ("E_SCHEMA", field)


def test_replay_fingerprint_boundaries_that_read() -> None:
    o = _obj()
    o["replay"] = _replay(probe_seed=2**64 - 1, probe_count=MAX_PROBE_COUNT, probe_logits=[0.0] * 2 * MAX_PROBE_COUNT,
                          state_sketch={"w": [0.0], "v": [1.0] * MAX_SKETCH_VALUES},
                          state_tolerance={"w": 0.0, "v": 2.0})
    rp = _check(o).replay
    assert rp is not None and rp.state_sketch is not None
    assert rp.probe_count == MAX_PROBE_COUNT and len(rp.state_sketch["v"]) == MAX_SKETCH_VALUES


def test_missing_sketch_partner_points_at_the_replay_map() -> None:
    # spec 5.9: one of the pair without the other is a missing key, reported at the enclosing map
    o = _obj()
    o["replay"] = _replay(state_sketch={"w": [0.0]})
    raw = cm.encode(o)
    value, offsets = cm.decode(raw, base=HEADER_SIZE)
    with pytest.raises(sldpack.FormatError) as e:
        sldpack.Manifest.from_obj(value, offsets=offsets, base=HEADER_SIZE)
    assert e.value.offset == HEADER_SIZE + offsets["replay"]


@pytest.mark.parametrize(("path", "value"), [
    (("arch", "id"), "convnet@1\n"),
    (("provenance", "dataset_sha256"), "ab" * 32 + "\n"),
])
def test_patterns_match_the_whole_string(path: tuple[str, str], value: str) -> None:
    # "$" in a Python regex also matches before a final newline; the spec's patterns match the whole value
    o = _obj()
    o[path[0]][path[1]] = value
    with pytest.raises(sldpack.FormatError) as e:
        _check(o)
    assert e.value.field == ".".join(path)
