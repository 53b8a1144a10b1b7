"""The model card: KEY=VALUE edits through the atomic re-pack, the rendered Markdown's YAML, inspect's summary."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import sldpack
from sldpack.cli.main import main
from sldpack.errors import UsageError
from sldpack.pipelines.card import apply_edits, render_card, set_card

yaml = pytest.importorskip("yaml")


def _file(path: Path, **kw: object) -> Path:
    m = sldpack.Manifest(arch=sldpack.ArchSpec("convnet@1", 1, 3, (8, 8), options={"depth": 1, "width": 4}),
                         init=sldpack.InitSpec(seed=5), provenance=sldpack.Provenance("test", "2026-11-27T00:00:00Z"),
                         labels=sldpack.LabelSpec(("I", "N", "P")),
                         preprocessing=sldpack.Preprocessing((0.5,), (0.25,), (8, 8), 1,
                                                             {"task": "inp_patches", "patch_size": 16,
                                                              "patch_stride": 8, "patch_out_size": 8}),
                         **kw)  # type: ignore[arg-type]
    t = {"images": sldpack.Tensor("images", np.zeros((1, 1, 8, 8), np.float32)),
         "labels": sldpack.Tensor("labels", np.zeros((1, 3), np.float32)),
         "lrs": sldpack.Tensor("lrs", np.array([0.1], np.float32))}
    sldpack.write(path, m, t)
    return path


def _code(argv: list[str]) -> int:
    """``main(argv)``'s exit code (a command that returns normally exits 0)."""
    try:
        main(argv)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


EDITS = ["name=Fold detector", "intended_use=Research only: not for diagnosis", "license=CC-BY-4.0",
         "data_license=CC0-1.0", "modality=chest X-ray", "label_meanings.P=pathological folds",
         "input_range=0,255", "input_size=[64, 64]", "dataset.name=phantom", "dataset.version=1",
         'evaluation+={"metric": "hm", "value": 0.8, "ci95": [0.6, 0.9], "n": 24, "split": "test 30 %"}',
         'evaluation+={"metric": "auc", "value": 0.91, "n": 24, "split": "test 30 %"}', "contact=ai@example.org"]


def test_card_set_round_trips_through_pack_inspect_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = _file(tmp_path / "m.sldp")
    payload_before = sldpack.read(f.read_bytes()).header.payload_length
    edit = set_card(f, EDITS)
    assert edit.version == (1, 1) and edit.signature is None
    with sldpack.open(f) as g:
        g.verify()
        card = g.manifest.card
        assert g.header.payload_length == payload_before
    assert card is not None and card.label_meanings == {"P": "pathological folds"}
    assert card.input_range == (0.0, 255.0) and card.input_size == (64, 64)
    assert [e.metric for e in card.evaluation] == ["hm", "auc"] and card.evaluation[0].ci95 == (0.6, 0.9)
    # inspect shows a summary, verify passes, --json has the card
    assert _code(["inspect", str(f)]) == 0
    out = capsys.readouterr().out
    assert "model card" in out and "Fold detector" in out and "hm 0.800 [0.60, 0.90] (n 24)" in out
    assert _code(["verify", str(f)]) == 0
    capsys.readouterr()
    # KEY= removes a field
    set_card(f, ["contact="])
    assert sldpack.read(f.read_bytes()).manifest.card.contact is None  # type: ignore[union-attr]


def test_rendered_card_has_hugging_face_yaml(tmp_path: Path) -> None:
    f = _file(tmp_path / "m.sldp")
    set_card(f, EDITS)
    with sldpack.open(f) as g:
        text = render_card(g.manifest, file_name="m.sldp", file_sha256="ab" * 32)
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    meta = yaml.safe_load(front)
    assert meta["license"] == "cc-by-4.0"
    assert meta["datasets"] == ["phantom"]
    assert meta["library_name"] == "sldpack"
    results = meta["model-index"][0]["results"]
    assert [r["metrics"][0]["type"] for r in results] == ["hm", "auc"]
    assert results[0]["metrics"][0]["value"] == 0.8 and "95% CI [0.600, 0.900]" in results[0]["metrics"][0]["name"]
    assert meta["model-index"][0]["name"] == "Fold detector"
    assert "# Fold detector" in body
    assert "`P`: pathological folds (positive)" in body
    assert "eq9: P/(N+P) >= 0.4" in body  # no decision key: the default rule, said to be the default
    assert "| hm | 0.800 | [0.600, 0.900] | 24 | test 30 % | phantom |" in body
    assert "16 px windows, stride 8" in body


def test_a_decision_in_the_file_is_what_the_card_shows(tmp_path: Path) -> None:
    rule = sldpack.DecisionRule(rule="eq9", positive="P", negative="N", ignored=("I",), delta=0.3,
                                delta_source="default")
    f = _file(tmp_path / "m.sldp", decision=rule, card=sldpack.ModelCard(name="x"))
    text = render_card(sldpack.read(f.read_bytes()).manifest, file_name="m.sldp")
    assert "Decision rule: eq9: P/(N+P) >= 0.3, I ignored (default)." in text
    assert yaml.safe_load(text[4:].split("\n---\n", 1)[0])["tags"][0] == "medical-imaging"


@pytest.mark.parametrize(("item", "message"), [
    ("input_range=255,0", "card.input_range"),
    ("input_size=abc", "not a JSON value"),
    ('evaluation+={"metric": "hm", "value": "high", "n": 3, "split": "s"}', "card.evaluation.0.value"),
    ('evaluation={"metric": "hm"}', "card.evaluation"),
    ("dataset.version=2", "card.dataset.name"),
    ("colour=red", "unknown field 'colour'"),
    ("intended_use", "expected KEY=VALUE"),
])
def test_wrong_values_are_refused_naming_the_field(item: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace("[", r"\[")):
        apply_edits(None, [item])


def test_card_set_refuses_and_keeps_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = _file(tmp_path / "m.sldp")
    before = hashlib.sha256(f.read_bytes()).hexdigest()
    for argv in (["card", "set", str(f), "input_range=[1]"], ["card", "set", str(f), "label_meanings.Q=unknown"]):
        assert _code(argv) == 2
    err = capsys.readouterr().err
    assert "card.input_range" in err and "card.label_meanings.Q" in err
    assert hashlib.sha256(f.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.sldp"]  # no temporary left


def test_card_set_on_a_signed_file_says_the_signature_breaks(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("model_signing")
    f = _file(tmp_path / "m.sldp")
    for argv in (["keygen", str(tmp_path / "k.key")], ["sign", str(f), "--key", str(tmp_path / "k.key")],
                 ["card", "set", str(f), "license=MIT"]):
        assert _code(argv) == 0
    assert "m.sldp.sig no longer verifies" in capsys.readouterr().err
    assert _code(["verify", str(f), "--key", str(tmp_path / "k.pub")]) == 1


def test_card_cli_renders_and_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = _file(tmp_path / "m.sldp")
    set_card(f, EDITS)
    assert _code(["card", str(f), "--out", str(tmp_path / "README.md")]) == 0
    assert (tmp_path / "README.md").read_text().startswith("---\n")
    capsys.readouterr()
    assert _code(["card", str(f), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["license"] == "CC-BY-4.0"
    assert _code(["card", str(f), "--out", str(f)]) == 2
