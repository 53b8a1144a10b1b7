"""PneumoniaMNIST (28 px) with the ConvNet: SLDD and DD with 2 distilled images vs normal training.

Run from the repository root, one job at a time (each prints one JSON line and appends it to --results):

    python examples/pneumonia/pneumonia.py sldd --out runs/pneu-sldd
    python examples/pneumonia/pneumonia.py dd   --out runs/pneu-dd
    python examples/pneumonia/pneumonia.py full --out runs/pneu-full
    python examples/pneumonia/pneumonia.py eval --file runs/pneu-sldd/distilled.sldp   # any .sldp

``sldd``/``dd`` distil the training split into 2 images (1 per class) with ``sldpack.nn.distill``, then
evaluate the network *replayed from the written .sldp file* (not the distiller's in-memory copy) on the
test split. ``full`` trains the same ConvNet normally on all 4708 training images. Sensitivity is the
recall of pneumonia (label 1), specificity the recall of normal (label 0), HM their harmonic mean.
Every run reports the validation split (the only one looked at while choosing settings) and the test split.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "pneumoniamnist_28.npz"


def evaluate(module: torch.nn.Module, images: np.ndarray, labels: np.ndarray) -> dict[str, object]:
    """Sensitivity, specificity, HM, accuracy and AUC of ``module`` on preprocessed images."""
    from sldpack.medical.metrics import binary_metrics
    from sldpack.nn.train import predict

    logits = predict(module, images)
    pred = logits.argmax(1)
    z = logits - logits.max(1, keepdims=True)
    p1 = np.exp(z[:, 1]) / np.exp(z).sum(1)
    return binary_metrics(labels, pred, p1).to_dict()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["sldd", "dd", "full", "eval"])
    ap.add_argument("--file", default=None, help="eval: the .sldp to replay and evaluate")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--out", default=None, help="run directory (sldd, dd)")
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-real", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--inner-lr", type=float, default=0.1)
    ap.add_argument("--label-init", type=float, default=2.0)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train-steps", type=int, default=1500, help="full: optimiser steps")
    ap.add_argument("--train-lr", type=float, default=1e-3, help="full: Adam learning rate")
    ap.add_argument("--results", default=None, help="append the JSON line here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from sldpack.pipelines.sources import load_npz

    train = load_npz(args.data, "train", class_names=("normal", "pneumonia"))
    evals = {split: load_npz(args.data, split, class_names=("normal", "pneumonia"), mean=train.mean, std=train.std)
             for split in ("val", "test")}

    def evaluate_all(module: torch.nn.Module) -> dict[str, object]:
        return {split: evaluate(module, src.inputs, src.targets) for split, src in evals.items()}

    t0 = time.perf_counter()
    row: dict[str, object] = {"mode": args.mode, "seed": args.seed, "width": args.width,
                              "threads": args.threads, "torch": torch.__version__}
    if args.mode == "eval":
        from sldpack.nn.replay import replay

        if not args.file:
            ap.error("eval needs --file")
        res = replay(args.file)
        row.update(file=args.file, replay_seconds=round(res.seconds, 2), theta0=res.theta0_status)
        row["metrics"] = evaluate_all(res.module)
    elif args.mode == "full":
        from sldpack.nn.init import init_module_
        from sldpack.nn.train import train_normal
        from sldpack.nn.zoo import build

        net = build("convnet@1", in_channels=1, num_classes=2, image_size=(28, 28),
                    options={"depth": 3, "width": args.width})
        init_module_(net, args.seed)
        train_normal(net, lambda k, rng: train.sample(k, rng, balanced=True), steps=args.train_steps,
                     batch_size=64, lr=args.train_lr, seed=args.seed, device="cpu")
        row.update(train_images=len(train), train_steps=args.train_steps, train_lr=args.train_lr)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        row["metrics"] = evaluate_all(net)
    else:
        from sldpack.nn.distill import DistillConfig, distill
        from sldpack.nn.replay import load_model

        cfg = DistillConfig(arch="convnet@1", arch_options={"depth": 3, "width": args.width}, mode=args.mode,
                            images_per_class=1, steps=args.steps, epochs=args.epochs, iterations=args.iterations,
                            batch_real=args.batch_real, lr=args.lr, inner_lr=args.inner_lr,
                            label_init=args.label_init, seed=args.seed, device="cpu", checkpoint_every=25,
                            # the table's selection rule: the distiller's default when it was made (the default
                            # is select auto since)
                            select="best")
        if not args.out:
            ap.error(f"{args.mode} needs --out")
        out = Path(args.out)
        resume = (out / "checkpoint.pt").exists()
        res = distill(train, cfg, run_dir=out, resume=resume)
        row["distill_seconds"] = round(time.perf_counter() - t0, 1)
        assert res.sldp_path is not None
        model = load_model(res.sldp_path)  # evaluate what the file re-derives, not the in-memory copy
        row.update(config={k: v for k, v in cfg.to_obj().items() if k in (
            "steps", "epochs", "iterations", "batch_real", "lr", "inner_lr", "label_init", "mode")},
            sldp=str(res.sldp_path), sldp_bytes=res.sldp_path.stat().st_size,
            labels=np.round(torch.softmax(torch.from_numpy(res.tensors["labels"].array), -1).numpy()
                            if args.mode == "sldd" else res.tensors["labels"].array, 3).tolist(),
            lrs=[round(float(v), 4) for v in res.tensors["lrs"].array])
        row["resumed"] = resume
        row["theta_opt_sha256"] = res.manifest.replay.theta_opt_sha256 if res.manifest.replay else None
        row["seconds"] = round(time.perf_counter() - t0, 1)
        row["metrics"] = evaluate_all(model)
    line = json.dumps(row)
    print(line)
    if args.results:
        with open(args.results, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


if __name__ == "__main__":
    main()
