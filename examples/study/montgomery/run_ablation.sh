#!/bin/sh
# Montgomery: --select val-hm (table1.toml's cells, copied) against --select best (ablation-select.toml).
# Run run.sh first, from the repository root.
mkdir -p runs/study-montgomery-select/cells
cp runs/study-montgomery/cells/*-s[0-9].json runs/study-montgomery-select/cells/
/usr/bin/time -f "study wall %e s" sldp study --grid examples/study/montgomery/ablation-select.toml \
  --data "${DATA:-../shared/data}/montgomery_512.npz" --patch-size 64 --stride 32 --out-size 32 \
  --jobs ${JOBS:-2} --threads 1 --device cpu --out runs/study-montgomery-select
