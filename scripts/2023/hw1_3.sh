#!/usr/bin/env bash
# DLCV 2023 HW1 Problem 3 (semantic segmentation): bash hw1_3.sh IMAGE_DIR OUTPUT_DIR
# Writes NNNN_mask.png (512x512 RGB, the course's colours) for every NNNN_sat.jpg of IMAGE_DIR into
# OUTPUT_DIR (new or empty), with the checkpoint $DLCV_P2_CHECKPOINT (default: runs/seg_cpu/best.ckpt
# in this repository).
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
usage_unless 2 "IMAGE_DIR OUTPUT_DIR" "$@"
dlcv segment predict --checkpoint "$(checkpoint DLCV_P2_CHECKPOINT runs/seg_cpu/best.ckpt)" \
  --images "$1" --output "$2"
