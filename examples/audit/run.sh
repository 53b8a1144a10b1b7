#!/usr/bin/env bash
# Privacy audit of a PneumoniaMNIST distillation (issue 6): every distilled image against the 4,708
# training images, at 28 x 28, NCC and SSIM, compared with real-real nearest-neighbour similarity.
#
#   examples/audit/run.sh [DISTILLED.sldp] [DATA.npz]      (paths relative to the repository root)
#
# Writes result.txt (table and verdict), result.json (sldp audit --json) and sheet.png into
# examples/audit/. sldp audit exits 1 when an image is flagged; the script records the code and goes on.
set -uo pipefail
cd "$(dirname "$0")/../.."
sldp_file="${1:-examples/audit/pneumonia_sldd.sldp}"
data="${2:-../shared/data/pneumoniamnist_28.npz}"
out=examples/audit

sldp audit "$sldp_file" --data "$data" --split train --sheet "$out/sheet.png" | tee "$out/result.txt"
rc=${PIPESTATUS[0]}
sldp audit "$sldp_file" --data "$data" --split train --no-sheet --json > "$out/result.json"
echo "exit code $rc (0 PASS, 1 FLAG, 2 bad input)" | tee -a "$out/result.txt"
