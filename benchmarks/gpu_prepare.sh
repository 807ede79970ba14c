#!/usr/bin/env bash
# What benchmarks/gpu_check.py needs on a lent GPU machine beyond its image (Python 3.12 with torch,
# torchvision, lightning, timm, torchmetrics, matplotlib, scikit-learn; no network there), put into
# .gpu/ (git-ignored, under the device's 64 MiB carry): the wheels of lightly, openTSNE,
# segment-anything and pycocotools, and a subset of the real p1 images (the first 200 training images
# of each class and all of val_50; the whole set is 89 MB).
# Usage: bash benchmarks/gpu_prepare.sh [P1_DATA]   (default ../shared/data/hw1_data/p1_data)
set -euo pipefail
cd "$(dirname "$0")/.."
p1="${1:-../shared/data/hw1_data/p1_data}"
exclude="$(git rev-parse --git-path info/exclude)"
mkdir -p "$(dirname "$exclude")"
grep -qx '/.gpu/' "$exclude" 2>/dev/null || echo '/.gpu/' >> "$exclude"
rm -rf .gpu && mkdir -p .gpu/whl .gpu/p1_data/train_50
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .gpu/whl lightly==1.6.0 openTSNE==1.0.4 segment-anything==1.0 pycocotools==2.0.11
if [ -d "$p1/train_50" ]; then
    for class in $(seq 0 49); do
        for index in $(seq 0 199); do
            [ -f "$p1/train_50/${class}_${index}.png" ] && cp "$p1/train_50/${class}_${index}.png" .gpu/p1_data/train_50/
        done
    done
    cp -r "$p1/val_50" "$p1/val_gt.csv" .gpu/p1_data/
else
    rm -rf .gpu/p1_data
fi
du -sh .gpu
