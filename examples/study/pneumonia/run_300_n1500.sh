#!/bin/sh
# As run_300.sh, with normal training at the budget of examples/pneumonia (1500 Adam steps instead of 400).
# The SLDD/DD cells do not depend on --train-steps: their results were copied from runs/study-pneumonia-300.
mkdir -p runs/study-pneumonia-300-n1500/cells
cp runs/study-pneumonia-300/cells/sldd-*.json runs/study-pneumonia-300/cells/dd-*.json runs/study-pneumonia-300-n1500/cells/
sldp study --kind table1 --data "${DATA:-../shared/data}/pneumoniamnist_28.npz" \
  --seeds 0,1,2 -M 1 --methods sldd,dd --normal all \
  --iterations 300 --train-steps 1500 \
  --jobs 3 --threads 1 --device cpu --out runs/study-pneumonia-300-n1500
