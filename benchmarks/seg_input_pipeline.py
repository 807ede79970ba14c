"""Segmentation input pipeline benchmark (issue 5): dlcv's decode-once pipeline (uint8 crops cut from
the cached tiles, image and mask together, converted to float only at the training size) against
the common way: a PIL-per-sample Dataset decoding the JPEG and the PNG mask and augmenting both
with torchvision.transforms.v2 on the PIL images (random scaled crop, flip, 90-degree turn, resize),
then ToImage / ToDtype / Normalize, in a 2-worker DataLoader.

  (a) ready batches per second with no model;
  (b) training images per second with the CPU recipe's model, against that model's own limit
      (one fixed batch reused, no data work), the same training step for all three.

Usage: python benchmarks/seg_input_pipeline.py [--data ../shared/data/hw1_data/p2_data] [--recipe configs/seg/cpu.yaml]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from dlcv.config import load_recipe
from dlcv.data.augment import to_float
from dlcv.data.masks import MaskCodec
from dlcv.data.p2 import find_pairs, load_pairs
from dlcv.data.seg_batches import SegmentationBatches
from dlcv.recipes import segment_defaults
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
    low, high = cfg["scale"]
    transform = v2.Compose([
        v2.RandomResizedCrop(int(cfg["train_size"]), scale=(low**2, high**2), ratio=(1.0, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomChoice([v2.RandomRotation((a, a)) for a in (0, 90, 180, 270)]),
        v2.ToImage(),
        v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
        v2.Normalize(cfg["mean"], cfg["std"]),
    ])
    return DataLoader(PilPairs(pairs, transform, MaskCodec(cfg["unmapped"])), batch_size=batch_size, shuffle=True,
                      drop_last=True, num_workers=2)


def ours(images, masks, cfg, batch_size, epoch=0):
    """What the training step receives: the batches as made, then as ``on_after_batch_transfer`` finishes them."""
    batches = SegmentationBatches(images, masks, batch_size, cfg, shuffle=True, drop_last=True, seed=0)
    batches.set_epoch(epoch)
    for x, y in batches:
        yield to_float(x, cfg["mean"], cfg["std"]), y.long()


def time_batches(feed, limit, warmup=3):
    """Ready batches per second over ``limit`` batches, after ``warmup`` (workers started, pools warm)."""
    it = iter(feed())
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    for _ in range(limit):
        next(it)
    rate = limit / (time.perf_counter() - start)
    # End the feed before the next one is timed: a DataLoader iterator joins its workers when the last
    # reference goes, which would otherwise go on prefetching on the same 2 cores.
    del it
    gc.collect()
    return rate


def train_rate(step, feed, steps, warmup=1):
    it = iter(feed())
    for _ in range(warmup):
        step(*next(it))
    start, n = time.perf_counter(), 0
    for _ in range(steps):
        x, y = next(it)
        step(x, y)
        n += len(y)
    rate = n / (time.perf_counter() - start)
    del it  # as in time_batches: the workers are joined before the next feed is timed
    gc.collect()
    return rate


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/hw1_data/p2_data"))
    parser.add_argument("--recipe", default=str(REPO / "configs/seg/cpu.yaml"))
    parser.add_argument("--batches", type=int, default=100, help="batches per (a) measurement")
    parser.add_argument("--steps", type=int, default=10, help="training steps per (b) measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported")
    args = parser.parse_args()
    recipe = load_recipe(segment_defaults(), args.recipe)
    cfg, batch = recipe["data"], int(recipe["data"]["batch_size"])
    pairs = find_pairs(Path(args.data) / cfg["train"])
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}; {len(pairs)} pairs, batch {batch}, crops to {cfg['train_size']}px")
    start = time.perf_counter()
    images, masks = load_pairs(pairs, MaskCodec(cfg["unmapped"]))
    images, masks = torch.from_numpy(np.array(images)), torch.from_numpy(np.array(masks))
    print(f"load from the memory-mapped caches: {time.perf_counter() - start:.1f} s")

    ref = reference_loader(pairs, cfg, batch)
    feeds_a = {"dlcv": lambda: ours(images, masks, cfg, batch), "reference": lambda: ref}
    rates_a = {name: [] for name in feeds_a}
    for _ in range(args.rounds):
        for name, feed in feeds_a.items():
            rates_a[name].append(time_batches(feed, args.batches))
    ours_a, ref_a = (float(np.median(rates_a[n])) for n in ("dlcv", "reference"))
    print(f"(a) ready batches/s, no model: dlcv {ours_a:.1f}  reference {ref_a:.2f}  ratio {ours_a / ref_a:.1f}x "
          f"(target >= 10x)")

    def make_step():
        torch.manual_seed(0)
        task = SegmentationTask(recipe).train()
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
    rates = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            rates[name].append(train_rate(step, feeds[name], args.steps))
    limit, ours_b, ref_b = (float(np.median(rates[n])) for n in ("limit", "dlcv", "reference"))
    print(f"(b) training images/s with {recipe['model']['name']}: limit (fixed batch) {limit:.1f}  "
          f"dlcv {ours_b:.1f} ({ours_b / limit:.1%} of limit, target >= 95%)  reference {ref_b:.1f} ({ref_b / limit:.1%})")


if __name__ == "__main__":
    main()
