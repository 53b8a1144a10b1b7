#!/bin/sh
# Issue 21 study, step 1: the networks to attack. For seeds 0, 1, 2: an SLDD and a DD file of PneumoniaMNIST
# made with the shipped `sldp distill` defaults, and a ConvNet trained normally with the shipped `sldp train`
# defaults on the same training split. One process at a time, one torch thread (a shared 2-core machine).
# Run from the repository root; writes runs/privacy/ (not committed: the files are remade by this script).
set -eu
DATA="${DATA:-../shared/data}/pneumoniamnist_28.npz"
OUT=runs/privacy
mkdir -p "$OUT"
for s in 0 1 2; do
  for mode in sldd dd; do
    if [ ! -f "$OUT/$mode-$s/distilled.sldp" ]; then
      resume=""
      [ -f "$OUT/$mode-$s/checkpoint.pt" ] && resume="--resume"  # a killed run continues
      /usr/bin/time -f "$mode seed $s: distill wall %e s" sldp distill --data "$DATA" --mode "$mode" --seed "$s" \
        --threads 1 --device cpu -q --out "$OUT/$mode-$s" $resume
    fi
  done
  if [ ! -f "$OUT/normal-$s.safetensors" ]; then
    /usr/bin/time -f "normal seed $s: train wall %e s" sldp train --data "$DATA" --seed "$s" --threads 1 \
      --device cpu --save "$OUT/normal-$s.safetensors" --json > "$OUT/normal-$s.json"
  fi
done
