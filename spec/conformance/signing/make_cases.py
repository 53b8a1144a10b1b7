"""Generate the signing conformance cases (annex SLDP-1-signing.md) into this folder.

ECDSA signatures are randomized, so running this again gives new signature bytes (and new keys):
the committed files are the corpus, and the test suite checks that they verify as index.json says,
never that this script reproduces them. Needs the `sign` extra (model-signing).

    python spec/conformance/signing/make_cases.py
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))

from sldpack.pipelines.signing import generate_keypair, sign_file  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        generate_keypair(t / "signer.key", HERE / "signer.pub", overwrite=True)
        generate_keypair(t / "other.key", HERE / "other.pub", overwrite=True)
        # the test signer's private key is published on purpose: it lets other implementations sign test
        # files; nobody may ever trust signer.pub for anything real
        shutil.copyfile(t / "signer.key", HERE / "signer.key.TEST-ONLY")
        sldp = HERE / "signed.sldp"
        shutil.copyfile(ROOT / "spec" / "conformance" / "valid" / "full.sldp", sldp)
        sign_file(sldp, t / "signer.key", HERE / "signed.sldp.sig")

    sig = (HERE / "signed.sldp.sig").read_bytes()
    # one bit flipped in the payload: the file changed after signing
    data = bytearray(sldp.read_bytes())
    data[len(data) - 5] ^= 0x01
    (HERE / "tampered.sldp").write_bytes(bytes(data))
    # the signature cut in half: not a complete bundle
    (HERE / "truncated.sig").write_bytes(sig[: len(sig) // 2])
    # an attacker rewrites the signed statement to name the tampered file, keeping the old signature
    bundle = json.loads(sig)
    st = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    d = hashlib.sha256(bytes(data)).hexdigest()
    st["predicate"]["resources"][0]["digest"] = d
    st["subject"][0]["digest"]["sha256"] = hashlib.sha256(bytes.fromhex(d)).hexdigest()
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(st, indent=2).encode()).decode()
    (HERE / "forged_statement.sig").write_text(json.dumps(bundle, separators=(",", ":")))
    for name, keys in (("trusted", ["signer.pub", "other.pub"]), ("untrusted", ["other.pub"])):
        d_ = HERE / name
        shutil.rmtree(d_, ignore_errors=True)
        d_.mkdir()
        for k in keys:
            shutil.copyfile(HERE / k, d_ / k)
    os.chmod(HERE / "signer.key.TEST-ONLY", 0o644)


if __name__ == "__main__":
    main()
