#!/bin/sh
# Distiller ablation on PneumoniaMNIST (ablation.toml): 13 rows x 3 seeds. Run from the repository root.
/usr/bin/time -f "study wall %e s" sldp study --grid examples/study/pneumonia-ablation/ablation.toml \
  --data "${DATA:-../shared/data}/pneumoniamnist_28.npz" --jobs ${JOBS:-2} --threads 1 --device cpu \
  --out runs/study-pneumonia-ablation
