"""Segmentation prediction at several batch sizes: the same masks, and the seconds each takes.

A segmentation checkpoint predicts the first ``--tiles`` validation tiles through ``dlcv.segment.predict_classes``
(what ``dlcv segment predict`` and the hand-in's reference run: the recipe's evaluation size and test-time
augmentation) at each batch size, in rounds (fastest of ``--rounds`` kept); the masks must be equal at every batch.
On a CPU a smaller batch can be faster (the activations of a large one leave the caches).

Usage (nothing else running): python benchmarks/seg_predict_batch.py RUN/best.ckpt ../shared/data/hw1_data/p2_data
       [--tiles 32] [--batches 1,2,4,8,16] [--rounds 2]
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

from dlcv.data.images import decode_images
from dlcv.data.p2 import find_images
from dlcv.segment import load_segmenter, predict_classes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("data", type=Path, help="p2_data (its validation/ is read)")
    parser.add_argument("--tiles", type=int, default=32)
    parser.add_argument("--batches", default="1,2,4,8,16")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    header()
    model, recipe = load_segmenter(args.checkpoint)
    images = decode_images(find_images(args.data / "validation").images[: args.tiles])
    batches = [int(b) for b in args.batches.split(",")]
    print(f"{len(images)} tiles, eval size {recipe.data.eval_size}, tta {recipe.train.tta}, the recipe's batch "
          f"{recipe.data.eval_batch_size}")
    seconds, reference = {b: [] for b in batches}, None
    for _ in range(args.rounds):
        for batch in batches:
            start = time.perf_counter()
            masks = np.concatenate([c for _, c in predict_classes(model, images, recipe, batch_size=batch)])
            seconds[batch].append(time.perf_counter() - start)
            reference = masks if reference is None else reference
            if not np.array_equal(masks, reference):
                raise SystemExit(f"batch {batch}: the masks differ from batch {batches[0]}'s")
    for batch in batches:
        print(f"batch {batch:3d}: {min(seconds[batch]):6.2f} s (fastest of {args.rounds}); masks equal")


if __name__ == "__main__":
    main()
