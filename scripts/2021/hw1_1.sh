#!/usr/bin/env bash
# DLCV 2021 HW1 Problem 1: bash hw1_1.sh IMAGE_DIR OUTPUT_CSV
# Writes image_id,label (2021's header) for every image of IMAGE_DIR, sorted by file name, with the
# checkpoint $DLCV_P1_CHECKPOINT (default: runs/p1_model_a/best.ckpt in this repository).
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
usage_unless 2 "IMAGE_DIR OUTPUT_CSV" "$@"
dlcv classify predict --checkpoint "$(checkpoint DLCV_P1_CHECKPOINT runs/p1_model_a/best.ckpt)" \
  --images "$1" --output "$2" --id-column image_id
