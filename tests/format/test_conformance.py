"""The conformance corpus: every case passes with this reader, and the generator reproduces it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from sldpack.format.conformance import run_case, run_corpus

CORPUS = Path(__file__).resolve().parents[2] / "spec" / "conformance"
INDEX = json.loads((CORPUS / "index.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", INDEX["cases"], ids=[c["file"] for c in INDEX["cases"]])
def test_case(case: dict[str, Any]) -> None:
    result = run_case(CORPUS, case)
    assert result.passed, f"{case['file']}: expected {result.expected}, got {result.got}"


def test_corpus_size_and_distinct_defects() -> None:
    invalid = [c for c in INDEX["cases"] if c["expect"] == "invalid"]
    assert len(invalid) >= 30
    assert len({c["description"] for c in invalid}) == len(invalid)
    assert len({c["code"] for c in invalid}) >= 20


def test_generator_reproduces_committed_corpus(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_corpus", CORPUS / "make_corpus.py")
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.write_corpus(tmp_path)
    for case in INDEX["cases"]:
        assert (tmp_path / case["file"]).read_bytes() == (CORPUS / case["file"]).read_bytes(), case["file"]
    assert json.loads((tmp_path / "index.json").read_text(encoding="utf-8")) == INDEX
    assert all(r.passed for r in run_corpus(tmp_path))
