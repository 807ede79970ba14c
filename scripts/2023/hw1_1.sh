#!/usr/bin/env bash
# DLCV 2023 HW1 Problem 1: bash hw1_1.sh IMAGE_DIR OUTPUT_CSV
# Writes filename,label for every image of IMAGE_DIR, sorted by file name.
# Checkpoint: $DLCV_P1_CHECKPOINT; else checkpoints/p1.ckpt beside this script;
# else the first of these in the repository that exists: model B (the GPU recipe's run, then the CPU one's),
# then model A.
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
usage_unless 2 "IMAGE_DIR OUTPUT_CSV" "$@"
ckpt="$(checkpoint DLCV_P1_CHECKPOINT p1 runs/p1_model_b/best.ckpt runs/p1_model_b_cpu/best.ckpt \
  runs/p1_model_a/best.ckpt runs/p1_model_a_cpu/best.ckpt)"
dlcv classify predict --checkpoint "$ckpt" --images "$1" --output "$2"
