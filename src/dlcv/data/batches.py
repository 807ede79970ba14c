"""Batches straight from in-memory uint8 tensors, and the classification data module.

No ``Dataset``/``DataLoader`` workers: the images were decoded once (``images.load_image_stack``),
so a batch is one index into a tensor. Normalisation and augmentation run after the batch reaches
the training device, batched (``on_after_batch_transfer``).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import lightning as L
import numpy as np
import torch

from dlcv.data.augment import prepare_batch
from dlcv.data.features import TRAINING_SUBSET
from dlcv.data.images import load_resized_stack
from dlcv.data.p1 import (
    LabelledImages,
    check_class_count,
    read_image_folder,
    stratified_holdout,
)
from dlcv.errors import DlcvError


def in_model_dtype(hook):
    """Wrap a data module's ``on_after_batch_transfer`` so that its float batch reaches the model in the
    dtype the trainer's precision feeds it. Lightning converts a batch before that hook, while ours are
    still uint8, so a ``bf16-true`` or ``16-true`` model would otherwise get float32 (and fail)."""

    @functools.wraps(hook)
    def wrapped(self, batch, dataloader_idx: int):
        out = hook(self, batch, dataloader_idx)
        trainer = getattr(self, "trainer", None)
        return trainer.precision_plugin.convert_input(out) if trainer is not None else out

    return wrapped


class TensorBatches:
    """An iterable of ``(images, labels)`` batches over in-memory tensors.

    Shuffling is a function of ``(seed, epoch)``, so a run is reproducible and a resumed run sees
    the same order. With ``world_size > 1`` each process takes every ``world_size``-th sample.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, shuffle: bool = False,
                 drop_last: bool = False, seed: int = 0, rank: int = 0, world_size: int = 1, epoch_fn=None):
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0
        self.epoch_fn = epoch_fn  # e.g. the trainer's current epoch: right after a resume too

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self, epoch: int | None = None) -> torch.Tensor:
        n = len(self.labels)
        if self.shuffle:
            seed = self.seed * 100_003 + (self.epoch if epoch is None else epoch)
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        else:
            order = torch.arange(n)
        return order[self.rank :: self.world_size]

    def __len__(self) -> int:
        n = len(self._indices())
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _next_epoch(self) -> int:
        """The epoch of the pass that starts now; counted on at the start, not the end, of a pass,
        because a trainer that knows the length stops asking once it has every batch (so code after
        the last ``yield`` never runs)."""
        if self.epoch_fn is not None:
            self.epoch = int(self.epoch_fn())
        epoch = self.epoch
        if self.shuffle:
            self.epoch += 1
        return epoch

    def __iter__(self):
        epoch = self._next_epoch()
        order = self._indices(epoch)
        for i in range(len(self)):
            index = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield self.images[index], self.labels[index]


def _as_tensor(images: np.ndarray) -> torch.Tensor:
    # One copy out of the memory map into RAM: batches then index plain memory.
    return torch.from_numpy(np.array(images, copy=True))


def load_labelled(images: LabelledImages, use_cache: bool, side: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The images (resized to ``side`` when given) and their labels as tensors."""
    array = load_resized_stack(images.files, side, use_cache=use_cache)
    return _as_tensor(array), torch.from_numpy(images.labels)


class ClassificationData(L.LightningDataModule):
    """Problem 1's data for training: ``root/train`` split or paired with ``root/validation``.

    With ``holdout > 0`` a stratified share of the training folder is the validation set used for
    checkpoint selection, and the validation folder (if present) is only evaluated at the end.
    """

    def __init__(self, root: str | os.PathLike, cfg: dict, seed: int):
        super().__init__()
        self.root, self.cfg, self.seed = Path(root), cfg, seed
        self.num_classes: int | None = None

    def _folder(self, key: str) -> Path:
        return self.root / self.cfg[key]

    def prepare(self) -> None:
        """Read, check and decode everything once (also usable without a Trainer)."""
        if self.num_classes is not None:
            return
        cfg = self.cfg
        if not self.root.is_dir():
            raise DlcvError(f"{self.root}: no such data folder")
        train = read_image_folder(self._folder("train"), self._optional_csv("train_labels"))
        val_folder = self._folder("validation") if cfg["validation"] else None
        holdout = float(cfg["holdout"])
        if holdout <= 0 and (val_folder is None or not val_folder.is_dir()):
            raise DlcvError(f"{val_folder or self.root}: no validation folder, and the recipe keeps no "
                            "holdout share of train (data.holdout)")
        other = read_image_folder(val_folder, self._optional_csv("validation_labels")) \
            if val_folder is not None and val_folder.is_dir() else None
        self.num_classes = int(cfg["num_classes"] or check_class_count(train.labels, self._folder("train")))
        if train.labels.max() >= self.num_classes:
            bad = train.files[int(np.argmax(train.labels))]
            raise DlcvError(f"{bad}: label {int(train.labels.max())} is not below data.num_classes {self.num_classes}")
        if other is not None and other.labels.max() >= self.num_classes:
            bad = other.files[int(np.argmax(other.labels))]
            raise DlcvError(f"{bad}: label {int(other.labels.max())} is not among the "
                            f"{self.num_classes} training classes")
        use_cache = bool(cfg["cache"])
        side = cfg.get("image_size")
        # The whole training folder is decoded once (one cache file) and split in memory.
        train_x, train_y = load_labelled(train, use_cache, side)
        self.final = None
        if holdout > 0:
            train_idx, hold_idx = stratified_holdout(train.labels, holdout, self.seed)
            self.train_x, self.train_y = train_x[train_idx], train_y[train_idx]
            self.train_names = [train.files[i].name for i in train_idx]
            self.val_x, self.val_y = train_x[hold_idx], train_y[hold_idx]
            self.val_names = [train.files[i].name for i in hold_idx]
            if other is not None:
                self.final = (*load_labelled(other, use_cache, side), other.names, str(val_folder))
        else:
            self.train_x, self.train_y = train_x, train_y
            self.train_names = train.names
            self.val_x, self.val_y = load_labelled(other, use_cache, side)
            self.val_names = other.names

    def embedding_sets(self, train_subset: int = 0) -> dict[str, tuple]:
        """Image sets for embedding snapshots: the validation folder (or, without one, the validation
        set), and with ``train_subset`` a fixed, class-balanced sample of that many training images."""
        if self.final is not None:
            images, labels, names, _ = self.final
            sets = {"": (images, labels.numpy(), names)}
        else:
            sets = {"": (self.val_x, self.val_y.numpy(), self.val_names)}
        if train_subset > 0:
            fraction = min(train_subset / len(self.train_y), 0.999)
            _, pick = stratified_holdout(self.train_y.numpy(), fraction, self.seed + 1)
            names = [self.train_names[i] for i in pick]
            sets[TRAINING_SUBSET] = (self.train_x[pick], self.train_y[pick].numpy(), names)
        return sets

    def _optional_csv(self, key: str) -> Path | None:
        return self.root / self.cfg[key] if self.cfg.get(key) else None

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def train_dataloader(self) -> TensorBatches:
        rank, world = self._rank_world()
        trainer = getattr(self, "trainer", None)
        return TensorBatches(self.train_x, self.train_y, int(self.cfg["batch_size"]), shuffle=True,
                             drop_last=len(self.train_y) // world >= int(self.cfg["batch_size"]),
                             seed=self.seed, rank=rank, world_size=world,
                             epoch_fn=(lambda: trainer.current_epoch) if trainer is not None else None)

    def val_dataloader(self) -> TensorBatches:
        rank, world = self._rank_world()
        return TensorBatches(self.val_x, self.val_y, int(self.cfg["eval_batch_size"]), rank=rank, world_size=world)

    @in_model_dtype
    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        training = getattr(self, "trainer", None) is not None and self.trainer.training
        x = prepare_batch(images, self.cfg, train=training)
        if training and (float(self.cfg.get("mixup_alpha", 0)) > 0 or float(self.cfg.get("cutmix_alpha", 0)) > 0):
            from dlcv.data.policies import mix

            return mix(x, labels, self.num_classes, float(self.cfg["mixup_alpha"]), float(self.cfg["cutmix_alpha"]))
        return x, labels
