"""Verification: replay a ``.sldp`` file and judge the result against its recorded replay fingerprint.

The outcome is a :class:`ReplayReport` (``exact``, ``within_tolerance``, ``failed`` or ``no_fingerprint``);
``sldp verify --replay`` and ``sldp replay`` both go through :func:`replay_and_verify`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from sldpack.errors import ReplayMismatchError
from sldpack.nn.device import resolve_device
from sldpack.nn.fingerprint import ComparisonStatus, compare_fingerprint
from sldpack.nn.network import canonical_state, theta_digest
from sldpack.nn.replay import ReplayResult, SourceLike, read_source, replay_arrays

__all__ = ["ReplayReport", "ReplayStatus", "replay_and_verify", "verify_replay"]

ReplayStatus = ComparisonStatus | Literal["no_fingerprint"]
"""Outcome of a replay check (see :class:`ReplayReport`)."""


@dataclass(frozen=True)
class ReplayReport:
    """Outcome of :func:`verify_replay`.

    ``status`` is ``"exact"`` (theta_opt digest identical), ``"within_tolerance"`` (digest differs, every
    probe logit within the recorded tolerance; ``max_abs_deviation`` says by how much), ``"failed"``
    (beyond tolerance, wrong shape) or ``"no_fingerprint"`` (the file records none: nothing to check).
    """

    status: ReplayStatus
    expected_sha256: str | None
    actual_sha256: str
    max_abs_deviation: float | None
    tolerance: float | None
    theta0: str
    device: str
    threads: int
    reference_threads: int | None
    seconds: float
    notes: tuple[str, ...] = ()
    failures: tuple[dict[str, Any], ...] = ()
    """Every failing check (``status`` failed): the tensor's name, its deviation and its tolerance."""

    @property
    def ok(self) -> bool:
        """True for ``exact`` and ``within_tolerance``."""
        return self.status in ("exact", "within_tolerance")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"status": self.status, "ok": self.ok, "expected_sha256": self.expected_sha256,
                "actual_sha256": self.actual_sha256, "max_abs_deviation": self.max_abs_deviation,
                "tolerance": self.tolerance, "theta0": self.theta0, "device": self.device,
                "threads": self.threads, "reference_threads": self.reference_threads,
                "seconds": round(self.seconds, 3), "notes": list(self.notes), "failures": list(self.failures),
                "summary": self.summary()}

    def summary(self) -> str:
        """One human line."""
        if self.status == "exact":
            text = f"replay exact: theta_opt sha256 {self.actual_sha256[:16]}... matches"
        elif self.status == "within_tolerance":
            text = (f"replay within tolerance: digest differs, max |probe logit deviation| "
                    f"{self.max_abs_deviation:.3g} <= {self.tolerance:.3g}")
        elif self.status == "no_fingerprint":
            text = "replay not checked: the file records no replay fingerprint"
        elif self.failures:  # every failing check, named: the probe logits or a state tensor's sketch
            text = "replay FAILED: " + "; ".join(_describe(f) for f in self.failures)
        else:
            dev = "n/a" if self.max_abs_deviation is None else f"{self.max_abs_deviation:.3g}"
            text = f"replay FAILED: max |probe logit deviation| {dev} > tolerance {self.tolerance}"
        text += f" [{self.device}, {self.threads} thread(s), theta0 {self.theta0}, {self.seconds:.1f}s]"
        return text

    def raise_for_status(self) -> None:
        """Raise :class:`~sldpack.errors.ReplayMismatchError` unless ``ok``."""
        if not self.ok:
            raise ReplayMismatchError(self.summary())


def _describe(f: dict[str, Any]) -> str:
    """``state tensor conv1.weight deviates by 8.68e-06 > tolerance 1.67e-06`` (one failing check)."""
    what = "probe logits" if f["check"] == "probe_logits" else (
        f"state tensor {f['tensor']}" if f["tensor"] else "state sketch: the tensor names differ from the recorded")
    if f["tensor"] is None:
        return what
    dev = "not finite" if f["deviation"] is None else f"{f['deviation']:.3g}"
    tol = "n/a" if f["tolerance"] is None else f"{f['tolerance']:.3g}"
    return f"{what} deviate{'' if f['check'] == 'probe_logits' else 's'} by {dev} > tolerance {tol}"


def verify_replay(source: SourceLike | Any, *, device: str | torch.device = "cpu",
                  threads: int | None = None) -> ReplayReport:
    """Re-derive theta_opt from the file and compare it with the recorded replay fingerprint.

    On the CPU, replay runs under the fingerprint's recorded thread count unless ``threads`` says
    otherwise, because the digest can depend on it (CPU kernels split reductions by thread).

    Args:
        source: path, bytes or open :class:`sldpack.SldpFile`.
        device: where to replay; the fingerprint's reference is the CPU, other devices are expected to
            land "within tolerance" at best.
        threads: CPU thread count (default: the reference's).

    Returns:
        The report (never raises for a mismatch; call ``report.raise_for_status()`` for that).

    Raises:
        FormatError / DigestError: the file is malformed. UsageError: it cannot be replayed.
    """
    return replay_and_verify(source, device=device, threads=threads)[1]


def replay_and_verify(source: SourceLike | Any, *, device: str | torch.device = "cpu",
                      threads: int | None = None) -> tuple[ReplayResult, ReplayReport]:
    """:func:`verify_replay`, also returning the replayed network (``sldp replay`` writes it out).

    Returns:
        ``(the replay, the report)``.
    """
    manifest, arrays = read_source(source)
    fp = manifest.replay
    ref_threads = None
    if fp is not None and isinstance(fp.reference.get("threads"), int):
        ref_threads = int(fp.reference["threads"])
    dev = resolve_device(device)
    use_threads = threads if threads is not None else (ref_threads or torch.get_num_threads())
    res = replay_arrays(manifest, arrays, device=dev, threads=use_threads if dev.type == "cpu" else None)
    notes: list[str] = []
    if res.theta_bn == "absent":
        notes.append("the network has batch norm but the file carries no theta_bn: running statistics are "
                     "the theta0 values (mean 0, var 1)")
    if dev.type != "cpu":
        notes.append("the reference configuration is the CPU; a different device is expected to differ in the "
                     "last bits")
    elif ref_threads is not None and use_threads != ref_threads:
        notes.append(f"replayed with {use_threads} threads, the reference used {ref_threads}")
    if fp is not None and fp.reference.get("torch") not in (None, torch.__version__):
        notes.append(f"reference torch {fp.reference.get('torch')}, this torch {torch.__version__}")
    if fp is None:
        digest = theta_digest(canonical_state(res.module))
        return res, ReplayReport(status="no_fingerprint", expected_sha256=None, actual_sha256=digest,
                                 max_abs_deviation=None, tolerance=None, theta0=res.theta0_status,
                                 device=str(dev), threads=use_threads, reference_threads=None,
                                 seconds=res.seconds, notes=tuple(notes))
    cmp = compare_fingerprint(res.module, fp, threads=use_threads)
    return res, ReplayReport(status=cmp.status, expected_sha256=fp.theta_opt_sha256, actual_sha256=cmp.actual_sha256,
                             max_abs_deviation=cmp.max_abs_deviation, tolerance=fp.tolerance, theta0=res.theta0_status,
                             device=str(dev), threads=use_threads, reference_threads=ref_threads,
                             seconds=res.seconds, notes=tuple(notes), failures=cmp.failures)
