#!/usr/bin/env bash
# What benchmarks/gpu_check.py needs on a lent GPU machine beyond its image (Python 3.12 with torch,
# torchvision, lightning, timm, torchmetrics, matplotlib, scikit-learn; no network there), put into
# .gpu/ (git-ignored, under the device's 64 MiB carry): the wheels of lightly, openTSNE,
# segment-anything and pycocotools (4 MB), and the real p1 images as one .gpu/p1_data.tar.gz (55 MB: as
# 25,000 files their headers and padding would take the carry over its limit). On the device:
# tar xzf .gpu/p1_data.tar.gz -C /tmp  (then /tmp/p1_data).
# Usage: bash benchmarks/gpu_prepare.sh [P1_DATA]   (default ../shared/data/hw1_data/p1_data)
set -euo pipefail
cd "$(dirname "$0")/.."
p1="${1:-../shared/data/hw1_data/p1_data}"
exclude="$(git rev-parse --git-path info/exclude)"
mkdir -p "$(dirname "$exclude")"
grep -qx '/.gpu/' "$exclude" 2>/dev/null || echo '/.gpu/' >> "$exclude"
rm -rf .gpu && mkdir -p .gpu/whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .gpu/whl lightly==1.6.0 openTSNE==1.0.4 segment-anything==1.0 pycocotools==2.0.11
[ -d "$p1/train_50" ] && tar czf .gpu/p1_data.tar.gz -C "$(dirname "$p1")" --transform "s,^$(basename "$p1"),p1_data," "$(basename "$p1")"
du -sh --apparent-size .gpu
