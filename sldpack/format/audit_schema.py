"""The membership-inference part of a recorded audit (``provenance.audit.membership``, spec 5.3.2).

Its own module because it is its own concern (what a membership audit claims, and the one consistency rule
a reader checks: the verdict follows from the attacks); :class:`sldpack.format.manifest.AuditRecord` holds
it. The readers here report errors through the manifest's schema context (its ``fail`` method), so a bad
value is an ``E_SCHEMA`` error at the value's byte offset like every other manifest field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sldpack.errors import FormatError
from sldpack.format.constants import AUDIT_VERDICTS, MEMBERSHIP_TARGETS

__all__ = ["MembershipAttack", "MembershipRecord", "SchemaContext"]

_MAX_ATTACK_NAME = 64


class SchemaContext(Protocol):
    """What the readers need from the manifest parser: an error at a dotted field path."""

    def fail(self, path: str, message: str, expected: Any = None, got: Any = None) -> FormatError: ...


def _field(ctx: SchemaContext, obj: Any, path: str, key: str, typ: type | tuple[type, ...], *,
           required: bool = True) -> Any:
    if not isinstance(obj, dict):
        raise ctx.fail(path, "field has the wrong type", expected="map", got=type(obj).__name__)
    if key not in obj:
        if required:
            raise ctx.fail(f"{path}.{key}", "required field is missing", expected=str(typ), got="nothing")
        return None
    v = obj[key]
    if isinstance(v, bool) or not isinstance(v, typ):
        raise ctx.fail(f"{path}.{key}", "field has the wrong type",
                       expected="number" if typ == (int, float) else getattr(typ, "__name__", str(typ)),
                       got=type(v).__name__)
    return v


def _unit(ctx: SchemaContext, obj: Any, path: str, key: str, *, required: bool = True) -> float | None:
    """A finite number in [0, 1] (an AUC, a rate, a threshold)."""
    v = _field(ctx, obj, path, key, (int, float), required=required)
    if v is None:
        return None
    if not (math.isfinite(v) and 0.0 <= v <= 1.0):
        raise ctx.fail(f"{path}.{key}", "value out of range", expected="finite number in 0..1", got=v)
    return float(v)


def _choice(ctx: SchemaContext, obj: Any, path: str, key: str, choices: tuple[str, ...]) -> str:
    v = _field(ctx, obj, path, key, str)
    if v not in choices:
        raise ctx.fail(f"{path}.{key}", "unknown value", expected=" | ".join(choices), got=v)
    return str(v)


@dataclass(frozen=True)
class MembershipAttack:
    """One membership-inference attack on one network, as recorded (``...membership.attacks``).

    Attributes:
        attack: the attack's name (``loss``, ``lira-offline``), 1..64 characters.
        target: ``distilled`` (the file's replayed network) or ``trained`` (the normally trained comparison).
        auc, auc_low, auc_high: ROC AUC and its CI (``auc_low <= auc_high``; a percentile-bootstrap CI need
            not contain the point estimate).
        tpr_at_1pct_fpr: TPR at FPR 1 %, when measured.
        n: members attacked (= non-members), when known.
    """

    attack: str
    target: str
    auc: float
    auc_low: float
    auc_high: float
    tpr_at_1pct_fpr: float | None = None
    n: int | None = None

    def to_obj(self) -> dict[str, Any]:
        """The manifest map (optional keys only when set)."""
        d: dict[str, Any] = {"attack": self.attack, "target": self.target, "auc": self.auc,
                             "auc_low": self.auc_low, "auc_high": self.auc_high}
        if self.tpr_at_1pct_fpr is not None:
            d["tpr_at_1pct_fpr"] = self.tpr_at_1pct_fpr
        if self.n is not None:
            d["n"] = self.n
        return d

    @classmethod
    def from_obj(cls, ctx: SchemaContext, obj: Any, path: str) -> MembershipAttack:
        """Read and check one entry (``E_SCHEMA`` at the offending field)."""
        name = _field(ctx, obj, path, "attack", str)
        if not 1 <= len(name) <= _MAX_ATTACK_NAME:
            raise ctx.fail(f"{path}.attack", "attack name must be 1..64 characters", expected="1..64",
                           got=len(name))
        auc, lo, hi = (_unit(ctx, obj, path, k) for k in ("auc", "auc_low", "auc_high"))
        assert auc is not None and lo is not None and hi is not None
        if lo > hi:
            raise ctx.fail(f"{path}.auc_low", "CI lower bound above its upper bound", expected=f"<= {hi}", got=lo)
        n = _field(ctx, obj, path, "n", int, required=False)
        if n is not None and n < 1:
            raise ctx.fail(f"{path}.n", "integer out of range", expected=">= 1", got=n)
        return cls(attack=name, target=_choice(ctx, obj, path, "target", MEMBERSHIP_TARGETS), auc=auc,
                   auc_low=lo, auc_high=hi, tpr_at_1pct_fpr=_unit(ctx, obj, path, "tpr_at_1pct_fpr", required=False),
                   n=n)


@dataclass(frozen=True)
class MembershipRecord:
    """The membership-inference part of a recorded audit (``provenance.audit.membership``).

    ``verdict`` follows from the attacks: ``FLAG`` exactly when an attack on the ``distilled`` network has
    ``auc_low > flag_auc`` (a reader checks this, so a record cannot claim PASS beside a flagging attack).
    """

    verdict: str
    flag_auc: float
    attacks: tuple[MembershipAttack, ...]

    def rule_verdict(self) -> str:
        """The verdict the attacks and ``flag_auc`` give."""
        flagged = any(a.target == "distilled" and a.auc_low > self.flag_auc for a in self.attacks)
        return "FLAG" if flagged else "PASS"

    def to_obj(self) -> dict[str, Any]:
        """The manifest map."""
        return {"verdict": self.verdict, "flag_auc": self.flag_auc, "attacks": [a.to_obj() for a in self.attacks]}

    @classmethod
    def from_obj(cls, ctx: SchemaContext, obj: Mapping[str, Any], path: str) -> MembershipRecord:
        """Read and check the map, the verdict against its rule included."""
        verdict = _choice(ctx, obj, path, "verdict", AUDIT_VERDICTS)
        flag = _unit(ctx, obj, path, "flag_auc")
        assert flag is not None
        raw = _field(ctx, obj, path, "attacks", list)
        if not raw:
            raise ctx.fail(f"{path}.attacks", "at least one attack is required", expected=">= 1", got=0)
        attacks = tuple(MembershipAttack.from_obj(ctx, a, f"{path}.attacks.{i}") for i, a in enumerate(raw))
        if not any(a.target == "distilled" for a in attacks):
            raise ctx.fail(f"{path}.attacks", "no attack on the distilled network", expected="target distilled",
                           got="none")
        rec = cls(verdict=verdict, flag_auc=flag, attacks=attacks)
        if rec.rule_verdict() != verdict:
            raise ctx.fail(f"{path}.verdict", "verdict contradicts the attacks and flag_auc",
                           expected=rec.rule_verdict(), got=verdict)
        return rec
