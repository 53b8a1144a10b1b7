"""Detached signatures (annex SLDP-1-signing.md): sign -> verify, every failure reason, keys, the corpus."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("cryptography")
pytest.importorskip("model_signing")

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from sldpack.errors import UsageError
from sldpack.pipelines.signing import (
    SignatureError,
    generate_keypair,
    key_id,
    load_private_key,
    load_public_key,
    pae,
    sign_file,
    verify_file,
)

ROOT = Path(__file__).resolve().parents[2]
VALID = ROOT / "spec" / "conformance" / "valid" / "full.sldp"
CORPUS = ROOT / "spec" / "conformance" / "signing"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("keys")
    generate_keypair(d / "a.key")
    generate_keypair(d / "b.key")
    return {"a": d / "a.key", "a_pub": d / "a.pub", "b": d / "b.key", "b_pub": d / "b.pub", "dir": d}


@pytest.fixture
def signed(tmp_path: Path, keys: dict[str, Path]) -> tuple[Path, Path]:
    f = tmp_path / "m.sldp"
    shutil.copyfile(VALID, f)
    sig = sign_file(f, keys["a"])
    return f, sig


def _reason(exc: pytest.ExceptionInfo[SignatureError]) -> str:
    return exc.value.reason


def test_sign_then_verify(signed: tuple[Path, Path], keys: dict[str, Path]) -> None:
    f, sig = signed
    assert sig == f.with_name("m.sldp.sig")
    rep = verify_file(f, sig, public_key=keys["a_pub"])
    assert rep.key_id == key_id(load_public_key(keys["a_pub"]))
    import hashlib

    assert rep.file_sha256 == hashlib.sha256(f.read_bytes()).hexdigest()
    # the bundle is model-signing's key-mode format, no transparency log entry (offline)
    bundle = json.loads(sig.read_bytes())
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert bundle["verificationMaterial"]["tlogEntries"] == []
    assert bundle["verificationMaterial"]["publicKey"]["hint"] == rep.key_id


@pytest.mark.parametrize("where", ["magic", "version", "manifest_length", "manifest_sha256", "manifest_first",
                                   "manifest_middle", "payload_first", "payload_middle", "last"])
def test_any_flipped_bit_fails(signed: tuple[Path, Path], keys: dict[str, Path], where: str) -> None:
    f, sig = signed
    data = bytearray(f.read_bytes())
    mlen = int.from_bytes(data[16:24], "little")
    pos = {"magic": 0, "version": 8, "manifest_length": 16, "manifest_sha256": 40, "manifest_first": 64,
           "manifest_middle": 64 + mlen // 2, "payload_first": 64 + mlen,
           "payload_middle": 64 + mlen + (len(data) - 64 - mlen) // 2, "last": len(data) - 1}[where]
    for bit in (0, 7):
        d = bytearray(data)
        d[pos] ^= 1 << bit
        f.write_bytes(bytes(d))
        with pytest.raises(SignatureError) as exc:
            verify_file(f, sig, public_key=keys["a_pub"])
        assert _reason(exc) == "file-changed"
        assert "changed since they were signed" in str(exc.value)


def test_appended_or_removed_byte_fails(signed: tuple[Path, Path], keys: dict[str, Path]) -> None:
    f, sig = signed
    data = f.read_bytes()
    for changed in (data + b"\0", data[:-1], b""):
        f.write_bytes(changed)
        with pytest.raises(SignatureError, match="file-changed"):
            verify_file(f, sig, public_key=keys["a_pub"])


def test_truncated_signature(signed: tuple[Path, Path], keys: dict[str, Path], tmp_path: Path) -> None:
    f, sig = signed
    raw = sig.read_bytes()
    for n in (0, 1, len(raw) // 2, len(raw) - 2):
        t = tmp_path / "t.sig"
        t.write_bytes(raw[:n])
        with pytest.raises(SignatureError) as exc:
            verify_file(f, t, public_key=keys["a_pub"])
        assert _reason(exc) == "malformed", n


def test_wrong_key_untrusted_and_trusted(signed: tuple[Path, Path], keys: dict[str, Path], tmp_path: Path) -> None:
    f, sig = signed
    with pytest.raises(SignatureError) as exc:
        verify_file(f, sig, public_key=keys["b_pub"])
    assert _reason(exc) == "wrong-key"
    assert "signed by another key" in str(exc.value)
    trust = tmp_path / "trust"
    trust.mkdir()
    shutil.copyfile(keys["b_pub"], trust / "b.pub")
    with pytest.raises(SignatureError) as exc:
        verify_file(f, sig, trusted_keys=trust)
    assert _reason(exc) == "untrusted-key"
    assert "not among the 1 trusted key(s)" in str(exc.value)
    shutil.copyfile(keys["a_pub"], trust / "a.pem")
    assert verify_file(f, sig, trusted_keys=trust).key_source.endswith("a.pem")


def _rewrite(sig: Path, fn: object) -> None:
    bundle = json.loads(sig.read_bytes())
    fn(bundle)  # type: ignore[operator]
    sig.write_text(json.dumps(bundle))


def test_altered_signature_or_statement(signed: tuple[Path, Path], keys: dict[str, Path]) -> None:
    f, sig = signed
    orig = sig.read_bytes()

    def flip_sig(b: dict) -> None:  # type: ignore[type-arg]
        raw = bytearray(base64.b64decode(b["dsseEnvelope"]["signatures"][0]["sig"]))
        raw[-1] ^= 1
        b["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()

    def edit_statement(b: dict) -> None:  # type: ignore[type-arg]
        st = json.loads(base64.b64decode(b["dsseEnvelope"]["payload"]))
        st["subject"][0]["name"] = "other.sldp"
        b["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(st).encode()).decode()

    for fn in (flip_sig, edit_statement):
        sig.write_bytes(orig)
        _rewrite(sig, fn)
        with pytest.raises(SignatureError) as exc:
            verify_file(f, sig, public_key=keys["a_pub"])
        assert _reason(exc) == "bad-signature", fn.__name__


def test_missing_signature(signed: tuple[Path, Path], keys: dict[str, Path], tmp_path: Path) -> None:
    f, _ = signed
    with pytest.raises(SignatureError) as exc:
        verify_file(f, tmp_path / "nope.sig", public_key=keys["a_pub"])
    assert _reason(exc) == "missing"


def test_bundle_without_hint_is_checked_against_every_trusted_key(signed: tuple[Path, Path],
                                                                  keys: dict[str, Path], tmp_path: Path) -> None:
    f, sig = signed
    _rewrite(sig, lambda b: b["verificationMaterial"].pop("publicKey"))
    trust = tmp_path / "trust"
    trust.mkdir()
    shutil.copyfile(keys["b_pub"], trust / "b.pub")
    with pytest.raises(SignatureError, match="bad-signature"):
        verify_file(f, sig, trusted_keys=trust)
    shutil.copyfile(keys["a_pub"], trust / "a.pub")
    assert verify_file(f, sig, trusted_keys=trust).key_source.endswith("a.pub")


@pytest.mark.parametrize(("what", "edit", "reason"), [
    # the hint is a key id, 64 lowercase hex characters, or absent/null (annex section 5, step 2)
    ("upper-case hint", lambda b: b["verificationMaterial"]["publicKey"].update(
        hint=b["verificationMaterial"]["publicKey"]["hint"].upper()), "malformed"),
    ("empty hint", lambda b: b["verificationMaterial"]["publicKey"].update(hint=""), "malformed"),
    ("numeric hint", lambda b: b["verificationMaterial"]["publicKey"].update(hint=7), "malformed"),
    ("publicKey not an object", lambda b: b["verificationMaterial"].update(publicKey="k"), "malformed"),
    ("null hint", lambda b: b["verificationMaterial"]["publicKey"].update(hint=None), None),
    ("null publicKey", lambda b: b["verificationMaterial"].update(publicKey=None), None),
    # base64: standard alphabet, padded, nothing else
    ("payload one character short", lambda b: b["dsseEnvelope"].update(payload=b["dsseEnvelope"]["payload"][:-1]),
     "malformed"),
    ("payload with extra padding", lambda b: b["dsseEnvelope"].update(payload=b["dsseEnvelope"]["payload"] + "=="),
     "malformed"),
    ("padding after a full group", lambda b: b["dsseEnvelope"].update(payload="QUJD=="), "malformed"),
    ("URL-safe signature", lambda b: b["dsseEnvelope"]["signatures"][0].update(
        sig="-_" + b["dsseEnvelope"]["signatures"][0]["sig"][2:]), "malformed"),
    ("payload with a line break", lambda b: b["dsseEnvelope"].update(
        payload=b["dsseEnvelope"]["payload"][:8] + "\n" + b["dsseEnvelope"]["payload"][8:]), "malformed"),
])
def test_hint_and_base64_forms(signed: tuple[Path, Path], keys: dict[str, Path], what: str, edit: object,
                               reason: str | None) -> None:
    f, sig = signed
    bundle = json.loads(sig.read_bytes())
    before = json.dumps(bundle)
    edit(bundle)  # type: ignore[operator]
    assert json.dumps(bundle) != before, what  # the edit changed something (e.g. the payload has padding)
    sig.write_text(json.dumps(bundle))
    if reason is None:
        assert verify_file(f, sig, public_key=keys["a_pub"]).key_id
        return
    with pytest.raises(SignatureError) as exc:
        verify_file(f, sig, public_key=keys["a_pub"])
    assert _reason(exc) == reason, what


def test_upper_case_resource_digest_is_a_statement_error(signed: tuple[Path, Path], keys: dict[str, Path]) -> None:
    # validly signed, but the statement writes the file digest in upper case: the annex (step 5) asks for
    # lowercase hex, and the failure must name the statement, not a changed file
    f, sig = signed
    bundle = json.loads(sig.read_bytes())
    st = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    res = st["predicate"]["resources"][0]
    res["digest"] = res["digest"].upper()
    payload = json.dumps(st).encode()
    priv = load_private_key(keys["a"])
    assert isinstance(priv, ec.EllipticCurvePrivateKey)
    from cryptography.hazmat.primitives import hashes

    raw_sig = priv.sign(pae(bundle["dsseEnvelope"]["payloadType"], payload), ec.ECDSA(hashes.SHA256()))
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(payload).decode()
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(raw_sig).decode()
    sig.write_text(json.dumps(bundle))
    with pytest.raises(SignatureError) as exc:
        verify_file(f, sig, public_key=keys["a_pub"])
    assert _reason(exc) == "statement"
    assert "lowercase" in str(exc.value)


def test_keygen_permissions_and_no_overwrite(tmp_path: Path) -> None:
    priv, pub, kid = generate_keypair(tmp_path / "k" / "me.key")
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert pub == tmp_path / "k" / "me.pub"
    assert key_id(load_public_key(pub)) == kid
    assert b"BEGIN PRIVATE KEY" in priv.read_bytes() and b"BEGIN PUBLIC KEY" in pub.read_bytes()
    with pytest.raises(UsageError, match="refusing to overwrite"):
        generate_keypair(priv)
    before = priv.read_bytes()
    generate_keypair(priv, overwrite=True)
    assert priv.read_bytes() != before and stat.S_IMODE(priv.stat().st_mode) == 0o600


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o601])
def test_private_key_readable_by_others_is_refused(keys: dict[str, Path], tmp_path: Path, mode: int) -> None:
    k = tmp_path / "k.key"
    shutil.copyfile(keys["a"], k)
    os.chmod(k, mode)
    with pytest.raises(UsageError, match=f"permissions {mode:04o}"):
        load_private_key(k)
    with pytest.raises(UsageError, match="chmod 600"):
        sign_file(VALID, k, tmp_path / "x.sig")
    assert not (tmp_path / "x.sig").exists()
    os.chmod(k, 0o600)
    load_private_key(k)


def _pem_private(key: object) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,  # type: ignore[attr-defined]
                             serialization.NoEncryption())


def _pem_public(key: object) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,  # type: ignore[attr-defined]
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize(("kind", "message"), [
    ("ed25519", "Ed25519"), ("rsa", "RSA"), ("p384", "secp384r1"), ("garbage", "not a PEM private key"),
    ("public", "this is a public key"), ("encrypted", "encrypted"),
])
def test_wrong_private_key_types(tmp_path: Path, kind: str, message: str) -> None:
    k = tmp_path / "k.key"
    gen = {"ed25519": lambda: ed25519.Ed25519PrivateKey.generate(),
           "rsa": lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024),
           "p384": lambda: ec.generate_private_key(ec.SECP384R1())}
    if kind in gen:
        k.write_bytes(_pem_private(gen[kind]()))
    elif kind == "garbage":
        k.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n")
    elif kind == "public":
        k.write_bytes(_pem_public(ec.generate_private_key(ec.SECP256R1())))
    else:
        k.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw")))
    os.chmod(k, 0o600)
    with pytest.raises(UsageError, match=message):
        load_private_key(k)


@pytest.mark.parametrize(("kind", "message"), [
    ("ed25519", "Ed25519"), ("p384", "secp384r1"), ("private", "PRIVATE key"), ("garbage", "not a PEM public key"),
])
def test_wrong_public_key_types(tmp_path: Path, kind: str, message: str) -> None:
    k = tmp_path / "k.pub"
    if kind == "ed25519":
        k.write_bytes(_pem_public(ed25519.Ed25519PrivateKey.generate()))
    elif kind == "p384":
        k.write_bytes(_pem_public(ec.generate_private_key(ec.SECP384R1())))
    elif kind == "private":
        k.write_bytes(_pem_private(ec.generate_private_key(ec.SECP256R1())))
    else:
        k.write_bytes(b"hello")
    with pytest.raises(UsageError, match=message):
        load_public_key(k)


def test_pae_is_dsse_v1() -> None:
    assert pae("application/vnd.in-toto+json", b"{}") == b"DSSEv1 28 application/vnd.in-toto+json 2 {}"


def test_model_signing_cli_agrees(signed: tuple[Path, Path], keys: dict[str, Path]) -> None:
    """The signature is model-signing's own format: its CLI verifies it and rejects a changed byte."""
    f, sig = signed
    cmd = [sys.executable, "-m", "model_signing", "verify", "key", "--public_key", str(keys["a_pub"]),
           "--signature", str(sig), str(f)]
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    d = bytearray(f.read_bytes())
    d[100] ^= 0x10
    f.write_bytes(bytes(d))
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode != 0
    assert "mismatch" in (bad.stdout + bad.stderr).lower()


def _corpus_cases() -> list[dict[str, str]]:
    return list(json.loads((CORPUS / "index.json").read_text())["cases"])


@pytest.mark.parametrize("case", _corpus_cases(), ids=lambda c: c["name"])
def test_signing_corpus(case: dict[str, str]) -> None:
    kw = {"public_key": CORPUS / case["public_key"]} if "public_key" in case else \
        {"trusted_keys": CORPUS / case["trusted_keys"]}
    if case["expect"] == "valid":
        rep = verify_file(CORPUS / case["file"], CORPUS / case["signature"], **kw)  # type: ignore[arg-type]
        assert rep.key_id == key_id(load_public_key(CORPUS / "signer.pub"))
    else:
        with pytest.raises(SignatureError) as exc:
            verify_file(CORPUS / case["file"], CORPUS / case["signature"], **kw)  # type: ignore[arg-type]
        assert exc.value.reason == case["reason"]


def test_signing_corpus_is_complete_and_described() -> None:
    cases = _corpus_cases()
    reasons = {c.get("reason") for c in cases}
    assert {"file-changed", "wrong-key", "untrusted-key", "malformed", "bad-signature", "missing"} <= reasons
    for c in cases:
        assert c["description"]
        if c["expect"] == "valid" or c.get("reason") != "missing":
            assert (CORPUS / c["signature"]).is_file(), c
        assert (CORPUS / c["file"]).is_file(), c
    # the signed file is a valid SLDP file, byte-identical to the golden valid/full.sldp
    assert (CORPUS / "signed.sldp").read_bytes() == VALID.read_bytes()


@pytest.mark.parametrize("case", [c for c in _corpus_cases() if "public_key" in c and c.get("reason") != "missing"],
                         ids=lambda c: c["name"])
def test_signing_corpus_with_model_signing_cli(case: dict[str, str]) -> None:
    """Third-party check: model-signing's own verifier agrees with the index on every single-key case."""
    r = subprocess.run([sys.executable, "-m", "model_signing", "verify", "key", "--public_key",
                        str(CORPUS / case["public_key"]), "--signature", str(CORPUS / case["signature"]),
                        str(CORPUS / case["file"])], capture_output=True, text=True, timeout=120, check=False)
    assert (r.returncode == 0) == (case["expect"] == "valid"), r.stdout + r.stderr


def test_signing_modules_import_light() -> None:
    """``import sldpack`` and the signing/provenance modules and commands pull in neither torch nor the
    signing libraries: model-signing and cryptography load only when a key is used."""
    code = ("import sys, sldpack, sldpack.pipelines.signing, sldpack.format.provenance, sldpack.cli.cmd_sign, "
            "sldpack.cli.cmd_container, sldpack.cli.cmd_report; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'model_signing', 'cryptography', "
            "'OpenSSL', 'sigstore')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=ROOT)
