#!/usr/bin/env bash
# The seeds' model A recipes (configs/p1/r1_model_a.yaml, r2_model_a.yaml, r3_model_a.yaml: the reports' 0.646, 0.62
# and 0.7454) at their own epochs, and benchmarks/gpu_check.py's float16 path, side by side on one lent GPU in one
# call, each process on 4 host cores of its own; a fit still running after LIMIT seconds (default 470) is stopped
# with Ctrl-C, and its figure is not a result.
# Here: `bash benchmarks/gpu_prepare.sh check` (the wheels the image lacks and the p1 images, into .gpu/); then the
# device's run with carry [".gpu"], timeout_s LIMIT + 50 and the command `bash benchmarks/gpu_p1_seeds.sh`.
# Prints each fit's closing line and epochs, and gpu_check's table; the logs and summaries go to $OUT.
set -u
cd "$(dirname "$0")/.." || exit 1
limit=${LIMIT:-470}
out=${OUT:-/tmp/gpu_p1_seeds}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl || exit 1
tar xzf .gpu/p1_data.tar.gz -C /tmp || exit 1
export PYTHONPATH=/tmp/site:$PWD/src OMP_NUM_THREADS=4
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__)"
(taskset -c 0-3 timeout -s INT "$limit" python3 benchmarks/gpu_check.py --p1 /tmp/p1_data --fp16 \
    --work /tmp/gpu_check > "$out/gpu_check_fp16.txt" 2>&1) &
core=4
for n in 1 2 3; do
    (taskset -c $core-$((core + 3)) timeout -s INT "$limit" python3 -m dlcv classify fit \
        --config "configs/p1/r${n}_model_a.yaml" --data /tmp/p1_data --runs-dir /tmp/seed_runs \
        > "$out/r${n}_model_a.txt" 2>&1; echo "exit $?" >> "$out/r${n}_model_a.txt") &
    core=$((core + 4))
done
wait
for n in 1 2 3; do
    run=/tmp/seed_runs/r${n}_model_a
    cp "$run/summary.json" "$out/r${n}_model_a.summary.json" 2>/dev/null
    cp "$run/metrics.csv" "$out/r${n}_model_a.metrics.csv" 2>/dev/null
    echo "== r${n}_model_a: $(tail -n 3 "$out/r${n}_model_a.txt" | tr '\n' ' ')"
done
tail -n 25 "$out/gpu_check_fp16.txt"
