"""kNN accuracy of BYOL trunks on the transfer split: the untrained trunk (two ways) and any backbone files.

Two monitors, 20-NN cosine as in ``dlcv ssl pretrain``: ``office`` (val of classes 25-49 against a
class-balanced bank of their train images: the transfer the table is about, and the run's own monitor) and
``in-domain`` (``supervised/val_50`` against ``supervised/train_50``: the 25 classes the unlabelled
``mini/train`` images come from). Three kinds of trunk:

  - ``untrained, unit BN``: the recipe's seeded trunk with batch norm's initial statistics (mean 0, variance
    1: no normalisation), what an evaluation-mode forward of a fresh model computes;
  - ``untrained, calibrated BN``: the same weights with batch-norm statistics estimated on the pre-training
    images (``dlcv.tasks.byol.calibrate_batch_norm``), the network epoch 1 starts from and what
    ``dlcv ssl pretrain`` reports as epoch 0;
  - each ``--backbone NAME=FILE`` (a torchvision ResNet state_dict, e.g. a run's ``backbone.pt``).

Usage: python benchmarks/ssl_knn_at_init.py [--recipe configs/ssl/byol_cpu.yaml]
       [--split /tmp/dlcv_transfer_split] [--backbone byol=RUN/byol/backbone.pt ...]
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import lightning as L
import numpy as np
import torch
from machine import header

from dlcv.config import load_recipe
from dlcv.data.augment import model_input
from dlcv.data.images import load_resized_stack
from dlcv.data.office import monitor_sets
from dlcv.files import list_images
from dlcv.models.transfer import load_backbone
from dlcv.recipes import ByolRecipe
from dlcv.tasks.byol import (
    BYOLTask,
    calibrate_batch_norm,
    evenly_spaced,
    monitor_knn,
    trunk_features,
)


def main() -> None:
    header()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="configs/ssl/byol_cpu.yaml")
    parser.add_argument("--split", default="/tmp/dlcv_transfer_split")
    parser.add_argument("--backbone", action="append", default=[], metavar="NAME=FILE")
    args = parser.parse_args()
    recipe = load_recipe(ByolRecipe, args.recipe)
    split, side, seed = Path(args.split), recipe.data.image_size, recipe.seed
    k, bank = recipe.monitor.k, recipe.monitor.max_bank
    batch = recipe.data.eval_batch_size

    def prepare(x):
        return model_input(x, recipe.data.mean, recipe.data.std, recipe.views.size)

    monitors = {}
    for name, folder in (("office", split / "office"), ("in-domain", split / "supervised")):
        if folder.is_dir():
            x, rows = monitor_sets(folder, side, bank, seed)
            monitors[name] = (x, rows.numpy())

    L.seed_everything(seed, workers=True, verbose=False)  # as dlcv ssl pretrain seeds before building
    untrained = BYOLTask.from_recipe(recipe).backbone
    calibrated = copy.deepcopy(untrained)
    pretraining = torch.from_numpy(np.array(load_resized_stack(list_images(split / "mini" / "train"), side)))
    calibrate_batch_norm(calibrated, evenly_spaced(pretraining, 2048), prepare, batch)
    trunks = {"untrained, unit BN": untrained, "untrained, calibrated BN": calibrated}
    for spec in args.backbone:
        name, _, path = spec.partition("=")
        trunks[name] = load_backbone(path, recipe.model.arch)

    print(f"| trunk | {' | '.join(monitors)} |\n|---|{'---|' * len(monitors)}")
    for name, trunk in trunks.items():
        scores = [monitor_knn(trunk_features(trunk, images, prepare, batch), labels, k)
                  for images, labels in monitors.values()]
        print(f"| {name} | {' | '.join(f'{s:.4f}' for s in scores)} |", flush=True)


if __name__ == "__main__":
    main()
