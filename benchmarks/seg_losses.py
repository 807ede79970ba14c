"""Which pixel loss pays for segmentation, chosen on a holdout share of train (issue 17 part 5).

Each candidate loss trains the same recipe for the same time budget (``dlcv segment fit --budget``, one after
another, nothing else running); the choice is the candidate with the best mIoU on the recipe's holdout of train
(``best_model_score``, what selected its checkpoint). The validation folder's graded mIoU is printed beside it and
decides nothing.

Usage (from the repository root, with .venv set up):
    python benchmarks/seg_losses.py configs/seg/cpu.yaml ../shared/data/hw1_data/p2_data --budget 15m
    python benchmarks/seg_losses.py configs/seg/cpu.yaml DATA --budget 1m --losses ce,ce+lovasz
    python benchmarks/seg_losses.py configs/seg/cpu.yaml DATA --budget 20m --losses ce,ce_rangeland2 --set seed=1

The candidates (``--losses``, comma-separated names of LOSSES): plain cross-entropy; cross-entropy with
Rangeland weighted 2x (the weighting of the best public FCN32s); focal (gamma 2); cross-entropy plus
Lovasz-softmax (an IoU surrogate); cross-entropy plus Dice.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DLCV = [sys.executable, "-m", "dlcv"]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from budget import cpu as machine  # the GPU if any, the CPU's model and flags
from machine import header

# candidate -> the recipe overrides (--set) that give it (Unknown keeps weight 1: the graded mIoU counts a
# class predicted on an Unknown pixel as that class's false positive, so the model must learn Unknown too)
LOSSES = {
    "ce": ["loss.name=ce"],
    "ce_rangeland2": ["loss.name=ce", "loss.class_weights=[1,1,2,1,1,1,1]"],
    "focal": ["loss.name=focal", "loss.focal_gamma=2"],
    "ce+lovasz": ["loss.name=ce+lovasz"],
    "ce+dice": ["loss.name=ce+dice"],
}


def holdout_rangeland(run: Path, best: float | None) -> float | None:
    """Rangeland's holdout IoU in the epoch whose holdout mIoU was the best."""
    metrics = run / "metrics.csv"
    if best is None or not metrics.is_file():
        return None
    with open(metrics, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("val_miou")]
    row = min(rows, key=lambda r: abs(float(r["val_miou"]) - best), default=None)
    value = (row or {}).get("val_iou_rangeland")
    return float(value) if value else None


def main() -> int:
    header()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("data")
    parser.add_argument("--budget", required=True, help="each candidate's budget, e.g. 15m")
    parser.add_argument("--losses", default=",".join(LOSSES), help=f"comma-separated, of {', '.join(LOSSES)}")
    parser.add_argument("--runs-dir", default="/tmp/seg_losses")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a recipe override for every candidate, e.g. seed=1 for a second seed (repeatable)")
    args = parser.parse_args()
    names = [n.strip() for n in args.losses.split(",") if n.strip()]
    unknown = [n for n in names if n not in LOSSES]
    if unknown or not names:
        sys.exit(f"--losses {args.losses!r}: choose among {', '.join(LOSSES)}")
    print(machine())
    shared = "".join(f" --set {o}" for o in args.set)
    print(f"recipe {args.recipe}{shared}, data {args.data}, budget {args.budget} each\n")

    rows = []
    for name in names:
        run_name = "loss_" + re.sub(r"[^a-z0-9]+", "_", name)
        command = [*DLCV, "segment", "fit", "--config", args.recipe, "--data", args.data, "--runs-dir", args.runs_dir,
                   "--name", run_name, "--overwrite", "--budget", args.budget]
        for override in [*args.set, *LOSSES[name]]:
            command += ["--set", override]
        began = time.perf_counter()
        result = subprocess.run(command, check=False, cwd=REPO, capture_output=True, text=True)
        wall = time.perf_counter() - began
        run = Path(args.runs_dir) / run_name
        (Path(args.runs_dir) / f"{run_name}.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            print(f"{name}: exit {result.returncode} (log: {args.runs_dir}/{run_name}.log)")
            continue
        summary = json.loads((run / "summary.json").read_text())
        best = summary.get("best_model_score", summary.get("best_val_miou"))
        final = (summary.get("final_validation") or {}).get("mean_iou")
        final_iou = (summary.get("final_validation") or {}).get("iou") or [None] * 3
        rows.append((name, best, holdout_rangeland(run, best), final, final_iou[2], summary.get("epochs"), wall))
        print(f"{name}: holdout mIoU {best:.4f}, validation mIoU {final:.4f} (not used), {wall:.0f} s", flush=True)

    if not rows:
        return 1
    print("\n| loss | **holdout mIoU** (the choice) | holdout Rangeland IoU | validation mIoU (not used) | "
          "validation Rangeland IoU | epochs | wall |")
    print("|---|---|---|---|---|---|---|")
    fmt = lambda v: "-" if v is None else f"{v:.4f}"
    for name, best, rangeland, final, final_rangeland, epochs, wall in sorted(rows, key=lambda r: -(r[1] or 0)):
        print(f"| {name} | {fmt(best)} | {fmt(rangeland)} | {fmt(final)} | {fmt(final_rangeland)} | {epochs} | "
              f"{wall:.0f} s |")
    print(f"\nchosen on the holdout: {max(rows, key=lambda r: r[1] or 0)[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
