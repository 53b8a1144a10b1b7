#!/usr/bin/env python3
"""The PneumoniaMNIST membership audit on one CPU core (not a test): is it under 10 minutes?

Times ``sldpack.pipelines.membership_audit.membership_audit`` -- what ``sldp audit FILE --data
pneumoniamnist_28.npz --membership --references 4`` runs -- on one torch thread, stage by stage from
its progress lines (elapsed seconds before each): replay, digests and sets, the 4 reference networks
(500 steps each, the `sldp train` defaults), scoring, the comparison network trained here (500 steps),
and the bootstrap CIs. It prints the total, and the ratio total / 600 s (the issue's budget; < 1 passes).

Usage: python benchmarks/bench_membership.py FILE.sldp [--data ../shared/data/pneumoniamnist_28.npz]
                                             [--references 4] [--threads 1] [--no-compare]
``FILE`` is a PneumoniaMNIST distillation (e.g. ``sldp distill --data pneumoniamnist_28.npz --out RUN``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; prints one JSON line at the end."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/"
                                          "pneumoniamnist_28.npz"))
    ap.add_argument("--references", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-compare", action="store_true")
    args = ap.parse_args(argv)
    if not Path(args.data).is_file():
        print(f"no data at {args.data}; pass --data", file=sys.stderr)
        return 2

    from sldpack.pipelines.inputs import DataSpec
    from sldpack.pipelines.membership import MembershipConfig
    from sldpack.pipelines.membership_audit import membership_audit, read_member_sets

    t0 = time.perf_counter()

    def progress(line: str) -> None:
        print(f"[{time.perf_counter() - t0:7.1f} s] {line}", flush=True)

    members, nonmembers = read_member_sets(DataSpec(data=args.data), "train")
    progress(f"read {len(members)} members, {len(nonmembers)} non-members")
    rep = membership_audit(args.file, members, nonmembers, config=MembershipConfig(references=args.references),
                           compare=None if args.no_compare else "train", device="cpu", threads=args.threads,
                           progress=progress)
    total = time.perf_counter() - t0
    print("\n".join(rep.lines()))
    print(f"total {total:.1f} s on {args.threads} thread(s), {args.references} reference network(s); "
          f"ratio to the 600 s budget: {total / 600:.3f} ({'within' if total < 600 else 'OVER'} budget)")
    print(json.dumps({"total_s": round(total, 1), "threads": args.threads, "references": args.references,
                      "compare": not args.no_compare, "ratio_to_600s": round(total / 600, 3),
                      "verdict": rep.verdict}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
