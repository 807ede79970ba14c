"""The size whole tiles are resized to for a segmentation model (``data.eval_size``), chosen on the holdout.

A finished run's best checkpoint (``dlcv segment fit`` with ``data.holdout > 0``) predicts the holdout share of
train that chose its checkpoints (the same pairs: the run's seed and fraction, drawn by dlcv's own split) at each
size, with the test-time augmentation given (default: the recipe's ``train.tta``), through the functions that
``dlcv segment predict`` and ``evaluate`` use, and scores them with the course's mIoU. The size with the best
holdout mIoU is the choice (the smaller one where two lie within 0.001). Then the validation folder is scored
once at the run's own size and at the chosen one: printed, choosing nothing.

Usage (from the repository root, with .venv set up):
    python benchmarks/seg_eval_size.py /tmp/budget_runs_seg/cpu_recipe ../shared/data/hw1_data/p2_data \
        --sizes 256,288,320,352
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from machine import header

from dlcv.data.masks import NUM_CLASSES, MaskCodec
from dlcv.data.p2 import find_pairs, load_pairs, random_holdout
from dlcv.metrics.segmentation import class_iou, confusion, mean_iou
from dlcv.segment import load_segmenter, predict_classes


def score(model, recipe, images: np.ndarray, masks: np.ndarray, size: int, tta: str) -> tuple[float, list, float]:
    """(mIoU, per-class IoUs, seconds) of the model at ``size`` with ``tta``."""
    recipe = recipe.model_copy(deep=True)
    recipe.data.eval_size = size
    start, matrix = time.perf_counter(), np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    for first, classes in predict_classes(model, images, recipe, tta):
        matrix += confusion(masks[first : first + len(classes)], classes)
    return mean_iou(matrix), np.round(class_iou(matrix), 3).tolist(), time.perf_counter() - start


def main() -> int:
    header()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished segmentation run folder")
    parser.add_argument("data", type=Path, help="the data folder it was trained on (train/, validation/)")
    parser.add_argument("--sizes", default="256,288,320,352", help="comma-separated eval sizes")
    parser.add_argument("--tta", help="none, flip or d4 (default: the recipe's train.tta)")
    args = parser.parse_args()

    model, recipe = load_segmenter(args.run / "best.ckpt")
    data, tta = recipe.data, args.tta or recipe.train.tta
    if not data.holdout:
        sys.exit(f"{args.run}: the run has no holdout (data.holdout) to choose on")
    codec = MaskCodec(data.unmapped)
    pairs = find_pairs(args.data / data.train)
    _, hold = random_holdout(len(pairs.ids), data.holdout, recipe.seed)
    images, masks = load_pairs(pairs.subset(hold), codec)
    print(f"{args.run}: {len(hold)} holdout pairs, tta {tta}, the run's eval_size {data.eval_size}", flush=True)
    results = {}
    for size in (int(s) for s in args.sizes.split(",")):
        results[size] = score(model, recipe, images, masks, size, tta)
        print(f"holdout  eval_size {size}: mIoU {results[size][0]:.4f}  per class {results[size][1]}  "
              f"{results[size][2]:.0f} s", flush=True)
    top = max(r[0] for r in results.values())
    chosen = min(size for size, r in results.items() if r[0] >= top - 0.001)
    print(f"chosen on the holdout: eval_size {chosen}")
    folder = args.data / "validation"
    if folder.is_dir():
        images, masks = load_pairs(find_pairs(folder), codec)
        for size in dict.fromkeys([data.eval_size, chosen]):
            miou, per_class, seconds = score(model, recipe, images, masks, size, tta)
            print(f"validation eval_size {size}: mIoU {miou:.4f}  per class {per_class}  {seconds:.0f} s "
                  "(chooses nothing)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
