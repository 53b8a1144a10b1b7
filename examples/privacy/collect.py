#!/usr/bin/env python3
"""Tables of the privacy study (issue 21) from the audit reports in examples/privacy/results/.

Reads ``{sldd,dd}-{seed}.json`` (``sldp audit --membership --json``; the SLDD reports also hold the normally
trained network's attacks) and writes ``examples/privacy/table.md``: per network, attack and seed the AUC
and the TPR at FPR 1 % with their bootstrap 95 % CIs, the mean over seeds, and per seed whether the
distilled file's AUC CI lies below the trained network's (it "leaks less" only when it does).

Usage: python examples/privacy/collect.py
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent
NETS = (("sldd", "distilled", "SLDD file"), ("dd", "distilled", "DD file"), ("sldd", "trained", "normal ConvNet"))


def _load() -> dict[tuple[str, int], dict[str, object]]:
    out = {}
    for p in sorted((HERE / "results").glob("*.json")):
        mode, seed = p.stem.rsplit("-", 1)
        out[(mode, int(seed))] = json.loads(p.read_text())
    return out


def _fmt(v: dict[str, float]) -> str:
    return f"{v['value']:.3f} [{v['low']:.3f}, {v['high']:.3f}]"


def main() -> int:
    """Write table.md; print it."""
    reports = _load()
    seeds = sorted({s for _, s in reports})
    lines = ["# Membership inference on PneumoniaMNIST: distilled files vs the normally trained ConvNet", "",
             "Made by `examples/privacy/run.sh`, tabulated by `examples/privacy/collect.py`. Members: training "
             "images; non-members: test images (equal counts, same class mix); 95 % CIs from 1000 bootstrap "
             "resamples. TPR@1% FPR with n non-members allows floor(0.01 n) false positives.", ""]
    attacks = ("loss", "lira-offline")
    rows: dict[tuple[str, str], list[float]] = {}
    lines += ["| network | attack | seed | n (members = non-members) | AUC [95 % CI] | TPR@1% FPR [95 % CI] | "
              "membership verdict | image-similarity verdict |", "|---|---|---|---|---|---|---|---|"]
    for mode, target, name in NETS:
        for att in attacks:
            for s in seeds:
                rep = reports.get((mode, s))
                if rep is None:
                    continue
                mem = rep["membership"]  # type: ignore[index]
                for a in mem["attacks"]:  # type: ignore[index]
                    if a["attack"] == att and a["target"] == target:
                        verdict = mem["verdict"] if target == "distilled" else "(comparison)"  # type: ignore[index]
                        sim = rep["image_similarity_verdict"] if target == "distilled" else "-"
                        lines.append(f"| {name} | {att} | {s} | {a['n_members']} | {_fmt(a['auc'])} | "
                                     f"{_fmt(a['tpr_at_fpr']['0.01'])} | {verdict} | {sim} |")
                        rows.setdefault((name, att), []).append(a["auc"]["value"])
    lines += ["", "Mean AUC over the seeds that finished (± sample std when more than one):", "",
              "| network | attack | seeds | mean AUC |", "|---|---|---|---|"]
    for (name, att), v in rows.items():
        sd = f" ± {statistics.stdev(v):.3f}" if len(v) > 1 else ""
        lines.append(f"| {name} | {att} | {len(v)} | {statistics.fmean(v):.3f}{sd} |")
    lines += ["", "Per seed: does the distilled file's AUC CI lie entirely below the normal ConvNet's (same "
              "attack, same members, non-members and reference networks)?", "",
              "| seed | attack | SLDD AUC | normal AUC | SLDD CI below normal CI? |", "|---|---|---|---|---|"]
    for s in seeds:
        rep = reports.get(("sldd", s))
        if rep is None:
            continue
        by = {(a["attack"], a["target"]): a["auc"] for a in rep["membership"]["attacks"]}  # type: ignore[index]
        for att in attacks:
            d, t = by.get((att, "distilled")), by.get((att, "trained"))
            if d and t:
                below = "yes" if d["high"] < t["low"] else "no (the CIs overlap)"
                lines.append(f"| {s} | {att} | {_fmt(d)} | {_fmt(t)} | {below} |")
    text = "\n".join(lines) + "\n"
    (HERE / "table.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
