"""Segmentation input pipeline benchmark (issue 5): dlcv's decode-once pipeline (uint8 crops cut from
the cached tiles, image and mask together, converted to float only at the training size) against
the common way: a PIL-per-sample Dataset decoding the JPEG and the PNG mask and augmenting both
with torchvision.transforms.v2 on the PIL images (random scaled crop, flip, 90-degree turn, resize),
then ToImage / ToDtype / Normalize, in a 2-worker DataLoader.

  (a) ready batches per second with no model;
  (b) training images per second with the CPU recipe's model, against that model's own limit
      (one fixed batch reused, no data work), the same training step for all three.

Both are timed in interleaved rounds (each round times every feed once, in turn) and reported as
the rate over all rounds, with the spread of the per-round ratios: this machine's speed drifts by up to
a third within an hour, more than the differences measured. The process first takes the same malloc
settings as `dlcv segment fit` (``dlcv.runtime.retain_freed_memory``); the reference's workers,
forked later, inherit them.

Usage: python benchmarks/seg_input_pipeline.py [--data ../shared/data/hw1_data/p2_data] [--recipe configs/seg/cpu.yaml]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import time
from pathlib import Path

import numpy as np
import torch
from machine import header
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from dlcv.config import load_recipe
from dlcv.data.masks import MaskCodec
from dlcv.data.p2 import find_pairs, load_pairs
from dlcv.data.seg_batches import SegmentationBatches
from dlcv.recipes import SegmentRecipe
from dlcv.runtime import retain_freed_memory
from dlcv.tasks.segmentation import SegmentationTask

REPO = Path(__file__).resolve().parents[1]


class PilPairs(Dataset):
    """The common way: decode one JPEG and one PNG mask per sample, transform both together."""

    def __init__(self, pairs, transform, codec):
        self.pairs, self.transform, self.codec = pairs, transform, codec

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        with Image.open(self.pairs.images[i]) as im:
            image = im.convert("RGB")
        with Image.open(self.pairs.masks[i]) as im:
            mask = tv_tensors.Mask(torch.from_numpy(self.codec.decode(np.asarray(im.convert("RGB")))))
        image, mask = self.transform(image, mask)
        return image, mask.long()


def reference_loader(pairs, cfg, batch_size):
    low, high = cfg.scale
    transform = v2.Compose([
        v2.RandomResizedCrop(cfg.train_size, scale=(low**2, high**2), ratio=(1.0, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomChoice([v2.RandomRotation((a, a)) for a in (0, 90, 180, 270)]),
        v2.ToImage(),
        v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
        v2.Normalize(cfg.mean, cfg.std),
    ])
    return DataLoader(PilPairs(pairs, transform, MaskCodec(cfg.unmapped)), batch_size=batch_size, shuffle=True,
                      drop_last=True, num_workers=2)


def ours(images, masks, cfg, batch_size, epoch=0):
    """What the training step receives on the CPU: the batches as ``SegmentationData`` makes them for a CPU
    trainer (finished on the workers: normalised float planes, int64 masks), epoch after epoch."""
    batches = SegmentationBatches(images, masks, batch_size, cfg, normalize=(cfg.mean, cfg.std), shuffle=True,
                                  drop_last=True, seed=0)
    for e in itertools.count(epoch):
        batches.set_epoch(e)
        yield from batches


def time_batches(feed, limit, warmup=3):
    """``(batches, seconds)`` for ``limit`` ready batches, after ``warmup`` (workers started, pools warm)."""
    it = iter(feed())
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    for _ in range(limit):
        next(it)
    seconds = time.perf_counter() - start
    # End the feed before the next one is timed: a DataLoader iterator joins its workers when the last
    # reference goes, which would otherwise go on prefetching on the same 2 cores.
    del it
    gc.collect()
    return limit, seconds


def train_time(step, feed, steps, warmup=1):
    """``(images, seconds)`` for ``steps`` training steps fed by ``feed``, after ``warmup`` steps."""
    it = iter(feed())
    for _ in range(warmup):
        step(*next(it))
    start, n = time.perf_counter(), 0
    for _ in range(steps):
        x, y = next(it)
        step(x, y)
        n += len(y)
    seconds = time.perf_counter() - start
    del it  # as in time_batches: the workers are joined before the next feed is timed
    gc.collect()
    return n, seconds


def interleaved(measure, names, rounds):
    """Each round measures every name once, in turn, so a drift of the machine's speed (a third within
    an hour on this 2-core machine) falls on all of them alike. Returns per name the rate over all
    rounds and the per-round rates."""
    done = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            done[name].append(measure(name))
    total = {name: sum(n for n, _ in runs) / sum(t for _, t in runs) for name, runs in done.items()}
    per_round = {name: [n / t for n, t in runs] for name, runs in done.items()}
    return total, per_round


def spread(ours, theirs):
    ratios = [a / b for a, b in zip(ours, theirs)]
    return f"per round {min(ratios):.2f}-{max(ratios):.2f}"


def main():
    header()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/hw1_data/p2_data"))
    parser.add_argument("--recipe", default=str(REPO / "configs/seg/cpu.yaml"))
    parser.add_argument("--batches", type=int, default=100, help="batches per (a) measurement")
    parser.add_argument("--rounds", type=int, default=5, help="(a): rounds, each timing dlcv and the reference in turn")
    parser.add_argument("--steps", type=int, default=4, help="training steps per (b) measurement")
    parser.add_argument("--train-rounds", type=int, default=6,
                        help="(b): rounds, each timing the limit, dlcv and the reference in turn")
    args = parser.parse_args()
    recipe = load_recipe(SegmentRecipe, args.recipe)
    retain_freed_memory()  # as `dlcv segment fit` does; the reference's workers, forked later, inherit it
    cfg, batch = recipe.data, recipe.data.batch_size
    pairs = find_pairs(Path(args.data) / cfg.train)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; {len(pairs)} pairs, batch {batch}, "
          f"crops to {cfg.train_size}px")
    start = time.perf_counter()
    images, masks = load_pairs(pairs, MaskCodec(cfg.unmapped))
    images, masks = torch.from_numpy(np.array(images)), torch.from_numpy(np.array(masks))
    print(f"load from the memory-mapped caches: {time.perf_counter() - start:.1f} s")

    ref = reference_loader(pairs, cfg, batch)
    feeds_a = {"dlcv": lambda: ours(images, masks, cfg, batch), "reference": lambda: ref}
    rate_a, rounds_a = interleaved(lambda name: time_batches(feeds_a[name], args.batches), feeds_a, args.rounds)
    ours_a, ref_a = rate_a["dlcv"], rate_a["reference"]
    print(f"(a) ready batches/s, no model: dlcv {ours_a:.1f}  reference {ref_a:.2f}  ratio {ours_a / ref_a:.1f}x "
          f"(target >= 10x; {args.rounds} rounds of {args.batches} batches, "
          f"{spread(rounds_a['dlcv'], rounds_a['reference'])})", flush=True)

    def make_step():
        torch.manual_seed(0)
        task = SegmentationTask.from_recipe(recipe).train()
        model = task.model
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4)

        def step(x, y):
            loss = task.criterion(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step

    fixed = next(ours(images, masks, cfg, batch))
    steps = {name: make_step() for name in ("limit", "dlcv", "reference")}
    feeds = {"limit": lambda: iter(lambda: fixed, None), "dlcv": lambda: ours(images, masks, cfg, batch, epoch=1),
             "reference": lambda: ref}
    rate_b, rounds_b = interleaved(lambda name: train_time(steps[name], feeds[name], args.steps), steps,
                                   args.train_rounds)
    limit, ours_b, ref_b = rate_b["limit"], rate_b["dlcv"], rate_b["reference"]
    print(f"(b) training images/s with {recipe.model.name}: limit (fixed batch) {limit:.1f}  "
          f"dlcv {ours_b:.1f} ({ours_b / limit:.1%} of limit, target >= 95%; "
          f"{spread(rounds_b['dlcv'], rounds_b['limit'])})  reference {ref_b:.1f} ({ref_b / limit:.1%}; "
          f"{spread(rounds_b['reference'], rounds_b['limit'])}); {args.train_rounds} rounds of {args.steps} steps")


if __name__ == "__main__":
    main()
