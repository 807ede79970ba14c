#!/usr/bin/env bash
# DLCV 2024 HW1 (Office-Home, 65 classes): bash hw1_1.sh INPUT_CSV IMAGE_DIR OUTPUT_CSV
# Writes id,filename,label for every row of INPUT_CSV (id,filename[,label]; the label may be empty), in its
# order, with the checkpoint $DLCV_SSL_CHECKPOINT (default: runs/ssl_table/C/best.ckpt in this repository,
# setting C of `dlcv ssl table --config configs/ssl/settings.yaml`).
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
usage_unless 3 "INPUT_CSV IMAGE_DIR OUTPUT_CSV" "$@"
dlcv ssl predict --checkpoint "$(checkpoint DLCV_SSL_CHECKPOINT runs/ssl_table/C/best.ckpt)" \
  --csv "$1" --images "$2" --output "$3"
