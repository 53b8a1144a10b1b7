"""The receiver's acceptance record: "we checked this exact file on our own patients before use", signed.

``sldp accept FILE --data LOCAL --key RECEIVER.key`` replays FILE, evaluates it on the receiver's labelled
images the way ``sldp eval`` does, optionally recalibrates Eq. (9)'s delta on a held-out part of them, and
writes ``FILE.accept.json``: a Sigstore bundle (the layout of a file signature, annex ``SLDP-1-signing.md``)
whose DSSE envelope carries an in-toto statement

* ``subject``: the file's name and the SHA-256 of its exact bytes;
* ``predicateType``: :data:`ACCEPTANCE_PREDICATE`;
* ``predicate``: the file (SHA-256, manifest digest, architecture, the sender's signature key id when it was
  verified), the local data (what was read, by which split rule, and the digest of spec 5.3.1 over it, so
  the record names the test set without holding it), the local metrics with 95 % confidence intervals,
  the delta used (and, with calibration, the held-out metrics with and without it), the date, the sldpack
  version and the replay outcome.

The record is a separate file: the sender's ``.sldp`` (and its signature) are never modified.
``sldp verify FILE --acceptance FILE.accept.json --trusted-keys DIR`` checks it (:func:`verify_acceptance`):
the receiver key is trusted, the signature verifies (a changed byte of the statement fails), and the
record is about these exact file bytes.

Confidence intervals: Wilson score intervals for the proportions (sensitivity, specificity, accuracy),
percentile bootstrap over images (seeded, :data:`BOOTSTRAP_RESAMPLES` resamples) for HM and AUC.

Verification is torch-free; evaluation imports torch only inside :func:`evaluate_locally`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from sldpack.errors import DataError, SignatureError, UsageError
from sldpack.format.provenance import file_sha256
from sldpack.pipelines.stats import hm_of

if TYPE_CHECKING:
    from sldpack.format.manifest import Manifest
    from sldpack.medical.imageset import ImageSet
    from sldpack.pipelines.datasets import DataSelection
    from sldpack.pipelines.inputs import DataSpec

__all__ = [
    "ACCEPTANCE_PREDICATE",
    "BOOTSTRAP_RESAMPLES",
    "DEFAULT_CALIBRATION_FRACTION",
    "AcceptanceReport",
    "binary_metrics_with_ci",
    "calibrate_delta",
    "check_data_fits",
    "default_acceptance_path",
    "evaluate_locally",
    "file_delta",
    "per_image_outcomes",
    "verify_acceptance",
    "wilson_interval",
    "write_acceptance",
]

ACCEPTANCE_PREDICATE = "https://sldpack/acceptance/v1"
"""in-toto ``predicateType`` of an acceptance record."""
BOOTSTRAP_RESAMPLES = 2000
"""Bootstrap resamples (over images) of the HM and AUC intervals."""
DEFAULT_CALIBRATION_FRACTION = 0.5
"""Share of the local images that ``--calibrate-delta`` chooses delta on; the rest is held out to report on."""
_Z95 = 1.959963984540054  # the 97.5 % normal quantile


# --- confidence intervals ------------------------------------------------------------------------------

def wilson_interval(k: int, n: int, z: float = _Z95) -> tuple[float, float] | None:
    """Wilson score interval of the proportion ``k / n`` (``None`` when ``n`` is 0).

    Chosen over the normal approximation because local test sets are small and rates near 0 or 1.
    """
    if n <= 0:
        return None
    p = k / n
    den = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def _percentiles(values: NDArray[np.float64]) -> tuple[float, float] | None:
    ok = values[np.isfinite(values)]  # a resample without one of the classes has no HM/AUC
    return (float(np.percentile(ok, 2.5)), float(np.percentile(ok, 97.5))) if ok.size else None


def _ci_entry(value: float, ci: tuple[float, float] | None, method: str) -> dict[str, Any]:
    v = None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
    return {"value": v, "ci95": None if ci is None else [float(ci[0]), float(ci[1])], "method": method}


def binary_metrics_with_ci(true: NDArray[Any], decisions: NDArray[Any], scores: NDArray[Any] | None, *,
                           resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """Sensitivity, specificity, accuracy (Wilson 95 % CI), HM and AUC (bootstrap 95 % CI over images).

    Args:
        true: 0/1 labels (positive = 1).
        decisions: 0/1 decisions.
        scores: the image scores behind the decisions (Eq. 9's P/(N+P), or p(positive)); ``None``: no AUC.
        resamples, seed: the bootstrap.

    Raises:
        DataError: no image, or labels/decisions other than 0/1.
    """
    from sldpack.medical.metrics import binary_metrics, roc_auc

    t = np.asarray(true, dtype=np.int64)
    d = np.asarray(decisions, dtype=np.int64)
    if t.size == 0:
        raise DataError("no labelled image to compute metrics on")
    m = binary_metrics(t, d, scores)
    boot = f"percentile bootstrap over images, {resamples} resamples, seed {seed}"
    sc = None if scores is None else np.asarray(scores, dtype=np.float64)
    rng = np.random.default_rng(seed)
    hms = np.empty(resamples, dtype=np.float64)
    aucs = np.full(resamples, np.nan)
    step = max(1, 2_000_000 // t.size)  # resamples per block: bounded temporaries whatever the set size
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        idx = rng.integers(0, t.size, size=(stop - start, t.size))
        hms[start:stop] = hm_of(t[idx] == 1, d[idx] == 1)
        if sc is not None and not math.isnan(m.auc):
            for j, row in enumerate(idx):
                aucs[start + j] = roc_auc(t[row], sc[row])
    hm_ci = _percentiles(hms)
    auc_ci = _percentiles(aucs)
    return {
        "n": int(t.size), "positives": int((t == 1).sum()), "negatives": int((t == 0).sum()),
        "tp": m.tp, "fn": m.fn, "tn": m.tn, "fp": m.fp,
        "sensitivity": _ci_entry(m.sensitivity, wilson_interval(m.tp, m.tp + m.fn), "wilson"),
        "specificity": _ci_entry(m.specificity, wilson_interval(m.tn, m.tn + m.fp), "wilson"),
        "accuracy": _ci_entry(m.accuracy, wilson_interval(m.tp + m.tn, m.n), "wilson"),
        "hm": _ci_entry(m.hm, hm_ci, boot),
        "auc": _ci_entry(m.auc, auc_ci, boot),
    }


# --- delta ---------------------------------------------------------------------------------------------

def file_delta(manifest: Manifest) -> float:
    """Eq. (9)'s delta the file's sender chose: the ``decision`` record when the file has one, else the
    paper's default (:data:`sldpack.medical.detection.DEFAULT_DELTA`)."""
    from sldpack.medical.detection import DEFAULT_DELTA

    decision = getattr(manifest, "decision", None)
    value = getattr(decision, "delta", None)
    return float(value) if isinstance(value, (int, float)) else DEFAULT_DELTA


def calibrate_delta(scores: NDArray[Any], true: NDArray[Any], *, default: float) -> float:
    """The delta in [0, 1] that maximises HM of Eq. (9)'s decisions ``score >= delta`` on these images.

    Candidates are the observed scores (every distinct decision set is reached at one of them) and
    ``default``; ties go to the candidate closest to ``default`` (the sender's choice is kept unless the local
    data say otherwise).

    Raises:
        DataError: the images do not hold both classes (HM is undefined).
    """
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(true, dtype=np.int64) == 1
    if t.all() or (~t).all():
        raise DataError("delta calibration needs positive and negative images in the calibration part")
    cands = np.unique(np.concatenate([s, [default]]))
    cands = cands[(cands >= 0.0) & (cands <= 1.0)]
    hms = hm_of(np.broadcast_to(t, (cands.size, t.size)), s[None, :] >= cands[:, None])
    best = float(np.nanmax(hms))
    ties = cands[np.isclose(hms, best, rtol=0.0, atol=1e-12)]
    return float(ties[np.argmin(np.abs(ties - default))])


# --- data checks ---------------------------------------------------------------------------------------

def check_data_fits(manifest: Manifest, data: ImageSet, *, patch_size: int | None, source: str) -> None:
    """Refuse local data the file's network cannot read, naming both sides (before any replay).

    The loaders give grayscale ``[N, H, W]``; a network with another channel count cannot take them. A
    patch model needs images at least one patch large; a whole-image model needs the network's input size,
    or square images (area-resized, as ``sldp eval`` does).

    Raises:
        DataError: the mismatch, with the file's expectation and what the data hold.
    """
    arch = manifest.arch
    h, w = data.shape
    if arch.in_channels != 1:
        raise DataError(f"{source}: the images are grayscale (1 channel), the network of this file takes "
                        f"{arch.in_channels} channels")
    ih, iw = int(arch.image_size[0]), int(arch.image_size[1])
    if patch_size is not None:
        if h < patch_size or w < patch_size:
            raise DataError(f"{source}: images are {h}x{w} px, smaller than this file's {patch_size} px patches")
        return
    if (h, w) != (ih, iw) and (h != w or ih != iw):
        raise DataError(f"{source}: images are {h}x{w} px, the network takes {ih}x{iw} px (only square images "
                        "are resized to a square input)")


# --- evaluation ----------------------------------------------------------------------------------------

def per_image_outcomes(ev: Any, class_names: tuple[str, ...]) -> tuple[NDArray[np.int64], NDArray[np.int64],
                                                                 NDArray[np.float64] | None]:
    """``(true 0/1, decision 0/1, score)`` per image of a binary evaluation
    (:class:`~sldpack.pipelines.evaluate.MedicalEvaluation`: Eq. 9 scores, or p(class 1) of a two-class model).

    Raises:
        UsageError: a whole-image model with other than two classes.
    """
    if ev.detection is not None:
        det = ev.detection
        return det.true_labels, det.decisions.astype(np.int64), det.scores
    if len(class_names) != 2:
        raise UsageError(f"acceptance metrics are binary (positive vs negative); this file has {len(class_names)} "
                         f"classes ({'/'.join(class_names)})")
    rows = ev.per_image
    t = np.array([r["true_label"] for r in rows], dtype=np.int64)
    d = np.array([r["predicted"] for r in rows], dtype=np.int64)
    s = np.array([r[f"p_{class_names[1]}"] for r in rows], dtype=np.float64)
    return t, d, s


def evaluate_locally(path: str | os.PathLike[str], spec: DataSpec, *, split: str = "all", delta: float | None = None,
                     calibrate: bool = False, calibration_fraction: float = DEFAULT_CALIBRATION_FRACTION,
                     calibration_seed: int = 0, windows: str = "auto", device: Any = "cpu",
                     sender_signature: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Replay ``path``, evaluate it on the local images of ``spec``, and return the acceptance predicate.

    Args:
        path: the received ``.sldp`` (read only).
        spec: the local data (the shared data options).
        split: which part of the local data (default all of it).
        delta: Eq. (9)'s delta (default :func:`file_delta`).
        calibrate: choose delta on ``calibration_fraction`` of the images (stratified, ``calibration_seed``)
            and report the rest with the file's delta and with the calibrated one.
        windows: as ``sldp eval --windows``.
        device: where torch runs.
        sender_signature: the verified sender signature (``SignatureReport.to_dict()``), or ``None``.

    Raises:
        DataError: data that do not fit the network, unlabelled images, one class only.
        UsageError: calibration of a whole-image model (it decides by argmax: no delta), bad fractions.
        ReplayMismatchError: the replay does not reproduce the file's fingerprint.
    """
    import sldpack
    from sldpack import __version__
    from sldpack.errors import ReplayMismatchError
    from sldpack.format.provenance import training_data_sha256
    from sldpack.medical.detection import decide
    from sldpack.medical.loaders import split_indices
    from sldpack.nn.verify import replay_and_verify
    from sldpack.pipelines.evaluate import evaluate
    from sldpack.pipelines.patch_source import patch_task_from_manifest

    src = Path(path)
    if not (0.0 < calibration_fraction < 1.0):
        raise UsageError(f"the calibration fraction must be in (0, 1), got {calibration_fraction}")
    file_sha = file_sha256(src)
    with sldpack.open(src) as f:
        manifest = f.manifest
        manifest_sha = f.header.manifest_sha256
    if manifest.preprocessing is None:
        raise UsageError(f"{src} records no preprocessing (mean/std): it cannot be evaluated on images")
    names = tuple(manifest.labels.names) if manifest.labels is not None else ()
    settings = spec.patch_task(patch_task_from_manifest(manifest), default_size=None)
    sel: DataSelection = spec.select(split)
    data = sel.data
    check_data_fits(manifest, data, patch_size=None if settings is None else settings.size, source=sel.source)
    labels = np.asarray(data.labels)
    if not bool(np.isin(labels, [0, 1]).all()):
        raise DataError(f"{sel.source}: acceptance needs every image labelled 0 (negative) or 1 (positive); "
                        f"labels found: {sorted(int(v) for v in np.unique(labels))}")
    if calibrate and settings is None:
        raise UsageError("--calibrate-delta applies to patch models (Eq. 9); this file decides whole images by "
                         "argmax, there is no delta to calibrate")
    d_file = file_delta(manifest)
    d_given = d_file if delta is None else float(delta)
    res, rep = replay_and_verify(src, device=device)
    if not rep.ok:
        raise ReplayMismatchError(f"{src}: {rep.summary()}; not accepted")
    ev = evaluate(res.module, manifest, data, class_names=names, settings=settings, delta=d_given, windows=windows)
    t, d, s = per_image_outcomes(ev, names)
    evaluation = {"task": ev.task, "rule": ev.settings.get("rule"), "settings": dict(ev.settings),
                  "images": ev.n_images, "inputs": ev.n_inputs,
                  "metrics": binary_metrics_with_ci(t, d, s)}
    if ev.patch is not None:
        evaluation["patch_level"] = ev.patch.to_dict()
    delta_obj: dict[str, Any] = {"file": d_file, "given": None if delta is None else d_given, "used": d_given,
                                 "calibrated": False}
    calibration = None
    if calibrate:
        assert s is not None
        cal, held = split_indices(len(data), (calibration_fraction, 1.0 - calibration_fraction), calibration_seed,
                                  labels=labels)
        if cal.size == 0 or held.size == 0:
            raise DataError(f"{len(data)} images cannot be split into a calibration and a held-out part")
        d_cal = calibrate_delta(s[cal], t[cal], default=d_given)
        calibration = {
            "fraction": calibration_fraction, "seed": calibration_seed, "rule": "stratified by image label "
            "(sldpack.medical.split_indices); delta maximising HM on the calibration part, ties nearest the "
            "file's delta", "calibration_images": int(cal.size), "held_out_images": int(held.size),
            "delta_before": d_given, "delta_calibrated": d_cal,
            "held_out_before": binary_metrics_with_ci(t[held], decide(s[held], d_given), s[held]),
            "held_out_calibrated": binary_metrics_with_ci(t[held], decide(s[held], d_cal), s[held]),
        }
        delta_obj.update({"used": d_cal, "calibrated": True})
    data_doc = dict(sel.to_dict())
    data_doc["sha256"] = training_data_sha256(data.images, data.labels, data.masks)
    data_doc["sha256_rule"] = "SLDP 1 spec section 5.3.1 over the images, labels and masks read"
    return {
        "file": {"name": src.name, "sha256": file_sha, "manifest_sha256": manifest_sha, "arch": manifest.arch.id,
                 "classes": list(names), "created": manifest.provenance.created,
                 "sender_signature": None if sender_signature is None else {
                     "verified": True, "key_id": sender_signature.get("key_id")}},
        "replay": {"status": rep.status, "device": rep.device, "threads": rep.threads},
        "data": data_doc,
        "evaluation": evaluation,
        "delta": delta_obj,
        "calibration": calibration,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tool": f"sldpack {__version__} accept",
        "sldpack_version": __version__,
    }


# --- the signed record ---------------------------------------------------------------------------------

def default_acceptance_path(path: str | os.PathLike[str]) -> Path:
    """``FILE.accept.json`` beside ``FILE``."""
    p = Path(path)
    return p.with_name(p.name + ".accept.json")


def write_acceptance(predicate: Mapping[str, Any], out: str | os.PathLike[str],
                     private_key: str | os.PathLike[str]) -> Path:
    """Sign ``predicate`` (from :func:`evaluate_locally`) with the receiver's key and write the record atomically.

    Raises:
        UsageError: an unusable key (annex SLDP-1-signing.md section 6: PEM P-256, mode 0600).
    """
    from sldpack.atomic import atomic_write_bytes
    from sldpack.pipelines.signing import STATEMENT_TYPE, sign_payload

    f = predicate["file"]
    statement = {"_type": STATEMENT_TYPE, "subject": [{"name": f["name"], "digest": {"sha256": f["sha256"]}}],
                 "predicateType": ACCEPTANCE_PREDICATE, "predicate": dict(predicate)}
    payload = json.dumps(statement, sort_keys=True, indent=1, allow_nan=False).encode("utf-8")
    return atomic_write_bytes(out, sign_payload(payload, private_key))


@dataclass(frozen=True)
class AcceptanceReport:
    """A verified acceptance record.

    Attributes:
        key_id: the receiver key that signed it.
        key_source: the public key file that verified it.
        predicate: the record's content (see the module docs).
    """

    key_id: str
    key_source: str
    predicate: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"key_id": self.key_id, "key_source": self.key_source, "predicate": dict(self.predicate)}

    def summary(self) -> str:
        """One human line: who accepted the file when, on how many images, with which HM."""
        p = self.predicate
        m = p.get("evaluation", {}).get("metrics", {})
        hm = m.get("hm", {})
        ci = hm.get("ci95")
        hm_txt = "n/a" if hm.get("value") is None else f"{hm['value']:.3f}" + (
            f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
        return (f"accepted {p.get('created')} by key {self.key_id[:16]}.. on {m.get('n')} local images: "
                f"HM {hm_txt}, delta used {p.get('delta', {}).get('used')}")


def verify_acceptance(path: str | os.PathLike[str], acceptance: str | os.PathLike[str], *,
                      public_key: str | os.PathLike[str] | None = None,
                      trusted_keys: str | os.PathLike[str] | None = None) -> AcceptanceReport:
    """Check an acceptance record of ``path``: signed by a trusted receiver key, unaltered, about these bytes.

    The steps of a file signature (annex SLDP-1-signing.md section 5, with the same reason words), except
    that the statement is an acceptance statement whose one subject is the SHA-256 of ``path``.

    Raises:
        SignatureError: ``missing``, ``malformed``, ``wrong-key``, ``untrusted-key``, ``bad-signature``,
            ``statement`` (not an acceptance record) or ``file-changed`` (a record of other bytes).
        UsageError: neither or both of ``public_key``/``trusted_keys``; an unusable key; no such file.
    """
    from sldpack.pipelines.signing import STATEMENT_TYPE, open_envelope, verifier_keys

    if (public_key is None) == (trusted_keys is None):
        raise UsageError("give exactly one of a public key (--key) or a trusted-keys folder (--trusted-keys)")
    src = Path(path)
    if not src.is_file():
        raise UsageError(f"{src}: not found (or not a regular file)")
    keys = verifier_keys(public_key, trusted_keys)
    rec = str(acceptance)
    payload, kid, kpath = open_envelope(acceptance, keys, expected=None if public_key is None else str(public_key),
                                        trusted=None if trusted_keys is None else str(trusted_keys))
    try:
        st = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SignatureError("statement", f"the signed payload is not JSON: {exc}", path=rec) from None
    if not isinstance(st, dict) or st.get("_type") != STATEMENT_TYPE or st.get("predicateType") != ACCEPTANCE_PREDICATE:
        raise SignatureError("statement", f"not an acceptance record (predicateType {ACCEPTANCE_PREDICATE})",
                             path=rec)
    subj, pred = st.get("subject"), st.get("predicate")
    if not isinstance(subj, list) or len(subj) != 1 or not isinstance(subj[0], dict) \
            or not isinstance(subj[0].get("digest"), dict) or not isinstance(subj[0]["digest"].get("sha256"), str) \
            or not isinstance(pred, dict):
        raise SignatureError("statement", "the record must name exactly one subject with a sha256 digest and "
                             "carry a predicate", path=rec)
    signed = subj[0]["digest"]["sha256"]
    got = file_sha256(src)
    if got != signed:
        raise SignatureError("file-changed", f"the record is about other bytes: SHA-256 {got[:16]}.. here, "
                             f"{signed[:16]}.. accepted", path=str(src))
    return AcceptanceReport(key_id=kid, key_source=str(kpath), predicate=pred)
