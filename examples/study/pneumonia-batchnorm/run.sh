#!/bin/sh
# PneumoniaMNIST batch-norm study (batchnorm.toml), then theta_bn's class mix (ablation-bn-mix.toml; its
# baseline cells are the BN SLDD cells of the first study). Run from the repository root.
D="--data ${DATA:-../shared/data}/pneumoniamnist_28.npz --jobs ${JOBS:-2} --threads 1 --device cpu"
# the no-BN distillation cells are the k = 1 ConvNet cells of the min-images study (same settings): reuse them
# when that study has run (they are skipped then; the measured wall time below ran them again)
if [ -d runs/study-pneumonia-min-images/cells ]; then
  mkdir -p runs/study-pneumonia-batchnorm/cells
  cp runs/study-pneumonia-min-images/cells/sldd-1-convnetv1-s*.json runs/study-pneumonia-min-images/cells/dd-1-convnetv1-s*.json \
    runs/study-pneumonia-batchnorm/cells/
fi
/usr/bin/time -f "study wall %e s" sldp study --grid examples/study/pneumonia-batchnorm/batchnorm.toml $D \
  --out runs/study-pneumonia-batchnorm
mkdir -p runs/study-pneumonia-bn-mix/cells
cp runs/study-pneumonia-batchnorm/cells/sldd-1-convnetv1-bn-s*.json runs/study-pneumonia-bn-mix/cells/
/usr/bin/time -f "study wall %e s" sldp study --grid examples/study/pneumonia-batchnorm/ablation-bn-mix.toml $D \
  --out runs/study-pneumonia-bn-mix
