"""The base task: owns the recipe, the optimiser and the learning-rate schedule."""

from __future__ import annotations

import lightning as L
from torch import nn

from dlcv.tasks.optim import build_optimizer, build_scheduler


class BaseTask(L.LightningModule):
    """A LightningModule around ``self.model`` whose optimiser and schedule come from the recipe.

    The resolved recipe is saved in every checkpoint (``hyper_parameters``), so a checkpoint alone
    says how to rebuild its model and prepare its inputs.
    """

    model: nn.Module

    def __init__(self, recipe: dict, **extra):
        super().__init__()
        self.save_hyperparameters({"recipe": recipe, **extra})
        self.recipe = recipe

    def configure_optimizers(self):
        optimizer = build_optimizer(self.model, self.recipe["optim"])
        total = int(self.trainer.estimated_stepping_batches)
        per_epoch = max(1, total // max(1, self.trainer.max_epochs or 1))
        scheduler = build_scheduler(optimizer, self.recipe["schedule"], total, per_epoch)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
