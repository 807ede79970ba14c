"""Masks through training: chosen validation images' predicted masks, written at chosen epochs.

The run folder gets ``progress/ground_truth/ID_mask.png`` and ``progress/images/ID_sat.png`` once, and
``progress/epoch_NNN/ID_mask.png`` at each chosen epoch; ``dlcv segment progress RUN`` draws them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dlcv.data.masks import write_mask, write_png
from dlcv.runs import RunFolder
from dlcv.tasks.snapshots import ChosenEpochs, evaluating
from dlcv.tta import batches, predict_probs


class MaskProgress(ChosenEpochs):
    """Callback writing chosen validation images' predicted masks at chosen epochs."""

    def __init__(self, run_dir: Path, epochs: list[int | str], ids: list[str], images: torch.Tensor,
                 masks: torch.Tensor, prepare, tta: str = "none", plan=None):
        """Keep the images to predict and the folder to write.

        Args:
            run_dir: the run folder.
            epochs: epoch numbers, ``last`` or ``middle`` (as ``ChosenEpochs``).
            ids: the images' ids, which name the files.
            images: (K, H, W, 3) uint8.
            masks: (K, H, W) class indices, the ground truth; predictions take their size.
            prepare: turns a uint8 batch into model input.
            tta: the predictions' test-time augmentation (a ``dlcv.tta.SEGMENT_VIEWS`` name).
            plan: the run's plan, which says when ``last`` and ``middle`` come.
        """
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
