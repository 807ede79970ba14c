"""Masks through training: chosen validation images' predicted masks at chosen epochs, in the run folder's
``progress/ground_truth/ID_mask.png`` and ``progress/images/ID_sat.png`` (once) and ``progress/epoch_NNN/ID_mask.png``
(drawn by ``dlcv segment progress RUN``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dlcv.data.masks import write_mask, write_png
from dlcv.runs import RunFolder
from dlcv.tasks.snapshots import ChosenEpochs, evaluating
from dlcv.tta import batches, predict_probs


class MaskProgress(ChosenEpochs):
    """``images`` uint8 (K, H, W, 3) and ``masks`` (K, H, W) of validation ``ids``; ``prepare`` makes model input."""

    def __init__(self, run_dir: Path, epochs: list[int | str], ids: list[str], images: torch.Tensor,
                 masks: torch.Tensor, prepare, tta: str = "none", plan=None):
        super().__init__(epochs, plan)
        self.run_dir, self.ids = Path(run_dir), ids
        self.images, self.masks, self.prepare, self.tta = images, masks, prepare, tta

    def on_fit_start(self, trainer, pl_module):
        if not trainer.is_global_zero:
            return

        progress = RunFolder(self.run_dir).progress
        for sub in ("ground_truth", "images"):
            (progress / sub).mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(self.ids):
            write_mask(progress / "ground_truth" / f"{name}_mask.png", self.masks[i].numpy())
            write_png(progress / "images" / f"{name}_sat.png", self.images[i].numpy())

    def on_train_epoch_end(self, trainer, pl_module):
        if not self.due(trainer):
            return

        epoch = trainer.current_epoch + 1
        out = RunFolder(self.run_dir).progress_epoch(epoch)
        out.mkdir(parents=True, exist_ok=True)
        with evaluating(trainer, pl_module) as model:
            for i, x in batches(self.images, 1, pl_module.device, self.prepare):
                x = trainer.precision_plugin.convert_input(x)
                probs = predict_probs(model, x, tuple(self.masks.shape[-2:]), self.tta)
                write_mask(out / f"{self.ids[i]}_mask.png", probs.argmax(1)[0].cpu().numpy().astype(np.uint8))
