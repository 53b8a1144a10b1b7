#!/usr/bin/env python3
"""Seed-aware verdicts for the committed study tables (issue 19), from what the tables kept.

The committed folders hold no cells (no per-image decisions), so `sldp study --report-only` cannot rebuild
them. Every comparison kept its mean ΔHM, its image-level 95 % CI and the per-seed differences, which is
what `sldpack.pipelines.stats.seed_aware_from_summary` needs (the image variance recovered from the CI's
width). Run from the repository root:
`python examples/study/seed_aware_verdicts.py > examples/study/seed_aware_verdicts.md`.
"""

from __future__ import annotations

import json
from pathlib import Path

from sldpack.pipelines.stats import seed_aware_from_summary

ROOT = Path(__file__).resolve().parent


def main() -> None:
    print("# Seed-aware verdicts of the committed studies\n")
    print("Made by `seed_aware_verdicts.py` from each `results.json` (see its docstring). Image-level CI: as "
          "committed (test images resampled, seeds fixed). Seed-aware CI: image variance plus the per-seed "
          "spread over the number of seeds, Student t with Welch–Satterthwaite degrees of freedom "
          "(`sldpack/pipelines/stats.py`). **changed** marks a verdict the seed-aware interval does not "
          "support.\n")
    print("| study | A | B | ΔHM | image-level CI | seed-aware CI | verdict then | verdict now |")
    print("|---|---|---|---|---|---|---|---|")
    changed = total = 0
    for path in sorted(ROOT.glob("**/results.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        study = str(path.parent.relative_to(ROOT))
        for c in doc.get("comparisons", []):
            ci = c.get("ci95_image") or c["ci95"]
            per = [v for v in c["per_seed_diff"] if v is not None]
            if c["hm_diff"] is None or ci[0] is None:
                continue
            iv = seed_aware_from_summary(float(c["hm_diff"]), (float(ci[0]), float(ci[1])), per)
            now = iv.verdict(c["a"], c["b"])
            total += 1
            flag = now != c["verdict"]
            changed += flag
            sci = "–" if iv.seed_ci is None else f"[{iv.seed_ci[0]:+.3f}, {iv.seed_ci[1]:+.3f}]"
            print(f"| {study} | {c['a']} | {c['b']} | {c['hm_diff']:+.3f} | [{ci[0]:+.3f}, {ci[1]:+.3f}] | {sci} | "
                  f"{c['verdict']} | {'**changed:** ' if flag else ''}{now} |")
    print(f"\n{changed} of {total} verdicts change.")


if __name__ == "__main__":
    main()
