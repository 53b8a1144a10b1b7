#!/bin/sh
# Copy a finished study's tables (not its cells: models and logs stay in runs/) into examples/study/NAME.
set -e
src=$1; dst=$2
mkdir -p "$dst"
for f in table.md rows.csv runs.csv comparisons.csv results.json hm_vs_bytes.png comparisons.png; do cp "$src/$f" "$dst/"; done
