"""BYOL's data: the unlabelled images (Mini-ImageNet's ``train/``) and the optional labelled kNN monitor set."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from dlcv.data.augment import model_input
from dlcv.data.batches import InMemoryData, TensorBatches
from dlcv.data.images import load_resized_stack
from dlcv.data.office import monitor_sets
from dlcv.data.ssl_views import byol_views
from dlcv.files import list_images


class UnlabelledImages(InMemoryData):
    """Mini-ImageNet for pre-training: every image of a folder, decoded once at ``data.image_size``.

    Training batches become BYOL's two views on the device; the optional kNN monitor set is unaugmented validation
    data.
    """

    def __init__(self, folder: str | os.PathLike, cfg, views, seed: int,
                 monitor: str | os.PathLike | None = None, max_bank: int = 5000, plan=None):
        """Initialise the data module.

        Args:
            folder: the folder of unlabelled images.
            cfg: the recipe's ``data`` section.
            views: the recipe's ``views`` section.
            seed: seeds the shuffles and the monitor's bank draw.
            monitor: a labelled folder for the kNN monitor (``office.monitor_sets``); None: no monitor.
            max_bank: the most images in the monitor's bank.
            plan: the run's plan; None: an empty ``Plan``.
        """
        super().__init__(cfg, seed, plan)
        if views is not None:  # BYOL's views beside the data section ``InMemoryData`` saved
            self.save_hyperparameters({**self.hparams, "views": views.model_dump()})
        self.folder, self.views = Path(folder), views
        self.monitor, self.max_bank = monitor, max_bank
        self.images: torch.Tensor | None = None

    def prepare(self) -> None:
        """Read, check and decode everything once, so that bad data fails before a run folder exists.

        Raises:
            DlcvError: if the folder is missing, an image cannot be decoded, the images differ in size (without
                ``data.image_size``), or the monitor folder cannot be used.
        """
        if self.images is not None:
            return
        files = list_images(self.folder)
        side = self.cfg.image_size
        self.images = torch.from_numpy(np.array(load_resized_stack(files, side, use_cache=self.cfg.cache)))
        self.monitor_x = self.monitor_y = None
        if self.monitor is not None:
            self.monitor_x, self.monitor_y = monitor_sets(self.monitor, side, self.max_bank, self.seed,
                                                          self.cfg.cache)

    def training_folder(self) -> Path:
        return self.folder

    def describe(self) -> str:
        watched = f"kNN monitor on {self.monitor}" if self.monitor is not None else "no kNN monitor"
        return f"{len(self.images)} unlabelled images, {watched}"

    def counts(self) -> tuple[int, int, int]:
        return len(self.images), 0 if self.monitor_y is None else len(self.monitor_y), 0

    def eval_input(self, images: torch.Tensor) -> torch.Tensor:
        """Convert uint8 monitor images to the trunk's input: normalised, unaugmented, resized to ``views.size``."""
        return model_input(images, self.cfg.mean, self.cfg.std, self.views.size)

    def train_dataloader(self) -> TensorBatches:
        return self.train_batches(self.images, torch.zeros(len(self.images), dtype=torch.int64))

    def val_dataloader(self):
        return [] if self.monitor_x is None else self.eval_batches(self.monitor_x, self.monitor_y)

    def convert_batch(self, images: torch.Tensor, labels: torch.Tensor, training: bool) -> tuple:
        if training:
            return byol_views(images, self.views, self.cfg.mean, self.cfg.std)
        return self.eval_input(images), labels
