#!/bin/sh
# PneumoniaMNIST, the budget of examples/pneumonia (300 outer iterations, --select best), 3 seeds, with the
# study's paired CIs. The normal(all) cells (400 Adam steps) are the ones of run.sh: their results were
# copied from runs/study-pneumonia into runs/study-pneumonia-300/cells/ before this ran (skipped here).
sldp study --kind table1 --data "${DATA:-../shared/data}/pneumoniamnist_28.npz" \
  --seeds 0,1,2 -M 1 --methods sldd,dd --normal all \
  --iterations 300 --train-steps 400 \
  --jobs 2 --threads 1 --device cpu --out runs/study-pneumonia-300
