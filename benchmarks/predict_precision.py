"""The cost of predicting in float32 (the default of ``dlcv ... predict`` and the hand-in's scripts) against the
autocast of the model's training precision (``--autocast``), side by side on the same images, and how many labels
(or pixels) the two give differently.

Usage (nothing else running): python benchmarks/predict_precision.py --p1 RUN/best.ckpt --seg RUN/best.ckpt
       [--data ../shared/data/hw1_data] [--tiles 64] [--rounds 3]
A classification checkpoint (``--p1``: model A or B, or a fine-tuned ResNet) predicts the 2,500 ``val_50`` images
(resized to its ``data.image_size``, as its run read its images); a segmentation one the first ``--tiles``
validation tiles, through the functions ``dlcv classify predict`` and ``dlcv segment predict`` call. Fastest of
``--rounds``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from machine import header  # noqa: E402

from dlcv.classify import load_classifier, predict_scores  # noqa: E402
from dlcv.data.images import decode_images, load_resized_stack  # noqa: E402
from dlcv.data.p2 import find_images  # noqa: E402
from dlcv.files import list_images  # noqa: E402
from dlcv.runtime import cpu_computes_bf16_fast, inference_device, resolve_precision  # noqa: E402
from dlcv.segment import load_segmenter, predict_classes  # noqa: E402


def timed(rounds: int, work) -> tuple[float, np.ndarray]:
    """The fastest of ``rounds`` calls of ``work`` and its result."""
    best, out = float("inf"), None
    for _ in range(rounds):
        start = time.perf_counter()
        out = work()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--p1", type=Path)
    parser.add_argument("--seg", type=Path)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "hw1_data")
    parser.add_argument("--tiles", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    header()
    device = inference_device()
    if args.p1:
        model, recipe = load_classifier(args.p1)
        images = np.asarray(load_resized_stack(list_images(args.data / "p1_data" / "val_50"), recipe.data.image_size,
                                               use_cache=False))  # at data.image_size, as the run read its images
        print(f"p1: {recipe.model.name} {recipe.model.args.get('arch', '')}, trained in {recipe.train.precision} "
              f"(on this machine: {resolve_precision(recipe.train.precision, device.type)}), tta {recipe.train.tta}; "
              f"bf16 units here: {cpu_computes_bf16_fast()}")
        report("p1", len(images), "images", args.rounds,
               lambda autocast: predict_scores(model, images, recipe, autocast=autocast).argmax(1).numpy())
    if args.seg:
        model, recipe = load_segmenter(args.seg)
        tiles = decode_images(find_images(args.data / "p2_data" / "validation").images[: args.tiles])
        print(f"seg: {recipe.model.name}, trained in {recipe.train.precision}, eval size {recipe.data.eval_size}, "
              f"tta {recipe.train.tta}")
        report("seg", len(tiles), "tiles", args.rounds, lambda autocast: np.concatenate(
            [c for _, c in predict_classes(model, tiles, recipe, autocast=autocast)]))


def report(name: str, count: int, what: str, rounds: int, predict) -> None:
    """Time ``predict(autocast)`` both ways, interleaved round by round, and compare the results."""
    times = {False: [], True: []}
    results = {}
    for _ in range(rounds):
        for autocast in (False, True):
            seconds, results[autocast] = timed(1, lambda: predict(autocast))
            times[autocast].append(seconds)
    differ = int((results[False] != results[True]).sum())
    size = results[False].size
    print(f"{name}: {count} {what}: float32 {min(times[False]):.2f} s, autocast {min(times[True]):.2f} s "
          f"({min(times[False]) / min(times[True]):.2f}x); {differ:,} of {size:,} "
          f"{'labels' if name == 'p1' else 'pixels'} differ")


if __name__ == "__main__":
    main()
