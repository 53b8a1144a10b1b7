#!/bin/sh
# Montgomery County chest X-rays, 3 seeds: SLDD(1/class) (= SLDD(3): I/N/P) vs DD(1/class) vs ConvNet on all
# training patches, the protocol of examples/montgomery with the iterate chosen on held-out training images
# (table1.toml). Run from the repository root; runs/study-montgomery is resumable.
/usr/bin/time -f "study wall %e s" sldp study --grid examples/study/montgomery/table1.toml \
  --data "${DATA:-../shared/data}/montgomery_512.npz" --patch-size 64 --stride 32 --out-size 32 \
  --jobs ${JOBS:-2} --threads 1 --device cpu --out runs/study-montgomery
