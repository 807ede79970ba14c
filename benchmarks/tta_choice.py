"""Test-time augmentation chosen on the holdout of train, then scored once on validation.

A finished run's best checkpoint (``dlcv classify fit`` or ``dlcv segment fit`` with ``data.holdout > 0``)
predicts, in each test-time augmentation mode, the holdout share of train that chose its checkpoints (the
same images: the run's recipe's seed and fraction, drawn by dlcv's own split) and the validation folder.
Every prediction is ``dlcv classify|segment predict`` and every score ``dlcv classify|segment evaluate``,
as a user runs them. The mode with the best holdout score is the choice; validation is printed beside it
and chooses nothing.

Usage (from the repository root, with .venv set up; nothing else running when the seconds matter):
    python benchmarks/tta_choice.py classify /tmp/budget_runs_b/model_b_cpu_recipe ../shared/data/hw1_data/p1_data
    python benchmarks/tta_choice.py segment /tmp/budget_runs_seg/cpu_recipe ../shared/data/hw1_data/p2_data
(the run folders that ``benchmarks/budget.py ... --runs-dir /tmp/budget_runs_b`` / ``_seg`` leave)
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from machine import header

from dlcv.data.p1 import read_image_folder, stratified_holdout
from dlcv.data.p2 import find_pairs, random_holdout
from dlcv.runs import RunFolder

MODES = {"classify": "none,flip,flip_shift", "segment": "none,flip,d4"}
SCORE = {"classify": "accuracy", "segment": "mean_iou"}


def copy_all(files, folder: Path) -> Path:
    """Copies (dlcv refuses links that lead out of an image folder)."""
    folder.mkdir(parents=True)
    for file in files:
        shutil.copyfile(file, folder / file.name)
    return folder


def holdout_folders(kind: str, data: dict, root: Path, seed: int, work: Path) -> tuple[Path, Path, int]:
    """(images, labels, count) of the run's holdout, copied into ``work``."""
    if kind == "classify":
        if data.get("train_labels"):
            sys.exit(f"{root / data['train_labels']}: labels from a CSV are not supported here (file names must "
                     "carry the class)")
        train = read_image_folder(root / data["train"])
        _, hold = stratified_holdout(train.labels, float(data["holdout"]), seed)
        folder = copy_all([train.files[i] for i in hold], work / "holdout")
        return folder, folder, len(hold)
    pairs = find_pairs(root / data["train"])
    held = pairs.subset(random_holdout(len(pairs), float(data["holdout"]), seed)[1])
    return copy_all(held.images, work / "holdout_images"), copy_all(held.masks, work / "holdout_masks"), len(held)


def dlcv(*args: str) -> str:
    """A dlcv command's standard output; its error line and exit when it fails."""
    done = subprocess.run([sys.executable, "-m", "dlcv", *args], capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"dlcv {' '.join(args)}: exit {done.returncode}: {done.stderr.strip()[-2000:]}")
    return done.stdout


def score(kind: str, checkpoint: Path, images: Path, labels: Path, mode: str, out: Path) -> tuple[float, float]:
    """(score, prediction seconds) of one mode on one image set."""
    output = str(out.with_suffix(".csv") if kind == "classify" else out)
    start = time.perf_counter()
    dlcv(kind, "predict", "--checkpoint", str(checkpoint), "--images", str(images), "--output", output, "--tta", mode)
    seconds = time.perf_counter() - start
    stdout = dlcv(kind, "evaluate", "--predictions", output, "--labels", str(labels))
    found = re.search(rf"^{SCORE[kind]}: ([0-9.]+)$", stdout, re.MULTILINE)
    if found is None:
        sys.exit(f"no {SCORE[kind]} line in: {stdout}")
    return float(found.group(1)), seconds


def main() -> int:
    header()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(MODES))
    parser.add_argument("run", type=Path, help="a finished run folder")
    parser.add_argument("data", type=Path, help="the data folder the run was trained on")
    parser.add_argument("--modes", help="comma-separated modes (default: every mode of the kind)")
    args = parser.parse_args()

    run = RunFolder(args.run)
    recipe = run.read_recipe()
    data = recipe["data"]
    if float(data.get("holdout") or 0) <= 0:
        sys.exit(f"{run.recipe_file}: data.holdout is 0: the run chose on validation, there is no holdout to choose on")
    if not run.best.is_file():
        sys.exit(f"{run.best}: no best checkpoint")
    modes = (args.modes or MODES[args.kind]).split(",")
    print(f"run {run.path} (recipe train.tta: {recipe['train'].get('tta')}); {SCORE[args.kind]} per mode")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        images, labels, count = holdout_folders(args.kind, data, args.data, int(recipe.get("seed", 0)), work)
        val = args.data / data["validation"]
        rows = []
        for mode in modes:
            hold, hold_s = score(args.kind, run.best, images, labels, mode, work / f"pred_hold_{mode}")
            final, final_s = score(args.kind, run.best, val, val, mode, work / f"pred_val_{mode}")
            rows.append((mode, hold, final, hold_s, final_s))
    chosen = max(rows, key=lambda row: row[1])[0]
    print(f"| tta | holdout ({count} images of train; the choice) | validation (not used) "
          "| predict s (holdout, validation) |")
    print("|---|---|---|---|")
    for mode, hold, final, hold_s, final_s in rows:
        mark = "**" if mode == chosen else ""
        print(f"| {mark}{mode}{mark} | {mark}{hold:.4f}{mark} | {final:.4f} | {hold_s:.0f}, {final_s:.0f} |")
    print(f"chosen on the holdout: {chosen}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
