#!/usr/bin/env bash
# DLCV 2021 HW1 Problem 1 interface: bash hw1_1.sh IMAGE_DIR OUTPUT_CSV
# Writes image_id,label (the 2021 header) for every image of IMAGE_DIR, sorted by file name.
# The checkpoint is $DLCV_P1_CHECKPOINT (default: runs/p1_model_a/best.ckpt under the repository).
set -euo pipefail
if [ "$#" -ne 2 ]; then
  echo "usage: bash $0 IMAGE_DIR OUTPUT_CSV" >&2
  exit 2
fi
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
checkpoint="${DLCV_P1_CHECKPOINT:-$repo/runs/p1_model_a/best.ckpt}"
python="${DLCV_PYTHON:-$( [ -x "$repo/.venv/bin/python" ] && echo "$repo/.venv/bin/python" || echo python3)}"
exec "$python" -m dlcv classify predict --checkpoint "$checkpoint" --images "$1" --output "$2" --id-column image_id
