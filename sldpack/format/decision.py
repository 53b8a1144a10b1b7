"""The image-level decision rule (root key ``decision``, SLDP 1.1, spec 5.10): typed, with schema checks."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sldpack.format.constants import DECISION_DELTA_SOURCES, DECISION_RULES, DECISION_TARGET_PATTERN
from sldpack.format.fields import Ctx, choice, float_field, get, int_field, type_name

__all__ = ["Calibration", "DecisionRule"]


@dataclass(frozen=True)
class Calibration:
    """How a calibrated delta was chosen (``decision.calibration``, spec 5.10).

    ``target`` is ``max_hm`` (the delta with the highest held-out HM) or ``sensitivity>=X`` (the most
    specific delta whose held-out sensitivity reaches X); ``images`` the held-out images it was chosen on, ``hm``
    the held-out HM at the chosen delta, ``iteration`` the outer iteration selected with it.
    """

    target: str
    images: int
    hm: float
    iteration: int | None = None
    sensitivity: float | None = None
    specificity: float | None = None

    def to_obj(self) -> dict[str, Any]:
        d: dict[str, Any] = {"target": self.target, "images": self.images, "hm": float(self.hm)}
        if self.iteration is not None:
            d["iteration"] = self.iteration
        if self.sensitivity is not None:
            d["sensitivity"] = float(self.sensitivity)
        if self.specificity is not None:
            d["specificity"] = float(self.specificity)
        return d

    @classmethod
    def from_obj(cls, ctx: Ctx, obj: Mapping[str, Any], path: str = "decision.calibration") -> Calibration:
        target = get(ctx, obj, path, "target", str)
        if not re.match(DECISION_TARGET_PATTERN, target):
            raise ctx.fail(f"{path}.target", "unknown calibration target",
                           expected="max_hm | sensitivity>=X (X in [0, 1])", got=target[:80])

        def unit(key: str, required: bool) -> float | None:
            if not required and key not in obj:
                return None
            v = float_field(ctx, obj, path, key)
            if not 0.0 <= v <= 1.0:
                raise ctx.fail(f"{path}.{key}", "value must be in [0, 1]", expected="0 <= x <= 1", got=v)
            return v

        hm = unit("hm", True)
        assert hm is not None
        return cls(target=target, images=int_field(ctx, obj, path, "images", lo=1), hm=hm,
                   iteration=int_field(ctx, obj, path, "iteration", required=False),
                   sensitivity=unit("sensitivity", False), specificity=unit("specificity", False))


@dataclass(frozen=True)
class DecisionRule:
    """The image-level decision rule a file's network is meant to be used with (root key ``decision``, 1.1).

    ``eq9`` (patch models, seed paper Eq. 9): an image is positive when
    ``Num(positive) / (Num(negative) + Num(positive)) >= delta`` over its patches' predicted classes,
    patches of the ``ignored`` classes not counted. ``argmax`` (whole-image models): the image is positive
    when its argmax class is ``positive``. ``delta_source`` says whether ``delta`` is the paper's default
    or was calibrated on held-out images (then ``calibration`` says how).
    """

    rule: str
    positive: str
    negative: str | None = None
    ignored: tuple[str, ...] = ()
    delta: float | None = None
    delta_source: str | None = None
    calibration: Calibration | None = None

    def to_obj(self) -> dict[str, Any]:
        d: dict[str, Any] = {"rule": self.rule, "positive": self.positive}
        if self.negative is not None:
            d["negative"] = self.negative
        if self.rule == "eq9":
            d["ignored"] = list(self.ignored)
        if self.delta is not None:
            d["delta"] = float(self.delta)
        if self.delta_source is not None:
            d["delta_source"] = self.delta_source
        if self.calibration is not None:
            d["calibration"] = self.calibration.to_obj()
        return d

    @classmethod
    def from_obj(cls, ctx: Ctx, obj: Mapping[str, Any], path: str = "decision") -> DecisionRule:
        rule = choice(ctx, obj, path, "rule", DECISION_RULES)
        positive = get(ctx, obj, path, "positive", str)
        if rule == "argmax":
            # delta and its sources belong to Eq. (9); a whole-image rule that names them is ambiguous
            for key in ("negative", "ignored", "delta", "delta_source", "calibration"):
                if key in obj:
                    raise ctx.fail(f"{path}.{key}", f"'{key}' is only for rule eq9", expected="absent with argmax",
                                   got="present")
            return cls(rule=rule, positive=positive)
        negative = get(ctx, obj, path, "negative", str)
        ignored_raw = get(ctx, obj, path, "ignored", list, required=False, default=[])
        for i, n in enumerate(ignored_raw):
            if not isinstance(n, str):
                raise ctx.fail(f"{path}.ignored.{i}", "class name must be a string", expected="str",
                               got=type_name(type(n)))
        # the classes must be distinct: the error points at the first name that repeats an earlier one
        seen = [positive]
        for where, name in [(f"{path}.negative", negative),
                            *((f"{path}.ignored.{i}", n) for i, n in enumerate(ignored_raw))]:
            if name in seen:
                raise ctx.fail(where, "positive, negative and ignored classes must be distinct",
                               expected=f"not one of {seen}", got=name)
            seen.append(name)
        delta = float_field(ctx, obj, path, "delta")
        if not 0.0 < delta <= 1.0:
            raise ctx.fail(f"{path}.delta", "delta must be in (0, 1]", expected="0 < delta <= 1", got=delta)
        source = choice(ctx, obj, path, "delta_source", DECISION_DELTA_SOURCES)
        calibration = None
        if source == "calibrated":
            calibration = Calibration.from_obj(ctx, get(ctx, obj, path, "calibration", dict), f"{path}.calibration")
        elif "calibration" in obj:
            raise ctx.fail(f"{path}.calibration", "calibration is only for delta_source 'calibrated'",
                           expected="absent with delta_source default", got="present")
        return cls(rule=rule, positive=positive, negative=negative, ignored=tuple(ignored_raw), delta=delta,
                   delta_source=source, calibration=calibration)

    def describe(self) -> str:
        """One line for people, e.g. ``eq9: P/(N+P) >= 0.3 (calibrated: max_hm on 40 held-out images, HM 0.71)``."""
        if self.rule == "argmax":
            return f"argmax: positive when the top class is {self.positive}"
        text = f"eq9: {self.positive}/({self.negative}+{self.positive}) >= {self.delta:g}"
        if self.ignored:
            text += f", {'/'.join(self.ignored)} ignored"
        c = self.calibration
        if c is None:
            return f"{text} ({self.delta_source})"
        return (f"{text} (calibrated: {c.target} on {c.images} held-out images, HM {c.hm:.3f}"
                + (f", iteration {c.iteration}" if c.iteration is not None else "") + ")")

    def class_names(self) -> tuple[str, ...]:
        """Every class name the rule refers to (checked against ``labels.names`` when the file has them)."""
        return tuple(n for n in (self.positive, self.negative, *self.ignored) if n is not None)
