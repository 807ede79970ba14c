"""A budget recipe as a user runs it: the whole command's wall time against its budget, and its score.

Usage (from the repository root, with .venv set up; nothing else running):
    python benchmarks/budget.py classify configs/p1/model_a_cpu.yaml ../shared/data/hw1_data/p1_data \
        --precision 32-true --runs-dir /tmp/budget_runs
    python benchmarks/budget.py segment configs/seg/cpu.yaml ../shared/data/hw1_data/p2_data
    python benchmarks/budget.py ssl-table configs/ssl/settings_cpu.yaml /tmp/transfer

It prints the GPU (if any), the CPU's model and flags, the command, its wall time (interpreter start to exit) as a share
of the budget, the epochs the plan reached and the final score (val_50 accuracy, validation mIoU, or
the A-E table), from the run folder's summary.json / table.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import yaml
from machine import header

from dlcv.recipes import parse_duration


def main() -> int:
    header()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["classify", "segment", "ssl-table"])
    parser.add_argument("recipe")
    parser.add_argument("data")
    parser.add_argument("--precision", help="override train.precision (classify, segment)")
    parser.add_argument("--budget", help="override the recipe's budget")
    parser.add_argument("--runs-dir", default="/tmp/budget_runs")
    parser.add_argument("--name", help="run folder name (default: the recipe's name and the precision)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a recipe override passed on to the command (repeatable)")
    args = parser.parse_args()

    key = "budget" if args.kind == "ssl-table" else "train.budget"
    recipe = yaml.safe_load(Path(args.recipe).read_text()) or {}
    recipe_budget = recipe.get("budget") if args.kind == "ssl-table" else (recipe.get("train") or {}).get("budget")
    budget = args.budget or recipe_budget
    if budget is None or parse_duration(str(budget)) is None:
        sys.exit(f"{args.recipe}: no {key} (give --budget)")
    seconds = parse_duration(str(budget))
    stem = Path(args.recipe).stem
    name = args.name or f"{stem}_{(args.precision or 'recipe').replace('-', '_')}"
    if args.kind == "ssl-table":
        command = ["ssl", "table", "--config", args.recipe, "--data", args.data, "--name", name]
    else:
        command = [args.kind, "fit", "--config", args.recipe, "--data", args.data, "--name", name, "--overwrite"]
        if args.precision:
            command += ["--set", f"train.precision={args.precision}"]
    for override in args.set:
        command += ["--set", override]
    command += ["--runs-dir", args.runs_dir, "--budget", str(budget)]
    print("command: dlcv " + " ".join(command), flush=True)
    start = time.perf_counter()
    # The command runs this checkout's dlcv, installed or not (a lent GPU machine has it only as source).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-m", "dlcv", *command], capture_output=True, text=True, check=False,
                            env=env)
    wall = time.perf_counter() - start
    log = Path(args.runs_dir) / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        print(result.stderr[-3000:])
        return result.returncode
    print(f"wall {wall:.1f} s of a budget of {seconds:.0f} s: {wall / seconds:.1%}  (log: {log})")
    folder = Path(args.runs_dir) / name
    if args.kind == "ssl-table":
        table = json.loads((folder / "table.json").read_text())
        print("table: " + "  ".join(f"{r['setting']} {r['accuracy']:.4f} ({r['epochs']} epochs)"
                                    for r in table["rows"]))
        return 0
    summary = json.loads((folder / "summary.json").read_text())
    final = summary.get("final_validation") or {}
    score = final.get("accuracy", final.get("mean_iou"))
    score = "-" if score is None else f"{score:.4f}"
    best = summary.get("best_model_score", summary.get("best_val_acc", summary.get("best_val_miou")))
    print(f"epochs {summary['epochs']} ({summary['budget']['steps']} steps); precision "
          f"{json.loads((folder / 'resolved.json').read_text())['precision']}; best selection score "
          f"{best:.4f}; final {final.get('folder')}: {score}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
