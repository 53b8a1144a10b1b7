#!/bin/sh
# Issue 21 study: membership inference on PneumoniaMNIST, distilled files vs the normally trained network.
# For seeds 0, 1, 2 (one process at a time, one torch thread: a shared 2-core machine):
#   1. an SLDD file made with the shipped `sldp distill` defaults,
#   2. a ConvNet trained normally with the shipped `sldp train` defaults on the same training split,
#   3. `sldp audit --membership` of the SLDD file with that network as the comparison (both attacked with the
#      same members, non-members and reference networks),
#   4. a DD file (the shipped defaults, --mode dd) and its audit.
# Members: the 4,708 training images; non-members: the test split (624), half of each class attacked, the
# other half training the reference networks (REFS of them, REF_STEPS steps each; the `sldp audit` defaults
# are 4 and 500, the study ran with fewer to fit a shared 2-core machine: see README.md). SEEDS and DD=0
# (skip the DD files) narrow the run. Run from the repository root; the networks go to runs/privacy/ (not
# committed), the audit reports to examples/privacy/results/. A rerun skips what exists; a killed
# distillation continues (--resume).
set -u
DATA="${DATA:-../shared/data}/pneumoniamnist_28.npz"
OUT=runs/privacy
RES=examples/privacy/results
mkdir -p "$OUT" "$RES"
T="--threads 1 --device cpu"
REFS="${REFS:-4}"
REF_STEPS="${REF_STEPS:-500}"

distill() {  # mode seed
  if [ ! -f "$OUT/$1-$2/distilled.sldp" ]; then
    resume=""
    [ -f "$OUT/$1-$2/checkpoint.pt" ] && resume="--resume"
    /usr/bin/time -f "$1 seed $2: distill wall %e s" sldp distill --data "$DATA" --mode "$1" --seed "$2" $T -q \
      --out "$OUT/$1-$2" $resume || exit 1
  fi
}

audit() {  # mode seed [comparison options...]
  mode=$1; s=$2; shift 2
  if [ ! -f "$RES/$mode-$s.json" ]; then
    /usr/bin/time -f "$mode seed $s: audit wall %e s" sldp audit "$OUT/$mode-$s/distilled.sldp" --data "$DATA" \
      --membership --references "$REFS" --train-steps "$REF_STEPS" --seed "$s" $T --no-sheet --roc "$RES/$mode-$s.roc.png" --json "$@" \
      > "$RES/$mode-$s.json.part"
    rc=$?  # 0 PASS, 1 FLAG, 2 bad input
    [ $rc -le 1 ] && mv "$RES/$mode-$s.json.part" "$RES/$mode-$s.json"
    echo "$mode seed $s: audit exit code $rc"
  fi
}

for s in ${SEEDS:-0 1 2}; do
  distill sldd "$s"
  if [ ! -f "$OUT/normal-$s.safetensors" ]; then
    /usr/bin/time -f "normal seed $s: train wall %e s" sldp train --data "$DATA" --seed "$s" $T \
      --save "$OUT/normal-$s.safetensors" --json > "$OUT/normal-$s.json" || exit 1
  fi
  audit sldd "$s" --compare "$OUT/normal-$s.safetensors"
  if [ "${DD:-1}" = 1 ]; then
    distill dd "$s"
    audit dd "$s" --no-compare
  fi
done
