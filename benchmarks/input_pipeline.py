"""Input pipeline benchmark (issue 2): dlcv's decode-once, batched-on-device pipeline against the
common way (a PIL-per-sample Dataset with torchvision transforms and a 2-worker DataLoader).

  (a) ready batches per second with no model, over one epoch of the training folder;
  (b) training images per second with the CPU recipe's model, against that model's own limit
      (one fixed batch reused, no data work at all), the same training step for all three.

Usage: python benchmarks/input_pipeline.py [--data ../shared/data/hw1_data/p1_data]
       [--recipe configs/p1/model_a_cpu.yaml]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from machine import header
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from dlcv.config import load_recipe
from dlcv.data.augment import prepare_batch
from dlcv.data.batches import TensorBatches
from dlcv.data.images import load_image_stack
from dlcv.data.p1 import label_from_filename
from dlcv.files import list_images
from dlcv.models import create_model
from dlcv.recipes import ClassifyRecipe
from dlcv.runtime import resolve_precision

REPO = Path(__file__).resolve().parents[1]


class PilFolder(Dataset):
    """The common way: open, decode and transform one PIL image per sample."""

    def __init__(self, files, transform):
        self.files, self.transform = files, transform

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        with Image.open(self.files[i]) as im:
            return self.transform(im.convert("RGB")), label_from_filename(self.files[i])


def reference_loader(files, cfg, batch_size):
    transform = transforms.Compose([
        transforms.RandomCrop(32, padding=cfg.crop_padding, padding_mode="reflect"),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(cfg.mean, cfg.std),
    ])
    return DataLoader(PilFolder(files, transform), batch_size=batch_size, shuffle=True, drop_last=True,
                      num_workers=2, persistent_workers=True)


def ours(images, labels, cfg, batch_size, epoch=0):
    batches = TensorBatches(images, labels, batch_size, shuffle=True, drop_last=True, seed=0)
    batches.set_epoch(epoch)
    for x, y in batches:
        yield prepare_batch(x, cfg, train=True), y


def time_batches(iterable, limit=None):
    start, n = time.perf_counter(), 0
    for i, (x, y) in enumerate(iterable):
        n += len(y)
        if limit and i + 1 >= limit:
            break
    return n, time.perf_counter() - start


def make_step(model, precision):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    bf16 = precision.startswith("bf16")

    def step(x, y):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def train_rate(step, batches, steps, warmup=2):
    it = iter(batches)
    for _ in range(warmup):
        step(*next(it))
    start, n = time.perf_counter(), 0
    for _ in range(steps):
        x, y = next(it)
        step(x, y)
        n += len(y)
    return n / (time.perf_counter() - start)


def main():
    header()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/hw1_data/p1_data"))
    parser.add_argument("--recipe", default=str(REPO / "configs/p1/model_a_cpu.yaml"))
    parser.add_argument("--steps", type=int, default=12, help="training steps per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported")
    args = parser.parse_args()
    recipe = load_recipe(ClassifyRecipe, args.recipe)
    cfg, batch = recipe.data, recipe.data.batch_size
    precision = resolve_precision(str(recipe.train.precision), "cpu")
    files = list_images(Path(args.data) / cfg.train)
    labels = torch.tensor([label_from_filename(f) for f in files])
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; {len(files)} images, batch {batch}, "
          f"precision {precision}")

    start = time.perf_counter()
    load_image_stack(files, use_cache=False)
    print(f"decode once (no cache): {time.perf_counter() - start:.1f} s")
    load_image_stack(files)  # make sure the cache exists
    start = time.perf_counter()
    images = torch.from_numpy(load_image_stack(files).copy())
    print(f"load from the memory-mapped cache: {time.perf_counter() - start:.2f} s")

    # (a) ready batches, no model: one full epoch each.
    ref = reference_loader(files, cfg, batch)
    time_batches(ref, limit=3)  # start the workers
    n, t = time_batches(ref)
    ref_rate = n / t / batch
    n, t = time_batches(ours(images, labels, cfg, batch))
    our_rate = n / t / batch
    print(f"(a) ready batches/s, no model: dlcv {our_rate:.1f}  reference {ref_rate:.1f}  "
          f"ratio {our_rate / ref_rate:.1f}x (target >= 10x)")

    # (b) training with the recipe's model, one identical step function for all three.
    def fresh_model():
        torch.manual_seed(0)
        model = create_model(recipe.model.name, num_classes=int(labels.max()) + 1, **recipe.model.args)
        return model.to(memory_format=torch.channels_last).train()

    # Alternate the three feeds in rounds on one model each and take each feed's median, so that
    # a slow spell of the machine does not land on one of them only.
    fixed_x, fixed_y = next(ours(images, labels, cfg, batch))
    steps = {name: make_step(fresh_model(), precision) for name in ("limit", "dlcv", "reference")}
    feeds = {
        "limit": lambda: iter(lambda: (fixed_x, fixed_y), None),
        "dlcv": lambda: ours(images, labels, cfg, batch, epoch=1),
        "reference": lambda: iter(ref),
    }
    rates = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            rates[name].append(train_rate(step, feeds[name](), args.steps))
    limit, ours_rate, ref_train = (float(np.median(rates[n])) for n in ("limit", "dlcv", "reference"))
    print(f"(b) training images/s with {recipe.model.name}: limit (fixed batch) {limit:.0f}  "
          f"dlcv {ours_rate:.0f} ({ours_rate / limit:.1%} of limit, target >= 95%)  "
          f"reference {ref_train:.0f} ({ref_train / limit:.1%})")


if __name__ == "__main__":
    main()
