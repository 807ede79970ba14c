"""Semantic segmentation: pixel losses, the graded mIoU per epoch, test-time augmentation."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassConfusionMatrix

from dlcv.data.masks import CLASS_NAMES, NUM_CLASSES, SCORED_CLASSES
from dlcv.metrics.segmentation import class_iou, mean_iou
from dlcv.models import create_model
from dlcv.plan import Plan
from dlcv.recipes.schema import Model, Optim, Schedule
from dlcv.recipes.tasks import SegmentLoss, SegmentRecipe, SegmentTrain
from dlcv.tasks.base import BaseTask
from dlcv.tasks.losses import build_pixel_loss
from dlcv.tta import SEGMENT_VIEWS, predict_probs


class SegmentationTask(BaseTask):
    """A segmenter on a registered model: its pixel loss, the per-epoch mIoU of classes 0-5, TTA by views."""

    monitor, mode = "val_miou", "max"

    RECIPE = SegmentRecipe

    def __init__(self, model: Model | Mapping | None = None, loss: SegmentLoss | Mapping | None = None,
                 optim: Optim | Mapping | None = None, schedule: Schedule | Mapping | None = None,
                 train: SegmentTrain | Mapping | None = None, seed: int = 0, plan: Plan | None = None):
        """Build the ``model`` section's segmenter with ``NUM_CLASSES`` outputs.

        Args:
            model: the model's registered name and arguments (``dlcv.recipes.Model``); None: ``unet_lite0``.
            loss: the pixel loss (``dlcv.recipes.SegmentLoss``); None: cross-entropy.
            optim: the optimiser (``dlcv.recipes.Optim``); None: the segmentation recipe's default.
            schedule: the learning-rate schedule (``dlcv.recipes.Schedule``).
            train: the test-time augmentation and the rest of ``dlcv.recipes.SegmentTrain``.
            seed: the run's seed.
            plan: the run's ``Plan``, which the schedules follow.

        Each section may also be its plain dict (a checkpoint's hyper-parameters); see ``BaseTask``.

        Raises:
            DlcvError: if a section breaks a rule.
        """
        super().__init__({"model": model, "loss": loss, "optim": optim, "schedule": schedule, "train": train}, seed,
                         plan, num_classes=NUM_CLASSES)

    def configure_models(self) -> None:
        self.model = self.channels_last(create_model(self.model_config.name, num_classes=NUM_CLASSES, task="segment",
                                                     **self.model_args()))

    def configure_losses(self) -> None:
        self.criterion = build_pixel_loss(self.loss_config, NUM_CLASSES)

    def configure_metrics(self) -> None:
        # No argument checks: each would copy a value to the host every step.
        self.val_confusion = MulticlassConfusionMatrix(NUM_CLASSES, validate_args=False)
        self.test_confusion = MulticlassConfusionMatrix(NUM_CLASSES, validate_args=False)

    def passes(self, tta: str) -> int:
        return len(SEGMENT_VIEWS[tta])

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.model(x)
        loss = self.criterion(logits, y)
        with torch.no_grad():
            acc = (logits.argmax(1) == y).float().mean()
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=len(y))
        self.log("train_pixel_acc", acc, on_step=False, on_epoch=True, sync_dist=True, batch_size=len(y))
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        probs = predict_probs(self.model, x, tuple(y.shape[-2:]), self.train_config.val_tta)
        loss = F.nll_loss(torch.log(probs.clamp(min=1e-8)), y)
        self.val_confusion.update(probs.argmax(1), y)
        self.log("val_loss", loss, on_epoch=True, sync_dist=True, batch_size=len(y))

    def final_predictions(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Predict (N, H, W) classes at the masks' full size under ``train.tta``, the test-time augmentation."""
        return predict_probs(self.model, x, tuple(y.shape[-2:]), self.train_config.tta).argmax(1)

    def on_validation_epoch_end(self):
        matrix = self.val_confusion.compute()  # summed over processes
        self.val_confusion.reset()
        # The course's IoUs; a class absent from both counts 0 here (per-epoch monitoring, never nan).
        iou = torch.from_numpy(np.nan_to_num(class_iou(matrix.cpu().numpy()), nan=0.0))
        self.log("val_miou", iou.mean().float(), prog_bar=True)
        self.log("val_pixel_acc", (torch.diag(matrix).sum() / matrix.sum().clamp(min=1)).float())
        for name, value in zip(CLASS_NAMES[:SCORED_CLASSES], iou):
            self.log(f"val_iou_{name.lower()}", value.float())

    def final_line(self, summary: dict, data, run) -> str | None:
        """Record the train and eval sizes; return the best checkpoint's final-set mIoU line, or None.

        The final set is the validation folder, scored only when a holdout share of train chose the checkpoint.
        """
        summary["train_size"], summary["eval_size"] = data.cfg.train_size, data.cfg.eval_size
        matrix = self.final_confusion
        if matrix is None:
            return None
        fv = {"folder": str(data.final.folder), "mean_iou": mean_iou(matrix),
              "iou": [float(v) for v in class_iou(matrix)]}
        summary["final_validation"] = fv
        height, width = data.final.y.shape[-2:]
        return (f"{fv['folder']} mIoU of the best checkpoint ({width}x{height}, tta {self.train_config.tta}): "
                f"{fv['mean_iou']:.4f} (not used for any choice)")
