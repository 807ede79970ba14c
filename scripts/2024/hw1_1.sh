#!/usr/bin/env bash
# DLCV 2024 HW1 (Office-Home, 65 classes): bash hw1_1.sh INPUT_CSV IMAGE_DIR OUTPUT_CSV
# Writes id,filename,label for every row of INPUT_CSV (id,filename[,label]; the label may be empty), in its
# order.
# Checkpoint: $DLCV_SSL_CHECKPOINT; else checkpoints/ssl.ckpt beside this script; else the first of these in the repository that exists: setting C of `dlcv ssl table` (the GPU
# settings' table, then the CPU one).
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
usage_unless 3 "INPUT_CSV IMAGE_DIR OUTPUT_CSV" "$@"
ckpt="$(checkpoint DLCV_SSL_CHECKPOINT ssl runs/ssl_table/C/best.ckpt runs/ssl_table_cpu/C/best.ckpt)"
dlcv ssl predict --checkpoint "$ckpt" --csv "$1" --images "$2" --output "$3"
