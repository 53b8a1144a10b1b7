"""The seed paper's Table 4 as recorded for ``sldp report --zoo``: all six networks, values as printed."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("torch")

from sldpack.pipelines.sharing import PAPER_TABLE4, TABLE4_SETTING, PaperFigures

# Seed paper, Table 4 "Memory footprints of different models" (../shared/seed/000_28e11806ea4b4438.txt,
# lines 664-700), transcribed by hand a second time for this test: Memory (MB), Memory* (KB), rate.
_PRINTED = {
    "googlenet@1": (22.83, 289.14, 0.01266),
    "resnet18@1": (42.64, 250.23, 0.00587),
    "resnet34@1": (81.20, 287.99, 0.00354),
    "alexnet@1": (217.44, 201.29, 0.00093),
    "vgg16@1": (512.21, 402.01, 0.00078),
    "vgg19@1": (532.46, 402.01, 0.00076),
}


def test_table4_has_all_six_networks_as_printed() -> None:
    assert set(PAPER_TABLE4) == set(_PRINTED)
    for arch_id, (mem, star, rate) in _PRINTED.items():
        assert PAPER_TABLE4[arch_id] == PaperFigures(mem, star, rate), arch_id


def test_every_report_row_has_paper_figures() -> None:
    # sldp report --zoo shows n/a only for networks without a row; the default setting must have none
    assert [a for a, _, _ in TABLE4_SETTING if a not in PAPER_TABLE4] == []


@pytest.mark.parametrize("arch_id", sorted(_PRINTED))
def test_paper_rates_agree_with_its_memory_columns(arch_id: str) -> None:
    # an independent check of the transcription: the paper's rate is Memory* / (1000 x Memory), printed
    # to 5 decimals (rounded or truncated), so a mistyped digit in any column shows up here
    p = PAPER_TABLE4[arch_id]
    implied = p.memory_star_kib / (1000.0 * p.memory_mib)
    assert math.floor(implied * 1e5) / 1e5 <= p.rate + 1e-12
    assert p.rate <= round(implied, 5) + 1e-12
