#!/usr/bin/env bash
# Re-measure the CPU figures of two revisions side by side, one command of each in turn, on the same
# machine in the same hour: the demo, a 2-epoch Problem 1 fit of the CPU recipe on the real data (its
# final scoring on val_50), and a 1-epoch segmentation fit of the CPU recipe on half the real training
# pairs (its final scoring on the 257 validation pairs).
#
# Usage: bash benchmarks/side_by_side.sh REV_A REV_B WORK   (from the repository root, with .venv set up)
# Each revision is checked out as a worktree under WORK and run through PYTHONPATH; the lines that carry
# the figures and each command's wall time are printed, and the full logs kept under WORK.
set -euo pipefail
a=${1:?REV_A}; b=${2:?REV_B}; work=${3:?WORK}
repo=$(pwd)
python=$repo/.venv/bin/python
p1=$repo/../shared/data/hw1_data/p1_data
p2=$repo/../shared/data/hw1_data/p2_data
mkdir -p "$work"
for rev in "$a" "$b"; do
    [ -d "$work/$rev" ] || git worktree add -f "$work/$rev" "$rev" >/dev/null
done
"$python" "$(dirname "$0")/machine.py"  # the CPU, GPU, date and revision

run() {  # run REV NAME COMMAND...: time one command of one revision, keep its log, print its figure lines
    local rev=$1 name=$2; shift 2
    local log="$work/$rev.$name.log" start end
    start=$(date +%s.%N)
    (cd "$work/$rev" && PYTHONPATH="$work/$rev/src" "$python" -m dlcv "$@") >"$log" 2>&1
    end=$(date +%s.%N)
    printf '%s %s: %.0f s wall\n' "$rev" "$name" "$(echo "$end - $start" | bc)"
    grep -E "accuracy:|mean_iou:|^ssl:|of the best checkpoint|fit took|demo finished|^trainer:" "$log" | sed 's/^/    /'
}

for rev in "$a" "$b"; do
    run "$rev" demo demo --output "$work/$rev.demo" --overwrite
done
for rev in "$a" "$b"; do
    run "$rev" classify classify fit --config configs/p1/model_a_cpu.yaml --data "$p1" --runs-dir "$work/$rev.runs" \
        --overwrite --set train.epochs=2
done
for rev in "$a" "$b"; do
    run "$rev" segment segment fit --config configs/seg/cpu.yaml --data "$p2" --runs-dir "$work/$rev.runs" \
        --overwrite --set train.epochs=1 --set data.holdout=0.5
done
