#!/bin/sh
# Phantom ablation (see ablation-iterations.toml); normal(all) cells copied from runs/study-phantom-table1.
DATA_OPTS="--phantom 60 --phantom-size 64 --patch-size 16 --stride 8"
mkdir -p runs/study-phantom-ablation-iterations/cells
cp runs/study-phantom-table1/cells/normal-all-*.json runs/study-phantom-ablation-iterations/cells/
/usr/bin/time -f "ablation wall %e s" sldp study --grid examples/study/phantom/ablation-iterations.toml $DATA_OPTS \
  --jobs ${JOBS:-1} --threads 1 --device cpu --out runs/study-phantom-ablation-iterations
