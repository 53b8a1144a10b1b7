"""The model card (root key ``card``, SLDP 1.1, spec 5.11): typed, with schema checks.

What a clinician, a reviewer or a model registry needs to use a file's network safely, in the fields Hugging
Face model cards and MONAI bundle metadata carry. The decision rule is not repeated here: it is ``decision``
(:mod:`sldpack.format.decision`). Rendering and editing: ``sldpack.pipelines.card``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sldpack.format.fields import Ctx, float_field, floats, get, int_field, ints, map_field, type_name

__all__ = ["CARD_TEXT_FIELDS", "CardDataset", "CardEvaluation", "ModelCard"]


@dataclass(frozen=True)
class CardDataset:
    """The training data set a model card names (``card.dataset``, spec 5.11)."""

    name: str
    version: str | None = None
    citation: str | None = None
    url: str | None = None

    def to_obj(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name}
        for key in ("version", "citation", "url"):
            v = getattr(self, key)
            if v is not None:
                d[key] = v
        return d

    @classmethod
    def from_obj(cls, ctx: Ctx, obj: Mapping[str, Any], path: str = "card.dataset") -> CardDataset:
        return cls(name=get(ctx, obj, path, "name", str), version=get(ctx, obj, path, "version", str, required=False),
                   citation=get(ctx, obj, path, "citation", str, required=False),
                   url=get(ctx, obj, path, "url", str, required=False))


@dataclass(frozen=True)
class CardEvaluation:
    """One result the sender measured (``card.evaluation[i]``, spec 5.11).

    ``metric`` names it (``hm``, ``auc``, ``sensitivity``, ``specificity``, ``accuracy`` or another name),
    ``value`` and the optional ``ci95`` (``[low, high]``, ``low <= value <= high``) are its number and 95 %
    interval, ``n`` the test images, ``split`` the rule that chose them, ``dataset`` the test set's name.
    """

    metric: str
    value: float
    n: int
    split: str
    ci95: tuple[float, float] | None = None
    dataset: str | None = None

    def to_obj(self) -> dict[str, Any]:
        d: dict[str, Any] = {"metric": self.metric, "value": float(self.value), "n": self.n, "split": self.split}
        if self.ci95 is not None:
            d["ci95"] = [float(self.ci95[0]), float(self.ci95[1])]
        if self.dataset is not None:
            d["dataset"] = self.dataset
        return d

    @classmethod
    def from_obj(cls, ctx: Ctx, obj: Mapping[str, Any], path: str) -> CardEvaluation:
        value = float_field(ctx, obj, path, "value")
        ci = None
        if "ci95" in obj:
            lo_hi = floats(ctx, obj, path, "ci95")
            if len(lo_hi) != 2 or not lo_hi[0] <= value <= lo_hi[1]:
                raise ctx.fail(f"{path}.ci95", "ci95 must be [low, high] with low <= value <= high",
                               expected=f"[low <= {value}, high >= {value}]", got=list(lo_hi))
            ci = (lo_hi[0], lo_hi[1])
        return cls(metric=get(ctx, obj, path, "metric", str), value=value, n=int_field(ctx, obj, path, "n", lo=1),
                   split=get(ctx, obj, path, "split", str), ci95=ci,
                   dataset=get(ctx, obj, path, "dataset", str, required=False))


CARD_TEXT_FIELDS = ("name", "summary", "intended_use", "limitations", "modality", "license", "data_license",
                    "contact")
"""The free-text fields of a model card (``str``), in the order a card shows them."""


@dataclass(frozen=True)
class ModelCard:
    """What a person needs to use the file's network safely (root key ``card``, since 1.1, spec 5.11).

    Every field is optional. The decision rule (positive class, Eq. 9's delta) is not repeated here: it is
    the root key ``decision`` (spec 5.10), or the default rule when the file has none.
    """

    name: str | None = None
    summary: str | None = None
    intended_use: str | None = None
    limitations: str | None = None
    modality: str | None = None
    license: str | None = None
    data_license: str | None = None
    contact: str | None = None
    label_meanings: Mapping[str, str] = field(default_factory=dict)
    input_range: tuple[float, float] | None = None
    input_size: tuple[int, int] | None = None
    dataset: CardDataset | None = None
    evaluation: tuple[CardEvaluation, ...] = ()

    def to_obj(self) -> dict[str, Any]:
        d: dict[str, Any] = {k: getattr(self, k) for k in CARD_TEXT_FIELDS if getattr(self, k) is not None}
        if self.label_meanings:
            d["label_meanings"] = dict(self.label_meanings)
        if self.input_range is not None:
            d["input_range"] = [float(v) for v in self.input_range]
        if self.input_size is not None:
            d["input_size"] = list(self.input_size)
        if self.dataset is not None:
            d["dataset"] = self.dataset.to_obj()
        if self.evaluation:
            d["evaluation"] = [e.to_obj() for e in self.evaluation]
        return d

    @classmethod
    def from_obj(cls, ctx: Ctx, obj: Mapping[str, Any], path: str = "card") -> ModelCard:
        text = {k: get(ctx, obj, path, k, str, required=False) for k in CARD_TEXT_FIELDS}
        meanings = map_field(ctx, obj, path, "label_meanings")
        for k, v in meanings.items():
            if not isinstance(v, str):
                raise ctx.fail(f"{path}.label_meanings.{k}", "field has the wrong type", expected="str",
                               got=type_name(type(v)))
        rng = None
        if "input_range" in obj:
            r = floats(ctx, obj, path, "input_range")
            if len(r) != 2 or not r[0] < r[1]:
                raise ctx.fail(f"{path}.input_range", "input_range must be [low, high] with low < high",
                               expected="[low, high], low < high", got=list(r))
            rng = (r[0], r[1])
        size = None
        if "input_size" in obj:
            sz = ints(ctx, obj["input_size"], f"{path}.input_size", lo=1, hi=1 << 16)
            if len(sz) != 2:
                raise ctx.fail(f"{path}.input_size", "input_size must be [height, width]", expected=2, got=len(sz))
            size = (sz[0], sz[1])
        ds = None
        if "dataset" in obj:
            ds = CardDataset.from_obj(ctx, get(ctx, obj, path, "dataset", dict), f"{path}.dataset")
        evals = []
        for i, e in enumerate(get(ctx, obj, path, "evaluation", list, required=False, default=[])):
            if not isinstance(e, dict):
                raise ctx.fail(f"{path}.evaluation.{i}", "field has the wrong type", expected="map",
                               got=type_name(type(e)))
            evals.append(CardEvaluation.from_obj(ctx, e, f"{path}.evaluation.{i}"))
        return cls(**text, label_meanings=meanings, input_range=rng, input_size=size, dataset=ds,
                   evaluation=tuple(evals))

    @classmethod
    def parse(cls, obj: Any) -> ModelCard:
        """A card from a plain map (an edit, not a file): the reader's checks, errors naming ``card.<field>``.

        Raises:
            FormatError: ``E_SCHEMA`` naming the field (no byte offset: the value is not in a file yet).
        """
        ctx = Ctx({}, 0)
        if not isinstance(obj, dict):
            raise ctx.fail("card", "the card must be a map", expected="map", got=type_name(type(obj)))
        return cls.from_obj(ctx, obj)
