"""Segmentation batches: image and mask augmented together, batched, after the batch reaches the device.

The pairs are decoded once into uint8 stacks (memory-mapped caches, ``p2.load_pairs``), so a batch
is one index into two tensors. Augmentation is one affine per sample (a random scaled crop, a
horizontal flip and a 90-degree rotation, composed) applied with ``grid_sample``: bilinear for the
image, nearest for the mask, so both move exactly together and come out at the training size.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from dlcv.data.augment import to_float
from dlcv.data.batches import TensorBatches
from dlcv.data.masks import MaskCodec
from dlcv.data.p2 import SatelliteSet, find_pairs, load_pairs
from dlcv.errors import DlcvError


def random_affines(batch: int, scale: tuple[float, float], flip: bool, rot90: bool,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """(batch, 2, 3) ``affine_grid`` matrices: output coordinates -> input coordinates in [-1, 1].

    A crop of side ``s`` (a fraction of the image side, log-uniform in ``scale``) at a uniform
    position, flipped left-right with probability 1/2 and turned by a random multiple of 90 degrees.
    """
    lo, hi = math.log(scale[0]), math.log(scale[1])
    s = torch.exp(lo + (hi - lo) * torch.rand(batch, generator=generator))
    centre = (torch.rand(batch, 2, generator=generator) * 2 - 1) * (1 - s)[:, None]
    k = torch.randint(0, 4, (batch,), generator=generator) if rot90 else torch.zeros(batch, dtype=torch.long)
    angle = k.float() * (math.pi / 2)
    cos, sin = torch.cos(angle).round(), torch.sin(angle).round()
    mirror = torch.where(torch.rand(batch, generator=generator) < 0.5, -1.0, 1.0) if flip else torch.ones(batch)
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = s * cos * mirror, -s * sin
    theta[:, 1, 0], theta[:, 1, 1] = s * sin * mirror, s * cos
    theta[:, :, 2] = centre
    return theta


def augment_pair(x: torch.Tensor, masks: torch.Tensor, size: int, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float images (B, 3, H, W) and class masks (B, H, W) -> both at ``size`` x ``size`` under ``theta``."""
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, [x.shape[0], 1, size, size], align_corners=False)
    images = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    labels = F.grid_sample(masks[:, None].to(x.dtype), grid, mode="nearest", padding_mode="reflection",
                           align_corners=False)
    return images.contiguous(memory_format=torch.channels_last), labels[:, 0].round().long()


def model_input(images: torch.Tensor, cfg: dict) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> normalised float at the evaluation size (the whole image, resized)."""
    x = to_float(images, cfg["mean"], cfg["std"])
    size = cfg["eval_size"]
    if size and tuple(x.shape[-2:]) != (size, size):
        # Plain bilinear, as training's grid_sample reads pixels (no anti-aliasing in either).
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.contiguous(memory_format=torch.channels_last)


class SegmentationData(L.LightningDataModule):
    """Problem 2's data: ``root/train`` pairs, and ``root/validation`` or a holdout share of train.

    With ``holdout > 0`` a random share of the training pairs selects checkpoints, and the
    validation folder (if present) is scored once at the end, for no choice.
    """

    def __init__(self, root: str | os.PathLike, cfg: dict, seed: int):
        super().__init__()
        self.root, self.cfg, self.seed = Path(root), cfg, seed
        self.codec = MaskCodec(cfg["unmapped"])
        self.ready = False
        self.final: SatelliteSet | None = None

    def prepare(self) -> None:
        """Find, check and decode everything once (also usable without a Trainer)."""
        if self.ready:
            return
        cfg = self.cfg
        if not self.root.is_dir():
            raise DlcvError(f"{self.root}: no such data folder")
        train = find_pairs(self.root / cfg["train"])
        val_folder = self.root / cfg["validation"] if cfg["validation"] else None
        has_val = val_folder is not None and val_folder.is_dir()
        holdout = float(cfg["holdout"])
        if holdout <= 0 and not has_val:
            raise DlcvError(f"{val_folder or self.root}: no validation folder, and the recipe keeps no holdout "
                            "share of train (data.holdout)")
        use_cache = bool(cfg["cache"])
        images, masks = load_pairs(train, self.codec, use_cache)
        # One copy out of the memory maps into RAM: batches then index plain memory.
        images, masks = torch.from_numpy(np.array(images)), torch.from_numpy(np.array(masks))
        if holdout > 0:
            order = np.random.default_rng(self.seed).permutation(len(train))
            count = max(1, int(round(holdout * len(train))))
            if count >= len(train):
                raise DlcvError(f"data.holdout {holdout} leaves no training pairs of {len(train)}")
            hold, keep = np.sort(order[:count]), np.sort(order[count:])
            self.train_x, self.train_y = images[keep], masks[keep]
            self.val_x, self.val_y = images[hold], masks[hold]
            self.val_ids = [train.ids[i] for i in hold]
            self.val_set = SatelliteSet(self.val_ids, [train.images[i] for i in hold], [train.masks[i] for i in hold])
            self.final = find_pairs(val_folder) if has_val else None
        else:
            val = find_pairs(val_folder)
            self.train_x, self.train_y = images, masks
            vx, vy = load_pairs(val, self.codec, use_cache)
            self.val_x, self.val_y = torch.from_numpy(np.array(vx)), torch.from_numpy(np.array(vy))
            self.val_ids, self.val_set = val.ids, val
        self.ready = True

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (0, 1) if trainer is None else (trainer.global_rank, trainer.world_size)

    def train_dataloader(self) -> TensorBatches:
        rank, world = self._rank_world()
        batch = int(self.cfg["batch_size"])
        batches = TensorBatches(self.train_x, self.train_y, batch, shuffle=True,
                                drop_last=len(self.train_y) // world >= batch, seed=self.seed, rank=rank,
                                world_size=world)
        if getattr(self, "trainer", None) is not None:
            batches.set_epoch(self.trainer.current_epoch)
        return batches

    def val_dataloader(self) -> TensorBatches:
        rank, world = self._rank_world()
        return TensorBatches(self.val_x, self.val_y, int(self.cfg["eval_batch_size"]), rank=rank, world_size=world)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, masks = batch
        training = getattr(self, "trainer", None) is not None and self.trainer.training
        if not training:
            return model_input(images, self.cfg), masks.long()
        cfg = self.cfg
        theta = random_affines(len(images), tuple(cfg["scale"]), bool(cfg["flip"]), bool(cfg["rot90"]))
        return augment_pair(to_float(images, cfg["mean"], cfg["std"]), masks, int(cfg["train_size"]), theta)
