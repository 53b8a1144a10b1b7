#!/bin/sh
# Ablation of the iterate selection on PneumoniaMNIST: the same SLDD/DD cells as run.sh, but the written
# iterate is the one with the best image-level HM on the file's own val split (524 images), scored every
# 25 iterations, instead of the lowest training-loss moving average (--select best). The normal(all) cells
# do not depend on the selection: their results were copied from runs/study-pneumonia (skipped here).
sldp study --kind table1 --data "${DATA:-../shared/data}/pneumoniamnist_28.npz" \
  --seeds 0,1,2 -M 1 --methods sldd,dd --normal all \
  --iterations 150 --train-steps 400 --select val-hm \
  --jobs 2 --threads 1 --device cpu --out runs/study-pneumonia-val
