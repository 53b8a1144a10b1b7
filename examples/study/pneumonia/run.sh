#!/bin/sh
# PneumoniaMNIST study (table1): SLDD(1/class) = 2 images vs DD(1/class) vs ConvNet trained normally on all
# 4708 training images, 3 seeds. Reduced budget to fit a shared 2-core machine: 150 outer iterations (the
# example in examples/pneumonia used 300) and 400 Adam steps of normal training (1500 there).
# Run from the repository root; the study folder runs/study-pneumonia is resumable (run again after a kill).
sldp study --kind table1 --data "${DATA:-../shared/data}/pneumoniamnist_28.npz" \
  --seeds 0,1,2 -M 1 --methods sldd,dd --normal all \
  --iterations 150 --train-steps 400 \
  --jobs 2 --threads 1 --device cpu --out runs/study-pneumonia
