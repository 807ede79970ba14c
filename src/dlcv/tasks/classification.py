"""Image classification: cross-entropy with label smoothing, accuracy, flip test-time augmentation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from dlcv.models import create_model
from dlcv.tasks.base import BaseTask


def predict_logits(model: torch.nn.Module, x: torch.Tensor, tta: str = "flip") -> torch.Tensor:
    """The model's logits under test-time augmentation ``tta``.

    ``flip`` averages the image and its mirror; ``flip_shift`` adds both, shifted diagonally by one
    pixel either way (reflect padding) at half weight, as airbench does: 6 passes instead of 2.
    """
    logits = model(x)
    if tta == "none":
        return logits
    logits = logits + model(x.flip(3))
    if tta == "flip":
        return logits / 2
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    for offset in (0, 2):
        view = padded[:, :, offset : offset + h, offset : offset + w]
        logits = logits + 0.5 * (model(view) + model(view.flip(3)))
    return logits / 4


class ClassificationTask(BaseTask):
    def __init__(self, recipe: dict, num_classes: int):
        super().__init__(recipe, num_classes=num_classes)
        spec = recipe["model"]
        self.model = create_model(spec["name"], num_classes=num_classes, kind="classify", **spec["args"])
        if recipe["train"]["channels_last"]:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.label_smoothing = float(recipe["train"]["label_smoothing"])
        self.val_tta = recipe["train"]["val_tta"]
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        self.train_acc(logits.detach(), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def on_train_epoch_start(self):
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=False, on_epoch=True)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = predict_logits(self.model, x, self.val_tta)
        loss = F.cross_entropy(logits, y)
        self.val_acc(logits, y)
        self.log("val_loss", loss, on_epoch=True, sync_dist=True, batch_size=len(y))
        self.log("val_acc", self.val_acc, on_epoch=True, prog_bar=True, batch_size=len(y))
