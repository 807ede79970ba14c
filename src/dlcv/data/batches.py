"""Batches indexed straight out of in-memory uint8 tensors, and the classification data module.

No ``DataLoader`` workers: images are decoded once, so a batch is one index into a tensor; normalisation and
augmentation run batched on the training device (``on_after_batch_transfer``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch

from dlcv.data.augment import prepare_batch, uses_policy
from dlcv.data.features import TRAINING_SUBSET
from dlcv.data.images import load_resized_stack
from dlcv.data.kinds import check_kind
from dlcv.data.p1 import LabelledImages, check_class_count, read_image_folder, stratified_holdout
from dlcv.errors import DlcvError
from dlcv.plan import Plan
from dlcv.rules import crop_padding_error
from dlcv.runtime import is_primary_process


class TensorBatches:
    """An iterable of ``(images, labels)`` batches over in-memory tensors.

    The shuffle is a function of ``(seed, epoch)``, so a resumed run sees the same order. Each of ``world_size``
    processes takes every ``world_size``-th sample. Training pads the order so that every process runs the same
    steps (else one would wait for gradients for ever); evaluation does not, so no sample counts twice.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, shuffle: bool = False,
                 drop_last: bool = False, seed: int = 0, rank: int = 0, world_size: int = 1, epoch_fn=None,
                 pad: bool = False):
        """Initialise the batches.

        Args:
            images: (N, ...) tensor indexed along its first dimension, e.g. (N, H, W, 3) uint8 images.
            labels: (N, ...) labels or class maps, indexed alike.
            batch_size: samples per batch.
            shuffle: a new order every epoch, drawn from ``(seed, epoch)``; False: the samples' order.
            drop_last: leave out a last batch smaller than ``batch_size``.
            seed: seeds the shuffle.
            rank: this process's index, 0 to ``world_size`` - 1.
            world_size: processes sharing the samples.
            epoch_fn: returns the current epoch at the start of each pass (e.g. the trainer's); None: passes
                are counted here.
            pad: wrap the order round to a multiple of ``world_size`` (training).
        """
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.rank, self.world_size, self.pad = seed, rank, world_size, pad
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
        if self.pad and n % self.world_size:
            total = -(-n // self.world_size) * self.world_size
            order = order.repeat(-(-total // n))[:total]  # wrapped round (more than once if n < world_size)
        return order[self.rank :: self.world_size]

    def __len__(self) -> int:
        n = len(self._indices())
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _next_epoch(self) -> int:
        """Return the epoch of the pass that starts now, and count the pass.

        Counted at the start: code after the last ``yield`` never runs when a trainer knows the length.
        """
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


BATCH_NORMS = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d, torch.nn.SyncBatchNorm)


def learned_batch_norm(model: torch.nn.Module) -> str | None:
    """Return the name of a batch-norm layer of ``model`` whose parameters train (or that has none), else None."""
    for name, module in model.named_modules():
        weights = list(module.parameters(recurse=False))
        if isinstance(module, BATCH_NORMS) and (not weights or any(w.requires_grad for w in weights)):
            return name
    return None


def padded_shard(n: int, world_size: int) -> int:
    """Return the samples of each process's training shard: ``n`` padded to a multiple of ``world_size``, split."""
    return -(-n // world_size)


@dataclass(frozen=True)
class Split:
    """An in-memory image set: the images, their labels or class maps, their names and their folder."""

    x: torch.Tensor  # (N, H, W, 3) uint8
    y: torch.Tensor  # (N,) int64 labels, or (N, H, W) uint8 class maps
    names: list[str]  # file names, or the ids of satellite pairs
    folder: Path

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index) -> Split:
        return Split(self.x[index], self.y[index], [self.names[i] for i in index], self.folder)


def load_labelled(images: LabelledImages, folder: Path, cfg) -> Split:
    """Decode labelled images into a ``Split`` in memory, resized to ``data.image_size`` when it is set.

    Args:
        images: the image files and their labels.
        folder: the folder the ``Split`` names.
        cfg: the recipe's ``data`` section (``image_size``, ``cache``).

    Raises:
        DlcvError: if an image cannot be decoded, the sizes differ, or the images do not fit in memory.
    """
    array = load_resized_stack(images.files, cfg.image_size, use_cache=cfg.cache)
    # One copy out of the memory map into RAM: batches then index plain memory.
    return Split(torch.from_numpy(np.array(array, copy=True)), torch.from_numpy(images.labels), images.names, folder)


def validation_folder(root: Path, cfg) -> Path | None:
    """Return the validation folder ``root/data.validation`` when it is a folder, else None.

    Args:
        root: the data folder (``--data``).
        cfg: the recipe's ``data`` section.

    Raises:
        DlcvError: if there is no validation folder and ``data.holdout`` is 0.
    """
    folder = root / cfg.validation if cfg.validation else None
    if folder is not None and folder.is_dir():
        return folder
    if cfg.holdout <= 0:
        raise DlcvError(f"{folder or root}: no validation folder, and the recipe keeps no holdout share of train "
                        "(data.holdout)")
    return None


class InMemoryData(L.LightningDataModule):
    """Base of dlcv's data modules: data decoded once into uint8 tensors and batched by indexing.

    ``prepare`` decodes; each batch is converted on the training device, in the model's dtype (``convert_batch``).
    """

    def __init__(self, cfg, seed: int, plan: Plan | None = None):
        """Initialise the data module.

        Args:
            cfg: the recipe's ``data`` section, saved as the data module's ``data`` hyper-parameter (a checkpoint's
                ``datamodule_hyper_parameters``).
            seed: seeds the holdout draw and the shuffles.
            plan: the run's plan (its planned epochs); None: an empty ``Plan``.
        """
        super().__init__()
        self.save_hyperparameters({"data": cfg.model_dump()})
        self.cfg, self.seed = cfg, seed
        self.plan = plan if plan is not None else Plan()  # the run's, for the epochs it plans
        self.train: Split | None = None
        self.val: Split | None = None
        self.final: Split | None = None  # scored once, at the end, when a holdout share of train validated

    def split(self, whole: Split, validation: Split | None, holdout: float, draw) -> None:
        """Set ``train``, ``val`` and ``final`` from the training set and the validation set.

        Args:
            whole: the whole training set.
            validation: the validation folder's set, or None.
            holdout: share of ``whole`` held out to validate, ``validation`` then being the final set, scored once
                at the end; 0: ``validation`` validates and there is no final set.
            draw: ``draw(holdout)`` returns the (kept, held) indices of ``whole``.

        Raises:
            DlcvError: if the holdout leaves no training images.
        """
        if holdout > 0:
            keep, held = draw(holdout)
            if len(keep) == 0:
                raise DlcvError(f"data.holdout {holdout} leaves no training images of the {len(whole)}; give a smaller "
                                "share")
            self.train, self.val, self.final = whole.subset(keep), whole.subset(held), validation
        else:
            self.train, self.val, self.final = whole, validation, None

    def prepare(self) -> None:
        """Read, check and decode everything once (also usable without a Trainer)."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    def describe(self) -> str:
        """Describe what the run trains on, for the run's first printed line."""
        raise NotImplementedError

    def resolved(self) -> dict:
        """Return what the data decides of the run (e.g. its class count), recorded in ``resolved.json``."""
        return {}

    def first_inputs(self, count: int) -> torch.Tensor:
        """Return the first ``count`` training images as the model takes them, unaugmented (alike in every process)."""
        return prepare_batch(self.train.x[:count], self.cfg)

    def test_tensors(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Return ``(images, labels)`` of the final set, scored once after fit; None when there is none."""
        return None if self.final is None else (self.final.x, self.final.y)

    def counts(self) -> tuple[int, int, int]:
        """Return the number of training, validation and final images (or pairs); 0 for a set that is absent."""
        tensors = self.test_tensors()
        return len(self.train), len(self.val), 0 if tensors is None else len(tensors[1])

    def steps_per_epoch(self, world_size: int) -> int:
        """Return the training steps of one epoch in each of ``world_size`` processes (at least 1)."""
        return max(1, padded_shard(self.counts()[0], world_size) // self.cfg.batch_size)

    def rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (0, 1) if trainer is None else (trainer.global_rank, trainer.world_size)

    def training_folder(self) -> Path:
        """The folder the training images come from, for messages."""
        return self.train.folder

    def check_batch_norm(self, images: int, world: int) -> None:
        """Refuse training batches of one image when the model learns batch norm.

        Batch statistics of one sample are undefined or meaningless.

        Args:
            images: training images in all.
            world: processes sharing them.

        Raises:
            DlcvError: if the model learns batch norm and ``data.batch_size`` is 1 or each process's shard is one
                image.
        """
        model = getattr(self.trainer, "lightning_module", None)
        layer = None if model is None else learned_batch_norm(model)
        if layer is None:
            return
        if self.cfg.batch_size == 1:
            raise DlcvError(f"data.batch_size 1: the model's batch norm ({layer}) cannot train on batches of one "
                            "image; give data.batch_size 2 or more")
        if padded_shard(images, world) == 1:
            over = f" over {world} processes" if world > 1 else ""
            raise DlcvError(f"{self.training_folder()}: {images} training image(s){over} make batches of one image, "
                            f"which the model's batch norm ({layer}) cannot train on; give more training images")

    def train_batches(self, images: torch.Tensor, labels: torch.Tensor, batches_type=TensorBatches,
                      **extra) -> TensorBatches:
        """Return shuffled training batches of this process's shard, the same number of steps on every process.

        Args:
            images: (N, ...) training images.
            labels: (N, ...) their labels or class maps.
            batches_type: the batches' class, ``TensorBatches`` or a subclass.
            **extra: further arguments of ``batches_type``.

        Raises:
            DlcvError: if a batch would be one image and the model learns batch norm (``check_batch_norm``).
        """
        rank, world = self.rank_world()
        self.check_batch_norm(len(labels), world)
        batch, trainer = self.cfg.batch_size, self.trainer
        return batches_type(images, labels, batch, shuffle=True, pad=True,
                            drop_last=padded_shard(len(labels), world) >= batch, seed=self.seed, rank=rank,
                            world_size=world,
                            epoch_fn=(lambda: trainer.current_epoch) if trainer is not None else None, **extra)

    def eval_batches(self, images: torch.Tensor, labels: torch.Tensor) -> TensorBatches:
        """Return this process's share of an evaluation set in order, in batches of ``data.eval_batch_size``.

        The shares are disjoint: the tasks gather the metrics over processes.
        """
        rank, world = self.rank_world()
        return TensorBatches(images, labels, self.cfg.eval_batch_size, rank=rank, world_size=world)

    def val_dataloader(self) -> TensorBatches:
        return self.eval_batches(self.val.x, self.val.y)

    def test_dataloader(self) -> TensorBatches:
        tensors = self.test_tensors()
        if tensors is None:
            raise DlcvError("this data has no final set to score")
        return self.eval_batches(*tensors)

    def convert_batch(self, images: torch.Tensor, labels: torch.Tensor, training: bool) -> tuple:
        """Convert a uint8 batch on the training device into what the model takes, augmented when ``training``."""
        raise NotImplementedError

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Convert the batch (``convert_batch``) and cast it to the precision's dtype.

        Lightning casts before this hook, while batches are still uint8: without this, a ``bf16-true`` or ``16-true``
        model would get float32 and fail.
        """
        trainer = self.trainer
        out = self.convert_batch(*batch, training=trainer is not None and trainer.training)
        return out if trainer is None else trainer.precision_plugin.convert_input(out)


class FolderData(InMemoryData):
    """Base of the data modules of a labelled folder: its train folder, split or paired with its validation folder."""

    def __init__(self, root: str | os.PathLike, cfg, seed: int, plan=None):
        """Initialise the data module of the data folder ``root`` (``--data``); the rest as ``InMemoryData``."""
        super().__init__(cfg, seed, plan)
        self.root = Path(root)

    def prepare(self) -> None:
        """Check that ``root`` is a folder and ``read`` it, once.

        Raises:
            DlcvError: if ``root`` is not a folder, or its data cannot be used.
        """
        if self.train is not None:
            return
        if not self.root.is_dir():
            raise DlcvError(f"{self.root}: no such data folder")
        self.read(self.cfg)

    def read(self, cfg) -> None:
        """Read, check and decode the folder's images (and labels or masks) into ``train``, ``val`` and ``final``."""
        raise NotImplementedError


class ClassificationData(FolderData):
    """Problem 1's classification data: ``root/data.train``, split or paired with ``root/data.validation``.

    With ``data.holdout`` > 0 a stratified share of train selects checkpoints and the validation folder is scored at
    the end.
    """

    def __init__(self, root: str | os.PathLike, cfg, seed: int, plan=None):
        super().__init__(root, cfg, seed, plan)
        self.num_classes: int | None = None
        self._policy_on: bool | None = None  # data.auto_augment_min_epochs' last decision, for _say_policy

    def _folder(self, key: str) -> Path:
        return self.root / getattr(self.cfg, key)

    def read(self, cfg) -> None:
        if cfg.train == "train_50" and not (self.root / cfg.train).is_dir():  # Problem 1's layout asked for
            check_kind(self.root, "p1")
        train = read_image_folder(self._folder("train"), self._optional_csv("train_labels"))
        val_folder = validation_folder(self.root, cfg)
        other = read_image_folder(val_folder, self._optional_csv("validation_labels")) if val_folder else None
        self.num_classes = cfg.num_classes or check_class_count(train.labels, self._folder("train"))
        for images, beyond in ((train, f"is not below data.num_classes {self.num_classes}"),
                               (other, f"is not among the {self.num_classes} training classes")):
            if images is not None and images.labels.max() >= self.num_classes:
                bad = images.files[int(np.argmax(images.labels))]
                raise DlcvError(f"{bad}: label {int(images.labels.max())} {beyond}")
        # The whole training folder is decoded once (one cache file) and split in memory.
        whole = load_labelled(train, self._folder("train"), cfg)
        height, width = whole.x.shape[1:3]
        if cfg.crop_padding >= min(height, width):
            raise DlcvError(crop_padding_error(cfg.crop_padding, f"the side of the {width}x{height} images of "
                                               f"{self._folder('train')}"))
        validation = load_labelled(other, val_folder, cfg) if other is not None else None
        self.split(whole, validation, cfg.holdout, lambda share: stratified_holdout(train.labels, share, self.seed))

    def _say_policy(self, on: bool, planned: float | None) -> None:
        """One line whenever ``data.auto_augment_min_epochs`` switches the policy on or off."""
        if on != self._policy_on and is_primary_process():
            plan = "not yet made" if planned is None else f"{planned:.1f} epochs"
            print(f"data.auto_augment {self.cfg.auto_augment}: {'on' if on else 'off'} (the plan: {plan}; "
                  f"on from {self.cfg.auto_augment_min_epochs} epochs)", flush=True)
        self._policy_on = on

    def embedding_sets(self, train_subset: int = 0) -> dict[str, tuple]:
        """Return the image sets whose second-last-layer features the embedding snapshots keep.

        Args:
            train_subset: also a fixed, class-balanced sample of about this many training images; 0: none.

        Returns:
            ``{prefix: (uint8 images, numpy labels, names)}``: prefix ``""`` for the final set (else the validation
            set), ``TRAINING_SUBSET`` for the training sample.
        """
        shown = self.final if self.final is not None else self.val
        sets = {"": (shown.x, shown.y.numpy(), shown.names)}
        if train_subset > 0:
            fraction = min(train_subset / len(self.train), 0.999)
            _, pick = stratified_holdout(self.train.y.numpy(), fraction, self.seed + 1)
            part = self.train.subset(pick)
            sets[TRAINING_SUBSET] = (part.x, part.y.numpy(), part.names)
        return sets

    def _optional_csv(self, key: str) -> Path | None:
        return self._folder(key) if getattr(self.cfg, key) else None

    def resolved(self) -> dict:
        return {"num_classes": self.num_classes}

    def describe(self) -> str:
        return (f"{len(self.train)} training images, {len(self.val)} validation images, "
                f"{self.num_classes} classes")

    def test_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the set scored after fit: the validation folder's when there is one, else the holdout share."""
        shown = self.final if self.final is not None else self.val
        return shown.x, shown.y

    def train_dataloader(self) -> TensorBatches:
        return self.train_batches(self.train.x, self.train.y)

    def convert_batch(self, images: torch.Tensor, labels: torch.Tensor, training: bool) -> tuple:
        planned = self.plan.epochs if training else None
        cfg = self.cfg
        if training and cfg.auto_augment_min_epochs:
            self._say_policy(uses_policy(cfg, planned), planned)
        x = prepare_batch(images, cfg, train=training, planned_epochs=planned)
        if training and (cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0):
            from dlcv.data.policies import mix

            return mix(x, labels, self.num_classes, cfg.mixup_alpha, cfg.cutmix_alpha)
        return x, labels
