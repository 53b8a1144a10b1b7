"""``sldp accept`` -> ``sldp verify --acceptance``: round trip; tampered or foreign records and bad data refused."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sldpack.cli.main import main
from sldpack.nn.distill import DistillConfig, distill
from sldpack.pipelines.inputs import phantom_patch_source

pytest.importorskip("cryptography")

LOCAL = ["--phantom", "12", "--phantom-size", "64", "--phantom-seed", "3"]


@pytest.fixture(scope="module")
def received(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny I/N/P patch file (16 px patches), as a receiver gets it."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    src = phantom_patch_source("n=10,size=64,patch=16,stride=8", "train")
    cfg = DistillConfig(arch_options={"depth": 2, "width": 8}, steps=2, epochs=1, iterations=3, batch_real=12,
                        lr=0.05, inner_lr=0.05, device="cpu", checkpoint_every=0)
    res = distill(src, cfg)
    torch.set_num_threads(old)
    path = tmp_path_factory.mktemp("received") / "model.sldp"
    res.write(path)
    return path


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out = capsys.readouterr()
    return int(info.value.code or 0), out.out, out.err


@pytest.fixture
def keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    (tmp_path / "trusted").mkdir()
    for who in ("receiver", "stranger"):
        assert _run(["keygen", str(tmp_path / f"{who}.key")], capsys)[0] == 0
    shutil.copy(tmp_path / "receiver.pub", tmp_path / "trusted" / "receiver.pub")
    return tmp_path


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_accept_then_verify_round_trip(received: Path, keys: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "model.sldp"
    shutil.copy(received, file)
    before = _sha(file)
    code, out, err = _run(["accept", str(file), "--key", str(keys / "receiver.key"), *LOCAL, "--calibrate-delta"],
                          capsys)
    assert code == 0, err
    rec = tmp_path / "model.sldp.accept.json"
    assert rec.is_file()
    assert _sha(file) == before  # the sender's bytes are never touched
    assert "Sen " in out and "calibration  delta 0.4 ->" in out and "signature not checked" in out
    bundle = json.loads(rec.read_text())
    st = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    assert st["predicateType"] == "https://sldpack/acceptance/v1"
    assert st["subject"][0]["digest"]["sha256"] == before
    p = st["predicate"]
    assert p["file"]["sha256"] == before and p["file"]["sender_signature"] is None
    assert p["data"]["images"] == 12 and p["data"]["split"] == "all" and len(p["data"]["sha256"]) == 64
    m = p["evaluation"]["metrics"]
    assert m["n"] == 12 and m["tp"] + m["fn"] + m["tn"] + m["fp"] == 12
    assert m["sensitivity"]["ci95"][0] <= m["sensitivity"]["value"] <= m["sensitivity"]["ci95"][1]
    assert p["delta"]["file"] == 0.4 and p["delta"]["calibrated"] is True
    assert p["delta"]["used"] == p["calibration"]["delta_calibrated"]
    cal = p["calibration"]
    assert cal["calibration_images"] + cal["held_out_images"] == 12
    assert cal["held_out_before"]["n"] == cal["held_out_calibrated"]["n"] == cal["held_out_images"]
    assert p["sldpack_version"] and p["created"].endswith("Z")

    code, out, err = _run(["verify", str(file), "--acceptance", str(rec), "--trusted-keys", str(keys / "trusted")],
                          capsys)
    assert code == 0, err
    assert "ok   acceptance record" in out and "verified" in out
    code, out, _ = _run(["verify", str(file), "--acceptance", str(rec), "--key", str(keys / "receiver.pub"),
                         "--json"], capsys)
    assert code == 0 and json.loads(out)["acceptance"]["predicate"]["file"]["sha256"] == before


def test_tampered_foreign_or_untrusted_records_are_rejected(received: Path, keys: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "model.sldp"
    shutil.copy(received, file)
    rec = tmp_path / "a.json"
    assert _run(["accept", str(file), "--key", str(keys / "receiver.key"), *LOCAL, "--out", str(rec)], capsys)[0] == 0
    trusted = ["--trusted-keys", str(keys / "trusted")]

    # a better HM written into the record: the signature no longer verifies
    bundle = json.loads(rec.read_text())
    st = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    st["predicate"]["evaluation"]["metrics"]["hm"]["value"] = 0.99
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(st).encode()).decode()
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(bundle))
    code, _, err = _run(["verify", str(file), "--acceptance", str(bad), *trusted], capsys)
    assert code == 1 and "bad-signature" in err

    # the record is about other bytes (another file, or this one changed)
    other = tmp_path / "other.sldp"
    data = bytearray(file.read_bytes())
    data[-1] ^= 1
    other.write_bytes(bytes(data))
    code, _, err = _run(["verify", str(other), "--acceptance", str(rec), *trusted], capsys)
    assert code == 1 and "file-changed" in err

    # signed by a key the verifier does not trust
    foreign = tmp_path / "foreign.json"
    assert _run(["accept", str(file), "--key", str(keys / "stranger.key"), *LOCAL, "--out", str(foreign)],
                capsys)[0] == 0
    code, _, err = _run(["verify", str(file), "--acceptance", str(foreign), *trusted], capsys)
    assert code == 1 and "untrusted-key" in err
    code, _, err = _run(["verify", str(file), "--acceptance", str(tmp_path / "none.json"), *trusted], capsys)
    assert code == 1 and "missing" in err
    code, _, err = _run(["verify", str(file), "--acceptance", str(rec)], capsys)
    assert code == 2 and "--trusted-keys" in err


def test_accept_records_a_verified_sender_signature(received: Path, keys: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("model_signing")
    file = tmp_path / "model.sldp"
    shutil.copy(received, file)
    assert _run(["keygen", str(tmp_path / "sender.key")], capsys)[0] == 0
    assert _run(["sign", str(file), "--key", str(tmp_path / "sender.key")], capsys)[0] == 0
    code, out, err = _run(["accept", str(file), "--key", str(keys / "receiver.key"), *LOCAL, "--signature",
                           f"{file}.sig", "--sender-key", str(tmp_path / "sender.pub"), "--json"], capsys)
    assert code == 0, err
    sig = json.loads(out)["predicate"]["file"]["sender_signature"]
    assert sig["verified"] is True and len(sig["key_id"]) == 64
    # a signature by another key: nothing accepted, exit 1, no record
    code, _, err = _run(["accept", str(file), "--key", str(keys / "receiver.key"), *LOCAL, "--signature",
                         f"{file}.sig", "--sender-key", str(keys / "stranger.pub"), "--out",
                         str(tmp_path / "no.json")], capsys)
    assert code == 1 and "wrong-key" in err
    assert not (tmp_path / "no.json").exists()


def test_accept_refuses_data_the_network_cannot_read(received: Path, keys: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    small = tmp_path / "small.npz"
    np.savez(small, images=np.zeros((4, 10, 10), dtype=np.uint8), labels=np.array([0, 1, 0, 1]),
             masks=np.ones((4, 10, 10), dtype=np.uint8))
    code, _, err = _run(["accept", str(received), "--key", str(keys / "receiver.key"), "--data", str(small),
                         "--out", str(tmp_path / "r.json")], capsys)
    assert code == 2 and "10x10 px, smaller than this file's 16 px patches" in err
    assert not (tmp_path / "r.json").exists()
    code, _, err = _run(["accept", str(received), "--key", str(keys / "receiver.key"), *LOCAL, "--out",
                         str(received)], capsys)
    assert code == 2 and "is an input" in err
