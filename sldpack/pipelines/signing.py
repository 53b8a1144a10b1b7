"""Detached signatures over the exact bytes of a ``.sldp`` file (spec annex ``SLDP-1-signing.md``).

A signature is an OpenSSF model-signing (``model-signing`` 1.x) Sigstore bundle made in its offline
"key" mode: a DSSE envelope, signed with an ECDSA P-256 key, around an in-toto statement whose single
resource is the SHA-256 of the whole file. Nothing is sent anywhere (no Fulcio, no Rekor): the bundle
has no transparency-log entry and trust comes only from the public keys the receiver chose. The same
signature therefore also verifies with ``model_signing verify key --public_key PUB --signature SIG FILE``.

Signing goes through the ``model_signing`` package (the ``sign`` extra), imported only when signing, so
``import sldpack`` stays light. Verification is implemented here with ``cryptography`` alone, following
the annex step by step, so that every failure has one named reason (missing, malformed, another key,
untrusted key, bad signature, file changed) and the annex is shown to be enough for a third party.

Exit codes (``sldp verify``): a failed verification raises :class:`SignatureError` (exit 1); a
key that cannot be used (wrong type, unreadable, private key readable by others) raises
:class:`~sldpack.errors.UsageError` (exit 2).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import importlib
import json
import os
import re
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sldpack.errors import SignatureError, UsageError  # SignatureError: re-exported here too
from sldpack.format.provenance import file_sha256

if TYPE_CHECKING:  # cryptography is imported lazily: it is an optional dependency (the `sign` extra)
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey, EllipticCurvePublicKey

__all__ = [
    "BUNDLE_MEDIA_TYPE",
    "MAX_SIGNATURE_BYTES",
    "PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "STATEMENT_TYPE",
    "SignatureError",
    "SignatureReport",
    "generate_keypair",
    "key_id",
    "load_private_key",
    "load_public_key",
    "load_trusted_keys",
    "open_envelope",
    "pae",
    "sign_file",
    "sign_payload",
    "verifier_keys",
    "verify_file",
]

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
_HEX64 = re.compile(r"[0-9a-f]{64}")  # key ids and digests: lowercase only (annex section 5), used with fullmatch
# RFC 4648 section 4 base64, padded, nothing else (annex section 5, step 2); Python's b64decode alone also
# accepts padding after a complete group ("QUJD==")
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
# a one-file bundle is ~1.4 KB; the cap keeps a hostile "signature" from being parsed at any size
MAX_SIGNATURE_BYTES = 1 << 20
_CURVE = "secp256r1"
_KEY_SUFFIXES = (".pub", ".pem")


@dataclass(frozen=True)
class SignatureReport:
    """A successful verification: what was checked.

    Attributes:
        file_sha256: SHA-256 of the file's bytes (equal to the signed digest).
        key_id: SHA-256 (hex) of the signer's public key in PEM SubjectPublicKeyInfo form, as the
            bundle's ``verificationMaterial.publicKey.hint``.
        key_source: the public key file that verified the signature.
        subject_name: the file name recorded at signing time (informational; not checked).
    """

    file_sha256: str
    key_id: str
    key_source: str
    subject_name: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form."""
        return {"file_sha256": self.file_sha256, "key_id": self.key_id, "key_source": self.key_source,
                "subject_name": self.subject_name}


# --- keys -----------------------------------------------------------------------------------------

def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise UsageError("signing needs the 'sign' extra: pip install 'sldpack[sign]'") from exc
    return serialization


def key_id(public_key: EllipticCurvePublicKey) -> str:
    """SHA-256 hex of the key's PEM SubjectPublicKeyInfo bytes (model-signing's key hint)."""
    serialization = _crypto()
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


def _read_key_file(path: str | os.PathLike[str], what: str) -> bytes:
    p = Path(path)
    try:
        if not p.is_file():
            raise UsageError(f"{what} {p}: not found (or not a regular file)")
        size = p.stat().st_size
        if size > 64 * 1024:  # a PEM EC key is a few hundred bytes
            raise UsageError(f"{what} {p}: {size} bytes is not a PEM key file")
        return p.read_bytes()
    except OSError as exc:
        raise UsageError(f"{what} {p}: cannot read ({exc.strerror or exc})") from None


def _check_curve(key: Any, path: Path, what: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    pub = key.public_key() if hasattr(key, "public_key") else key
    if not isinstance(pub, ec.EllipticCurvePublicKey):
        kind = type(pub).__name__.lstrip("_").replace("PublicKey", "")
        raise UsageError(f"{what} {path}: a {kind or 'non-EC'} key; SLDP signatures need an ECDSA P-256 "
                         f"(secp256r1) key, as written by `sldp keygen`")
    if pub.curve.name != _CURVE:
        raise UsageError(f"{what} {path}: an ECDSA key on curve {pub.curve.name}; SLDP signatures need "
                         f"P-256 (secp256r1)")


def load_private_key(path: str | os.PathLike[str], *, check_permissions: bool = True) -> EllipticCurvePrivateKey:
    """Load an unencrypted PEM (PKCS#8 or SEC1) ECDSA P-256 private key.

    Args:
        path: the key file.
        check_permissions: refuse a key that the group or others may read or write (POSIX only).

    Raises:
        UsageError: missing or unreadable file; permissions too open; not a PEM private key (a public
            key, another key type or curve, an encrypted key).
    """
    p = Path(path)
    raw = _read_key_file(p, "private key")
    if b"PUBLIC KEY-----" in raw:
        raise UsageError(f"private key {p}: this is a public key; signing needs the private key "
                         "(`sldp keygen` writes both)")
    if check_permissions and os.name == "posix":
        mode = stat.S_IMODE(p.stat().st_mode)
        if mode & 0o077:
            raise UsageError(f"private key {p}: permissions {mode:04o} let others read it; "
                             f"run `chmod 600 {p}` (a leaked private key lets anyone sign as you)")
    serialization = _crypto()
    try:
        key = serialization.load_pem_private_key(raw, password=None)
    except TypeError:
        raise UsageError(f"private key {p}: the key is encrypted; sldp reads unencrypted PEM keys "
                         "(protect them with file permissions and an encrypted disk)") from None
    except (ValueError, binascii.Error):
        raise UsageError(f"private key {p}: not a PEM private key") from None
    except Exception as exc:  # cryptography raises UnsupportedAlgorithm for exotic keys
        raise UsageError(f"private key {p}: unsupported key ({type(exc).__name__}: {exc})") from None
    _check_curve(key, p, "private key")
    return key  # type: ignore[no-any-return]


def load_public_key(path: str | os.PathLike[str]) -> EllipticCurvePublicKey:
    """Load a PEM SubjectPublicKeyInfo ECDSA P-256 public key.

    Raises:
        UsageError: missing/unreadable file, a private key given where a public one belongs (refused:
            a private key should never travel to the verifier), another key type or curve.
    """
    p = Path(path)
    raw = _read_key_file(p, "public key")
    if b"PRIVATE KEY-----" in raw:
        raise UsageError(f"public key {p}: this is a PRIVATE key; verify needs the signer's public key "
                         "(never give a private key to a verifier)")
    serialization = _crypto()
    try:
        key = serialization.load_pem_public_key(raw)
    except (ValueError, binascii.Error):
        raise UsageError(f"public key {p}: not a PEM public key") from None
    except Exception as exc:
        raise UsageError(f"public key {p}: unsupported key ({type(exc).__name__}: {exc})") from None
    _check_curve(key, p, "public key")
    return key  # type: ignore[no-any-return]


def verifier_keys(public_key: str | os.PathLike[str] | None, trusted_keys: str | os.PathLike[str] | None
                  ) -> dict[str, tuple[Path, EllipticCurvePublicKey]]:
    """The keys a verification accepts, by key id: the one ``public_key``, else every key in ``trusted_keys``.

    Raises:
        UsageError: an unusable key file or folder (callers check first that exactly one was given).
    """
    if public_key is not None:
        k = load_public_key(public_key)
        return {key_id(k): (Path(public_key), k)}
    assert trusted_keys is not None
    return load_trusted_keys(trusted_keys)


def load_trusted_keys(directory: str | os.PathLike[str]) -> dict[str, tuple[Path, EllipticCurvePublicKey]]:
    """Every ``*.pub``/``*.pem`` public key in ``directory``, by key id.

    Raises:
        UsageError: the folder does not exist, holds no key, or one of its key files is unusable (a
            trust store with a broken entry is a configuration error, not something to skip silently).
    """
    d = Path(directory)
    if not d.is_dir():
        raise UsageError(f"trusted keys {d}: not a folder")
    out: dict[str, tuple[Path, EllipticCurvePublicKey]] = {}
    for p in sorted(d.iterdir()):
        if p.suffix in _KEY_SUFFIXES and p.is_file():
            k = load_public_key(p)
            out[key_id(k)] = (p, k)
    if not out:
        raise UsageError(f"trusted keys {d}: no *.pub or *.pem public key in the folder")
    return out


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` with mode 0600 from the first byte (never briefly world-readable), atomically."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            if os.name == "posix":
                os.fchmod(fh.fileno(), 0o600)  # the umask can only remove bits; make 0600 exact
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def generate_keypair(private_path: str | os.PathLike[str], public_path: str | os.PathLike[str] | None = None,
                     *, overwrite: bool = False) -> tuple[Path, Path, str]:
    """Create an ECDSA P-256 key pair: PKCS#8 PEM private key (mode 0600) and SPKI PEM public key.

    Args:
        private_path: where the private key goes.
        public_path: where the public key goes (default: ``private_path`` with suffix ``.pub``).
        overwrite: replace existing files (default: refuse, so a key is never lost by accident).

    Returns:
        ``(private_path, public_path, key_id)``.

    Raises:
        UsageError: a target exists (without ``overwrite``) or both paths are the same.
    """
    from cryptography.hazmat.primitives.asymmetric import ec

    from sldpack.atomic import atomic_write_bytes

    serialization = _crypto()
    priv = Path(private_path)
    pub = Path(public_path) if public_path is not None else priv.with_suffix(".pub")
    if priv.resolve() == pub.resolve():
        raise UsageError(f"the private and public key paths are the same: {priv}")
    for p in (priv, pub):
        if p.exists() and not overwrite:
            raise UsageError(f"{p} exists; refusing to overwrite a key (pass --force to replace it)")
    priv.parent.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    _write_private(priv, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    atomic_write_bytes(pub, key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub, key_id(key.public_key())


# --- signing --------------------------------------------------------------------------------------

def sign_file(path: str | os.PathLike[str], private_key: str | os.PathLike[str],
              signature: str | os.PathLike[str] | None = None) -> Path:
    """Sign the exact bytes of ``path`` with an ECDSA P-256 key; write a model-signing bundle.

    Offline: model-signing's key mode makes no network call. The signature file is written atomically.

    Args:
        path: the file to sign (any file; ``sldp sign`` checks it is a valid ``.sldp`` first).
        private_key: PEM private key, mode 0600.
        signature: output path (default: ``path`` + ``.sig``).

    Returns:
        The signature's path.

    Raises:
        UsageError: unusable key (see :func:`load_private_key`), missing file, or the ``sign`` extra
            (``model-signing``) is not installed.
    """
    src = Path(path)
    if not src.is_file():
        raise UsageError(f"{src}: not found (or not a regular file)")
    load_private_key(private_key)  # permissions and key type, with sldpack's messages, before model_signing
    try:
        # through importlib and typed Any: model-signing is optional and only partly annotated
        ms_hashing: Any = importlib.import_module("model_signing.hashing")
        ms_signing: Any = importlib.import_module("model_signing.signing")
    except ImportError as exc:
        raise UsageError(f"signing needs the 'sign' extra (model-signing, pyopenssl): pip install "
                         f"'sldpack[sign]' ({exc})") from None
    out = Path(signature) if signature is not None else src.with_name(src.name + ".sig")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(6)}.tmp")
    try:
        # pinned hashing: one resource ".", SHA-256 over the whole file (the annex's profile)
        cfg = ms_signing.Config().set_hashing_config(
            ms_hashing.Config().use_file_serialization(hashing_algorithm="sha256"))
        cfg.use_elliptic_key_signer(private_key=Path(private_key)).sign(src, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except OSError as exc:
        if exc.filename is None:  # the signing library's write (disk full) names no file: name ours
            exc.filename = str(out)
        raise
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return out


# --- verification ---------------------------------------------------------------------------------

def open_envelope(signature: str | os.PathLike[str], keys: Mapping[str, tuple[Path, EllipticCurvePublicKey]], *,
                  expected: str | None = None, trusted: str | None = None) -> tuple[bytes, str, Path]:
    """Steps 2-4 of annex ``SLDP-1-signing.md`` section 5 for any DSSE bundle: read the Sigstore bundle at
    ``signature``, check that its key is one of ``keys`` and that its signature verifies over the PAE.

    Used by :func:`verify_file` (the file signature) and by ``sldpack.pipelines.acceptance`` (the signed
    acceptance record), so both have the same reasons for every failure.

    Args:
        signature: the bundle file.
        keys: candidate public keys by key id (:func:`key_id`).
        expected: the one expected key's file name (for the ``wrong-key`` message), or ``None``.
        trusted: the trusted-keys folder (for the ``untrusted-key`` message), or ``None``.

    Returns:
        ``(the signed payload bytes, the signer's key id, the key file that verified it)``; the payload
        is not yet interpreted (the caller checks its statement).

    Raises:
        SignatureError: ``missing``, ``malformed``, ``wrong-key``, ``untrusted-key`` or ``bad-signature``.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    sig = Path(signature)
    s = str(sig)
    # 1. the bundle
    bundle = _read_bundle(sig)
    material = _field(bundle, "verificationMaterial", dict, "bundle", s)
    pub = material.get("publicKey")
    if pub is not None and not isinstance(pub, dict):
        raise SignatureError("malformed", "verificationMaterial.publicKey is not an object", path=s)
    hint = None if pub is None else pub.get("hint")
    if hint is not None and not (isinstance(hint, str) and _HEX64.fullmatch(hint)):
        # a key id is 64 lowercase hex characters: any other hint can only be a damaged bundle
        raise SignatureError("malformed", "verificationMaterial.publicKey.hint is not a key id (64 lowercase "
                             f"hex characters): {str(hint)[:80]!r}", path=s)
    env = _field(bundle, "dsseEnvelope", dict, "bundle", s)
    ptype = _field(env, "payloadType", str, "dsseEnvelope", s)
    if ptype != PAYLOAD_TYPE:
        raise SignatureError("malformed", f"payloadType {ptype!r}, expected {PAYLOAD_TYPE}", path=s)
    payload = _b64(_field(env, "payload", str, "dsseEnvelope", s), "dsseEnvelope.payload", s)
    sigs = _field(env, "signatures", list, "dsseEnvelope", s)
    if len(sigs) != 1:
        raise SignatureError("malformed", f"{len(sigs)} signatures in the envelope, expected exactly 1", path=s)
    raw_sig = _b64(_field(sigs[0], "sig", str, "dsseEnvelope.signatures[0]", s), "the signature value", s)

    # 2. which key: the hint names the signer's key; it must be the given key / one of the trusted keys
    if hint is not None:
        if hint not in keys:
            if expected is not None:
                raise SignatureError("wrong-key", f"signed by another key (key id {hint[:16]}..), not by "
                                     f"{expected} (key id {next(iter(keys))[:16]}..)", path=s)
            raise SignatureError("untrusted-key", f"the signer's key (key id {hint[:16]}..) is not among the "
                                 f"{len(keys)} trusted key(s) in {trusted}", path=s)
        candidates = [(hint, keys[hint])]
    else:  # an older bundle without a hint: any trusted key may verify it
        candidates = list(keys.items())

    # 3. the signature over PAE(payloadType, payload)
    signer = None
    for kid, (kpath, key) in candidates:
        try:
            key.verify(raw_sig, pae(ptype, payload), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        signer = (kid, kpath)
        break
    if signer is None:
        raise SignatureError("bad-signature", "the signature does not verify with the "
                             + ("signer's key" if hint is not None else "trusted key(s)")
                             + ": the signature or the signed statement was altered", path=s)
    return payload, signer[0], signer[1]


def sign_payload(payload: bytes, private_key: str | os.PathLike[str]) -> bytes:
    """A Sigstore bundle (JSON bytes) whose DSSE envelope carries ``payload`` (an in-toto statement),
    signed with ``private_key`` (ECDSA P-256 over the PAE): the same bundle layout as a file signature,
    so :func:`open_envelope` checks it. Used for documents that are not one file's bytes (the acceptance
    record); a file is signed with :func:`sign_file`.

    Raises:
        UsageError: an unusable key (see :func:`load_private_key`).
    """
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = load_private_key(private_key)
    raw = key.sign(pae(PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
    bundle = {"mediaType": BUNDLE_MEDIA_TYPE,
              "verificationMaterial": {"publicKey": {"hint": key_id(key.public_key())}, "tlogEntries": []},
              "dsseEnvelope": {"payload": base64.b64encode(payload).decode("ascii"), "payloadType": PAYLOAD_TYPE,
                               "signatures": [{"sig": base64.b64encode(raw).decode("ascii"), "keyid": ""}]}}
    return (json.dumps(bundle, indent=2, sort_keys=True) + "\n").encode("utf-8")


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: ``"DSSEv1" SP len(type) SP type SP len(payload) SP payload``."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _b64(value: Any, what: str, sig: str) -> bytes:
    if not isinstance(value, str):
        raise SignatureError("malformed", f"{what} is not a base64 string", path=sig)
    if not _BASE64.fullmatch(value):
        raise SignatureError("malformed", f"{what} is not padded standard base64 (RFC 4648 section 4)", path=sig)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("malformed", f"{what} is not valid base64", path=sig) from None


def _field(obj: Any, key: str, typ: type, what: str, sig: str) -> Any:
    if not isinstance(obj, dict) or key not in obj or not isinstance(obj[key], typ):
        raise SignatureError("malformed", f"{what}.{key} is missing or not a {typ.__name__}", path=sig)
    return obj[key]


def _read_bundle(sig: Path) -> dict[str, Any]:
    s = str(sig)
    try:
        if not sig.is_file():
            raise SignatureError("missing", "no signature file: the file is unsigned or the signature was "
                                 "not sent with it", path=s)
        size = sig.stat().st_size
        if size > MAX_SIGNATURE_BYTES:
            raise SignatureError("malformed", f"{size} bytes is larger than any signature bundle "
                                 f"({MAX_SIGNATURE_BYTES})", path=s)
        raw = sig.read_bytes()
    except OSError as exc:
        raise SignatureError("missing", f"cannot read the signature ({exc.strerror or exc})", path=s) from None
    try:
        bundle = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SignatureError("malformed", f"not a JSON Sigstore bundle (truncated or corrupted?): {exc}",
                             path=s) from None
    if not isinstance(bundle, dict):
        raise SignatureError("malformed", "not a JSON object", path=s)
    if bundle.get("mediaType") != BUNDLE_MEDIA_TYPE:
        raise SignatureError("malformed", f"mediaType {bundle.get('mediaType')!r}, expected {BUNDLE_MEDIA_TYPE}",
                             path=s)
    return bundle


def verify_file(path: str | os.PathLike[str], signature: str | os.PathLike[str] | None = None, *,
                public_key: str | os.PathLike[str] | None = None,
                trusted_keys: str | os.PathLike[str] | None = None) -> SignatureReport:
    """Check that ``signature`` is a valid signature of the exact bytes of ``path`` by a trusted key.

    Exactly one of ``public_key`` (one expected signer) or ``trusted_keys`` (a folder of ``*.pub``/
    ``*.pem`` public keys; any of them may have signed) must be given. The steps are those of annex
    ``SLDP-1-signing.md`` section 5, in that order.

    Args:
        path: the signed file.
        signature: the bundle (default: ``path`` + ``.sig``).
        public_key: the signer's public key.
        trusted_keys: a folder of trusted public keys.

    Returns:
        A :class:`SignatureReport`.

    Raises:
        SignatureError: verification failed (``reason`` says why).
        UsageError: neither or both of ``public_key``/``trusted_keys``; a key file is unusable; the
            signed file does not exist.
    """
    if (public_key is None) == (trusted_keys is None):
        raise UsageError("give exactly one of a public key (--key) or a trusted-keys folder (--trusted-keys)")
    src = Path(path)
    if not src.is_file():
        raise UsageError(f"{src}: not found (or not a regular file)")
    sig = Path(signature) if signature is not None else src.with_name(src.name + ".sig")
    s = str(sig)
    # keys first: an unusable key is a usage error (exit 2) whatever the signature looks like
    keys = verifier_keys(public_key, trusted_keys)

    # 1-3: the bundle, the signer's key, the signature
    payload, kid, kpath = open_envelope(sig, keys, expected=str(public_key) if public_key is not None else None,
                                        trusted=str(trusted_keys) if trusted_keys is not None else None)
    signer = (kid, kpath)

    # 4. the statement: one resource, the whole file, SHA-256; the subject digest consistent with it
    try:
        st = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SignatureError("statement", f"the signed payload is not JSON: {exc}", path=s) from None
    if not isinstance(st, dict) or st.get("_type") != STATEMENT_TYPE or st.get("predicateType") != PREDICATE_TYPE:
        raise SignatureError("statement", f"not a model-signing statement (_type {STATEMENT_TYPE}, "
                             f"predicateType {PREDICATE_TYPE})", path=s)
    pred = _field(st, "predicate", dict, "statement", s)
    ser = _field(pred, "serialization", dict, "predicate", s)
    if ser.get("method") != "files" or ser.get("hash_type") != "sha256":
        raise SignatureError("statement", f"serialization {ser.get('method')!r}/{ser.get('hash_type')!r}; the SLDP "
                             "profile signs one file with method 'files', hash_type 'sha256'", path=s)
    res = _field(pred, "resources", list, "predicate", s)
    if len(res) != 1 or not isinstance(res[0], dict) or res[0].get("name") != "." \
            or res[0].get("algorithm") != "sha256" or not isinstance(res[0].get("digest"), str):
        raise SignatureError("statement", "the statement must list exactly one resource {name: '.', "
                             "algorithm: 'sha256'} (a single signed file)", path=s)
    signed = res[0]["digest"]
    subj = _field(st, "subject", list, "statement", s)
    if not _HEX64.fullmatch(signed):  # else an upper-case digest would surface as "file-changed"
        raise SignatureError("statement", "the resource digest is not 64 lowercase hex characters", path=s)
    root = hashlib.sha256(bytes.fromhex(signed)).hexdigest()
    if len(subj) != 1 or not isinstance(subj[0], dict) or not isinstance(subj[0].get("digest"), dict) \
            or subj[0]["digest"].get("sha256") != root:
        raise SignatureError("statement", "the subject digest is not SHA-256 of the resource digest", path=s)

    # 5. the file's bytes
    got = file_sha256(src)
    if got != signed:
        raise SignatureError("file-changed", f"the file's bytes changed since they were signed: SHA-256 "
                             f"{got[:16]}.., signed {signed[:16]}..", path=str(src))
    return SignatureReport(file_sha256=got, key_id=signer[0], key_source=str(signer[1]),
                           subject_name=str(subj[0].get("name", "")))
