"""Montgomery County chest X-rays (tuberculosis): SLDD(3), SLDD(1), DD(3) and normally trained baselines,
evaluated per image by Eq. (9) as Sen/Spe/HM (the seed paper's Table 1 layout).

Data: ``../shared/data/montgomery_512.npz`` (138 images 512x512, lung masks, 80 normal / 58 TB; one image per
patient). Split: train/test 70/30 by image (= by patient), stratified by label, seed 0
(``sldpack.medical.split_indices``): 97 train / 41 test (24 normal, 17 TB). Patches: 64 px windows, stride 32
(15 x 15 per image), area-shrunk to 32 px network inputs; I < 1 % lung, N/P > 85 % lung.

Every piece is one ``sldp`` command line (printed before it runs, recorded in ``results.jsonl`` with its wall
time), so the table can be reproduced by hand. Run all pieces, or some, from the repository root::

    python examples/montgomery/run.py                       # everything (13 min measured, 1 thread, shared 2-core CPU)
    python examples/montgomery/run.py sldd3 full            # only these pieces
    python examples/montgomery/run.py --table               # print the Markdown table of what has run

Pieces run one after the other with ``--threads 1`` (the machine is shared); runs go to ``--work``
(default ``runs/montgomery``, not committed).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = "../shared/data/montgomery_512.npz"  # relative to the repository root (commands run there)

ARCH = ["--arch", "convnet@1", "--arch-option", "depth=3", "--arch-option", "width=32"]
PATCHES = ["--patch-size", "64", "--stride", "32", "--out-size", "32"]
DISTILL = ["--steps", "10", "--epochs", "3", "--iterations", "200", "-K", "48", "--lr", "0.05", "--inner-lr",
           "0.05", "--seed", "0", "--device", "cpu", "--threads", "1", "--checkpoint-every", "25"]
TRAIN = [*PATCHES, "--steps", "1000", "--batch-size", "64", "--lr", "0.001", "--seed", "0", "--threads", "1"]

# piece -> (label in the table, how it is made)
PIECES: dict[str, tuple[str, str]] = {
    "sldd3": ("SLDD(3)", "distill"),
    "sldd1": ("SLDD(1)", "distill"),
    "dd3": ("DD(3)", "distill"),
    "full": ("ConvNet (all patches)", "train"),
    "pc500": ("ConvNet (500 per class)", "train"),
    "pc100": ("ConvNet (100 per class)", "train"),
}


def commands(piece: str, data: Path, work: Path) -> list[list[str]]:
    """The sldp command lines of one piece (the last one prints the evaluation JSON)."""
    out = work / piece
    evaluation = ["--data", str(data), "--split", "test", "--json", "--per-image", str(out / "per_image.csv"),
                  "--threads", "1", "-q"]
    if PIECES[piece][1] == "distill":
        m = "1" if piece == "sldd1" else "3"
        mode = "dd" if piece.startswith("dd") else "sldd"
        resume = ["--resume"] if (REPO / out / "checkpoint.pt").is_file() else []
        return [["sldp", "distill", "--data", str(data), *PATCHES, "--split", "train", *ARCH, "--mode", mode,
                 "-M", m, *DISTILL, "--out", str(out), *resume],
                ["sldp", "eval", str(out / "distilled.sldp"), *evaluation]]
    per_class = {"pc500": ["--per-class", "500"], "pc100": ["--per-class", "100"]}.get(piece, [])
    return [["sldp", "train", "--data", str(data), "--split", "train", *ARCH, *TRAIN, *per_class,
             "--save", str(out / "model.safetensors"), "--eval-split", "test", "--json", "--per-image",
             str(out / "per_image.csv"), "-q"]]


def run_piece(piece: str, data: Path, work: Path, results: Path) -> None:
    """Run one piece's commands, time them, and append a JSON line with the evaluation to ``results``."""
    (REPO / work / piece).mkdir(parents=True, exist_ok=True)
    cmds = commands(piece, data, work)
    t0 = time.perf_counter()
    stdout = ""
    for cmd in cmds:
        print("$ " + shlex.join(cmd), flush=True)
        # the same command through this interpreter, so an uninstalled checkout works too
        argv = [sys.executable, "-m", "sldpack.cli.main", *cmd[1:]]
        proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
        sys.stderr.write(proc.stderr[-4000:])
        if proc.returncode != 0:
            raise SystemExit(f"{piece}: command failed with exit code {proc.returncode}")
        stdout = proc.stdout
    doc = json.loads(stdout)
    ev = doc.get("eval", doc)
    row = {"piece": piece, "label": PIECES[piece][0], "seconds": round(time.perf_counter() - t0, 1),
           "commands": [shlex.join(c) for c in cmds], "image": ev["image"], "patch": ev["patch"],
           "n_images": ev["n_images"], "n_inputs": ev["n_inputs"]}
    if PIECES[piece][1] == "distill":
        sldp = REPO / work / piece / "distilled.sldp"
        row["file_bytes"] = sldp.stat().st_size
    else:
        # the full checkpoint as `sldp report` counts it (fp32 tensors), not the .safetensors file size
        row["file_bytes"] = doc.get("checkpoint_bytes", doc.get("saved_bytes"))
        row["train_inputs"] = doc.get("train_inputs")
    with results.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")
    im = row["image"]
    print(f"{piece}: Sen {im['sensitivity']:.3f} Spe {im['specificity']:.3f} HM {im['hm']:.3f} "
          f"({row['seconds']}s)", flush=True)


def table(results: Path) -> str:
    """Markdown table of the last result of every piece."""
    rows: dict[str, dict[str, object]] = {}
    if results.is_file():
        for line in results.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            rows[r["piece"]] = r
    out = ["| method | Sen | Spe | HM | AUC | patch acc | bytes | wall time |", "|---|---|---|---|---|---|---|---|"]
    for piece in PIECES:
        if piece not in rows:
            continue
        r = rows[piece]
        im, pm = r["image"], r["patch"]
        assert isinstance(im, dict) and isinstance(pm, dict)

        def f(v: object) -> str:
            return "n/a" if v is None else f"{float(v):.3f}"  # type: ignore[arg-type]

        out.append(f"| {r['label']} | {f(im['sensitivity'])} | {f(im['specificity'])} | {f(im['hm'])} | "
                   f"{f(im['auc'])} | {f(pm['accuracy'])} | {r['file_bytes']} | {r['seconds']} s |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pieces", nargs="*", help=f"pieces to run: {', '.join(PIECES)} (default: all)")
    ap.add_argument("--data", default=DATA, help="montgomery_512.npz (relative to the repository root)")
    ap.add_argument("--work", default="runs/montgomery",
                    help="run directories and results.jsonl (relative to the repository root)")
    ap.add_argument("--table", action="store_true", help="print the Markdown table of the results and exit")
    args = ap.parse_args()
    work = Path(args.work)
    results = REPO / work / "results.jsonl"
    if args.table:
        print(table(results))
        return
    data = Path(args.data)
    if not (REPO / data).is_file():
        raise SystemExit(f"montgomery example: the data file {data} is missing. It is the shared Montgomery set "
                         "(../shared/data/montgomery_512.npz beside the repository); pass --data PATH.")
    unknown = [p for p in args.pieces if p not in PIECES]
    if unknown:
        raise SystemExit(f"unknown piece(s) {', '.join(unknown)}; choose from {', '.join(PIECES)}")
    (REPO / work).mkdir(parents=True, exist_ok=True)
    for piece in args.pieces or list(PIECES):
        run_piece(piece, data, work, results)
    print(table(results))


if __name__ == "__main__":
    main()
