#!/bin/sh
# The three phantom studies (table1, min-images, batchnorm), one after the other, timed.
# Run from the repository root; each study folder under runs/ is resumable (run again after a kill).
DATA_OPTS="--phantom 60 --phantom-size 64 --patch-size 16 --stride 8"
for kind in table1 min-images batchnorm; do
  /usr/bin/time -f "$kind wall %e s" sldp study --grid examples/study/phantom/$kind.toml $DATA_OPTS \
    --jobs ${JOBS:-2} --threads 1 --device cpu --out runs/study-phantom-$kind
done
