#!/usr/bin/env bash
# DLCV 2023 HW1 Problem 3 (semantic segmentation): bash hw1_3.sh IMAGE_DIR OUTPUT_DIR
# Writes NNNN_mask.png (512x512 RGB, the course's colours) for every NNNN_sat.jpg of IMAGE_DIR into OUTPUT_DIR
# (new or empty).
# Checkpoint: $DLCV_P2_CHECKPOINT; else checkpoints/seg.ckpt beside this script; else the first of these in the repository that exists: the improved model (the GPU, CPU and
# DeepLabv3 recipes' runs), then FCN32s.
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
usage_unless 2 "IMAGE_DIR OUTPUT_DIR" "$@"
ckpt="$(checkpoint DLCV_P2_CHECKPOINT seg runs/seg_gpu/best.ckpt runs/seg_cpu/best.ckpt \
  runs/seg_deeplabv3/best.ckpt runs/seg_fcn32s/best.ckpt)"
dlcv segment predict --checkpoint "$ckpt" --images "$1" --output "$2"
