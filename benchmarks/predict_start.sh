#!/usr/bin/env bash
# How long a prediction command takes as a user runs it (the start included: the imports are most of it on small
# inputs), for two revisions in turn: the one checked out and REV, from a git worktree, with the same interpreter.
# Usage: bash benchmarks/predict_start.sh REV DEMO [ROUNDS]   (DEMO: a `dlcv demo --output DEMO` folder)
# Prints one line per round, revision and command: round, revision, command, wall seconds.
set -eu
rev=$1 demo=$2 rounds=${3:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$here/.venv/bin/python}
other=$(mktemp -d)/tree
git -C "$here" worktree add -q --detach "$other" "$rev"
trap 'git -C "$here" worktree remove --force "$other"' EXIT
# Both trees compiled first, as a first run leaves them (PYTHONDONTWRITEBYTECODE would keep one uncompiled).
"$python" -m compileall -q "$other/src" "$here/src"
out=$(mktemp -d)
commands=(
    "classify predict --checkpoint $demo/runs/p1_demo/best.ckpt --images $demo/data/p1_data/val_50 --output $out/p1.csv"
    "segment predict --checkpoint $demo/runs/p2_demo/best.ckpt --images $demo/data/p2_data/validation --output $out/masks --overwrite"
    "ssl predict --checkpoint $demo/runs/ssl_table_demo/C/best.ckpt --csv $demo/data/p2_data/office/val.csv --images $demo/data/p2_data/office/val --output $out/ssl.csv"
)
"$python" "$(dirname "$0")/machine.py"  # the CPU, GPU, date and revision
for round in $(seq "$rounds"); do
    for tree in "$other" "$here"; do
        name=$([ "$tree" = "$here" ] && git -C "$here" rev-parse --short HEAD || echo "$rev")
        for command in "${commands[@]}"; do
            start=$(date +%s.%N)
            (cd "$tree" && PYTHONPATH="$tree/src" "$python" -m dlcv $command > /dev/null)
            echo "$round $name ${command%% --*} $(echo "$(date +%s.%N) - $start" | bc)"
        done
    done
done
