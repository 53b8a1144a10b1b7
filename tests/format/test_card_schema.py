"""The model card (root key ``card``, spec 5.11): typed round trip, version 1.1, field-named schema errors."""

from __future__ import annotations

import numpy as np
import pytest

import sldpack
from sldpack.format.card import ModelCard


def _manifest(**kw: object) -> sldpack.Manifest:
    return sldpack.Manifest(arch=sldpack.ArchSpec("convnet@1", 1, 3, (8, 8)), init=sldpack.InitSpec(seed=5),
                            provenance=sldpack.Provenance("test", "2026-11-27T00:00:00Z"), **kw)  # type: ignore[arg-type]


def _tensors() -> dict[str, sldpack.Tensor]:
    x = np.zeros((1, 1, 8, 8), np.float32)
    return {"images": sldpack.Tensor("images", x), "labels": sldpack.Tensor("labels", np.zeros((1, 3), np.float32)),
            "lrs": sldpack.Tensor("lrs", np.array([0.1], np.float32))}

CARD = sldpack.ModelCard(
    name="Patch detector", summary="Finds I/N/P patches.", intended_use="research", limitations="phantoms only",
    modality="chest X-ray", license="CC-BY-4.0", data_license="CC0-1.0", contact="ai@example.org",
    label_meanings={"P": "pathological fold pattern"}, input_range=(0.0, 255.0), input_size=(64, 64),
    dataset=sldpack.CardDataset(name="phantom", version="1", citation="built in", url=None),
    evaluation=(sldpack.CardEvaluation(metric="hm", value=0.8, n=24, split="test 30 %", ci95=(0.6, 0.9)),))


def test_card_round_trips_and_makes_the_file_1_1() -> None:
    data = sldpack.encode(_manifest(labels=sldpack.LabelSpec(("I", "N", "P")), card=CARD), _tensors())
    with sldpack.read(data) as f:
        assert (f.header.version_major, f.header.version_minor) == (1, 1)
        assert f.manifest.card == CARD
        f.verify()
    plain = sldpack.encode(_manifest(), _tensors())
    assert sldpack.read(plain).header.version_minor == 0


@pytest.mark.parametrize(("obj", "field"), [
    ({"intended_use": 3}, "card.intended_use"),
    ({"input_range": [1.0, 1.0]}, "card.input_range"),
    ({"input_size": [0, 28]}, "card.input_size.0"),
    ({"label_meanings": {"P": ["x"]}}, "card.label_meanings.P"),
    ({"dataset": {}}, "card.dataset.name"),
    ({"evaluation": [{"metric": "hm", "value": 0.8, "n": 3, "split": "s", "ci95": [0.1]}]}, "card.evaluation.0.ci95"),
    ({"evaluation": [{"metric": "hm", "value": "0.8", "n": 3, "split": "s"}]}, "card.evaluation.0.value"),
    ({"evaluation": ["hm"]}, "card.evaluation.0"),
])
def test_wrong_card_values_are_refused_with_the_field_name(obj: dict[str, object], field: str) -> None:
    with pytest.raises(sldpack.FormatError) as e:
        ModelCard.parse(obj)
    assert e.value.code == "E_SCHEMA"
    assert e.value.field == field


def test_card_explaining_an_unknown_class_is_refused() -> None:
    card = sldpack.ModelCard(label_meanings={"Q": "no such class"})
    with pytest.raises(sldpack.FormatError) as e:
        sldpack.read(sldpack.encode(_manifest(labels=sldpack.LabelSpec(("I", "N", "P")), card=card), _tensors()))
    assert e.value.code == "E_SCHEMA" and e.value.field == "card.label_meanings.Q"
