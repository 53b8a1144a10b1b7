#!/bin/sh
# PneumoniaMNIST min-images study (min-images.toml). Run from the repository root.
/usr/bin/time -f "study wall %e s" sldp study --grid examples/study/pneumonia-min-images/min-images.toml \
  --data "${DATA:-../shared/data}/pneumoniamnist_28.npz" --jobs ${JOBS:-2} --threads 1 --device cpu \
  --out runs/study-pneumonia-min-images
/usr/bin/time -f "study wall %e s" sldp study --grid examples/study/pneumonia-min-images/lenet-normal.toml \
  --data "${DATA:-../shared/data}/pneumoniamnist_28.npz" --jobs ${JOBS:-2} --threads 1 --device cpu \
  --out runs/study-pneumonia-lenet-normal
