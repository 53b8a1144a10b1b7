#!/bin/sh
# PneumoniaMNIST with the new distiller defaults on fresh seeds (table1.toml), then the new defaults against the
# previous ones on the same seeds (ablation-defaults.toml; its baseline cells are table1's SLDD cells).
# Run from the repository root.
D="--data ${DATA:-../shared/data}/pneumoniamnist_28.npz --jobs ${JOBS:-2} --threads 1 --device cpu"
/usr/bin/time -f "study wall %e s" sldp study --grid examples/study/pneumonia-final/table1.toml $D \
  --out runs/study-pneumonia-final
mkdir -p runs/study-pneumonia-final-defaults/cells
cp runs/study-pneumonia-final/cells/sldd-1-convnetv1-s*.json runs/study-pneumonia-final-defaults/cells/
/usr/bin/time -f "study wall %e s" sldp study --grid examples/study/pneumonia-final/ablation-defaults.toml $D \
  --out runs/study-pneumonia-final-defaults
mkdir -p runs/study-pneumonia-final-budget/cells
cp runs/study-pneumonia-final/cells/sldd-1-convnetv1-s*.json runs/study-pneumonia-final-budget/cells/
/usr/bin/time -f "study wall %e s" sldp study --grid examples/study/pneumonia-final/ablation-budget.toml $D \
  --out runs/study-pneumonia-final-budget
# the shipped defaults (table1-defaults.toml); normal(all) cells are table1's
mkdir -p runs/study-pneumonia-final-defaults2/cells
cp runs/study-pneumonia-final/cells/normal-all-*.json runs/study-pneumonia-final-defaults2/cells/
/usr/bin/time -f "study wall %e s" sldp study --grid examples/study/pneumonia-final/table1-defaults.toml $D \
  --out runs/study-pneumonia-final-defaults2
/usr/bin/time -f "study wall %e s" sldp study --grid examples/study/pneumonia-final/ablation-k64.toml $D \
  --out runs/study-pneumonia-k64
