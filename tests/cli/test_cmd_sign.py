"""CLI: ``sldp keygen``, ``sldp sign``, ``sldp verify --signature/--key/--trusted-keys``, ``sldp audit --record``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("model_signing")

import sldpack
from sldpack.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
VALID = ROOT / "spec" / "conformance" / "valid" / "full.sldp"


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, list(args))
    # a clean failure is a message and an exit code, never a traceback
    assert r.exception is None or isinstance(r.exception, SystemExit), r.output
    assert "Traceback" not in r.output
    return r.exit_code, r.output


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Path]:
    f = tmp_path / "m.sldp"
    shutil.copyfile(VALID, f)
    code, out = run("keygen", str(tmp_path / "me.key"))
    assert code == 0, out
    assert "mode 0600" in out and "key id" in out
    code, out = run("keygen", str(tmp_path / "other.key"), "--public", str(tmp_path / "other.pem"))
    assert code == 0, out
    return {"file": f, "key": tmp_path / "me.key", "pub": tmp_path / "me.pub", "other": tmp_path / "other.pem",
            "dir": tmp_path}


def test_keygen_writes_0600_and_refuses_overwrite(setup: dict[str, Path]) -> None:
    assert stat.S_IMODE(setup["key"].stat().st_mode) == 0o600
    code, out = run("keygen", str(setup["key"]))
    assert code == 2
    assert "refusing to overwrite" in out


def test_sign_verify_ok_and_flipped_bit(setup: dict[str, Path]) -> None:
    f = setup["file"]
    code, out = run("sign", str(f), "--key", str(setup["key"]))
    assert code == 0, out
    assert "warning: no privacy audit recorded" in out
    sig = f.with_name("m.sldp.sig")
    assert sig.is_file()
    code, out = run("verify", str(f), "--signature", str(sig), "--key", str(setup["pub"]))
    assert code == 0, out
    assert "ok   signature" in out and "verified" in out
    # default signature path FILE.sig
    code, _ = run("verify", str(f), "--key", str(setup["pub"]))
    assert code == 0
    data = bytearray(f.read_bytes())
    for pos in (3, 30, 70, len(data) // 2, len(data) - 1):
        d = bytearray(data)
        d[pos] ^= 0x04
        f.write_bytes(bytes(d))
        code, out = run("verify", str(f), "--signature", str(sig), "--key", str(setup["pub"]))
        assert code == 1, (pos, out)
        assert "signature file-changed" in out and "VERIFICATION FAILED" in out


def test_verify_failure_reasons(setup: dict[str, Path]) -> None:
    f = setup["file"]
    sig = setup["dir"] / "out" / "m.sig"
    assert run("sign", str(f), "--key", str(setup["key"]), "--signature", str(sig))[0] == 0
    code, out = run("verify", str(f), "--signature", str(sig), "--key", str(setup["other"]))
    assert code == 1 and "signature wrong-key" in out
    trust = setup["dir"] / "trust"
    trust.mkdir()
    shutil.copyfile(setup["other"], trust / "other.pem")
    code, out = run("verify", str(f), "--signature", str(sig), "--trusted-keys", str(trust))
    assert code == 1 and "signature untrusted-key" in out
    shutil.copyfile(setup["pub"], trust / "me.pub")
    code, out = run("verify", str(f), "--signature", str(sig), "--trusted-keys", str(trust), "--json")
    assert code == 0, out
    assert json.loads(out)["signature"]["key_source"].endswith("me.pub")
    trunc = setup["dir"] / "t.sig"
    trunc.write_bytes(sig.read_bytes()[:100])
    code, out = run("verify", str(f), "--signature", str(trunc), "--key", str(setup["pub"]))
    assert code == 1 and "signature malformed" in out
    code, out = run("verify", str(f), "--signature", str(setup["dir"] / "none.sig"), "--key", str(setup["pub"]),
                    "--json")
    assert code == 1
    assert json.loads(out)["error"]["reason"] == "missing"


def test_usage_and_key_errors_exit_2(setup: dict[str, Path]) -> None:
    f = setup["file"]
    assert run("sign", str(f), "--key", str(setup["key"]))[0] == 0
    code, out = run("verify", str(f), "--signature", str(f) + ".sig")
    assert code == 2 and "--key PUB or --trusted-keys DIR" in out
    code, out = run("verify", str(f), "--key", str(setup["pub"]), "--trusted-keys", str(setup["dir"]))
    assert code == 2 and "contradict" in out
    code, out = run("verify", str(f), "--key", str(setup["key"]))
    assert code == 2 and "PRIVATE key" in out
    code, out = run("sign", str(f), "--key", str(setup["pub"]))
    assert code == 2 and "this is a public key" in out
    if os.name == "posix":
        os.chmod(setup["key"], 0o644)
        code, out = run("sign", str(f), "--key", str(setup["key"]), "--signature", str(setup["dir"] / "n.sig"))
        assert code == 2 and "permissions 0644" in out
        assert not (setup["dir"] / "n.sig").exists()
        os.chmod(setup["key"], 0o600)
    bad = setup["dir"] / "bad.key"
    bad.write_text("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n")
    os.chmod(bad, 0o600)
    code, out = run("sign", str(f), "--key", str(bad))
    assert code == 2 and "private key" in out
    # a broken .sldp is never signed
    broken = setup["dir"] / "broken.sldp"
    broken.write_bytes(f.read_bytes()[:-3])
    code, out = run("sign", str(broken), "--key", str(setup["key"]))
    assert code == 2 and "E_TRUNCATED" in out
    assert not Path(str(broken) + ".sig").exists()


# --- audit --record --------------------------------------------------------------------------------

def _write(path: Path, images: np.ndarray, compression: str = "none") -> Path:
    m = sldpack.Manifest(arch=sldpack.ArchSpec("convnet@1", 1, 2, (12, 12)), init=sldpack.InitSpec(seed=3),
                         provenance=sldpack.Provenance("test", "2026-11-27T00:00:00Z"),
                         preprocessing=sldpack.Preprocessing((0.5,), (0.25,), (12, 12), 1))
    sldpack.write(path, m, {"images": sldpack.Tensor("images", images.astype(np.float32)),
                            "labels": sldpack.Tensor("labels", np.zeros((images.shape[0], 2), np.float32)),
                            "lrs": sldpack.Tensor("lrs", np.array([0.1, 0.2], np.float32))}, compression=compression)
    return path


AUDIT = ["--real-sample", "20", "--ssim-candidates", "4", "--chunk", "8", "--no-sheet"]


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_audit_record_round_trip(tmp_path: Path, compression: str) -> None:
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (20, 12, 12)).astype(np.uint8)
    np.savez(tmp_path / "train.npz", train_images=real, train_labels=np.arange(20) % 2)
    f = _write(tmp_path / "d.sldp", rng.standard_normal((2, 1, 12, 12)), compression)
    before = f.read_bytes()
    with sldpack.open(f) as s:
        img_digest = s.manifest.tensors["images"].sha256
        payload_before = before[s.payload_offset:]
        msha_before = s.header.manifest_sha256
    code, out = run("audit", str(f), "--data", str(tmp_path / "train.npz"), "--record", *AUDIT)
    assert code == 0, out
    assert "recorded PASS" in out
    report = f.with_suffix(".audit.json")
    body = report.read_bytes()
    assert json.loads(body)["images_sha256"] == img_digest
    assert json.loads(body)["verdict"] == "PASS"
    with sldpack.open(f) as s:
        s.verify()
        a = s.manifest.provenance.audit
        assert a is not None
        assert a.verdict == "PASS"
        assert a.images_sha256 == img_digest
        assert a.report_sha256 == hashlib.sha256(body).hexdigest()
        assert a.binds(s.manifest.tensors)
        assert s.header.manifest_sha256 != msha_before  # a re-pack: the manifest changed
        assert f.read_bytes()[s.payload_offset:] == payload_before  # the payload bytes did not
        assert s.manifest.payload is not None and s.manifest.payload.compression == compression
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files
    code, out = run("inspect", str(f))
    assert code == 0
    assert "privacy audit" in out and "PASS" in out and "bound to these images" in out
    code, out = run("inspect", str(f), "--json")
    assert json.loads(out)["audit_bound"] is True
    assert run("verify", str(f))[0] == 0
    key = tmp_path / "k.key"
    assert run("keygen", str(key))[0] == 0
    code, out = run("sign", str(f), "--key", str(key))
    assert code == 0 and "warning" not in out  # a PASS audit bound to the images: nothing to warn about

    # new images under the old record: inspect says STALE, verify fails
    with sldpack.open(f) as s:
        m = s.manifest
        arrays = s.arrays()
    new = {k: sldpack.Tensor(m.tensors[k].role, np.array(v)) for k, v in arrays.items()}
    new["images"] = sldpack.Tensor("images", np.array(arrays["images"]) + 1)
    sldpack.write(f, m, new)
    code, out = run("inspect", str(f))
    assert "STALE" in out
    code, out = run("verify", str(f))
    assert code == 1 and "FAIL audit record (PASS) bound to the images" in out


def test_audit_record_flag_and_custom_report(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    real = rng.integers(0, 256, (20, 12, 12)).astype(np.uint8)
    np.savez(tmp_path / "train.npz", train_images=real, train_labels=np.arange(20) % 2)
    copy = ((real[3] / 255.0 - 0.5) / 0.25)[None, None]
    f = _write(tmp_path / "c.sldp", copy)
    rep = tmp_path / "r" / "audit.json"
    code, out = run("audit", str(f), "--data", str(tmp_path / "train.npz"), "--record", "--report", str(rep),
                    *AUDIT)
    assert code == 1, out  # FLAG is still recorded, and still exit 1
    with sldpack.open(f) as s:
        a = s.manifest.provenance.audit
        assert a is not None and a.verdict == "FLAG"
        assert a.report_sha256 == hashlib.sha256(rep.read_bytes()).hexdigest()
    code, out = run("audit", str(f), "--data", str(tmp_path / "train.npz"), "--report", str(rep), *AUDIT)
    assert code == 2 and "add --record" in out
