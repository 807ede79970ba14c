"""Image classification: cross-entropy with label smoothing, accuracy, flip test-time augmentation."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from dlcv.models import create_model
from dlcv.plan import Plan
from dlcv.recipes.schema import Model, Optim, Schedule
from dlcv.recipes.tasks import ClassifyRecipe, ClassifyTrain
from dlcv.tasks.base import BaseTask
from dlcv.tta import classify_passes, predict_logits

INIT_IMAGES = 5000  # training images a data-dependent initialisation reads


def soft_focal_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float) -> torch.Tensor:
    """Focal loss (Lin et al., 2017) against soft targets: ``-sum_c t_c (1 - p_c)^gamma log p_c``.

    Args:
        logits: (N, C) logits.
        targets: (N, C) soft targets, each row summing to 1.
        gamma: the focusing exponent; 0 gives cross-entropy.

    Returns:
        The mean over the batch, a float32 scalar.
    """
    log_p = F.log_softmax(logits.float(), dim=1)
    return -(targets * (1 - log_p.exp()) ** gamma * log_p).sum(1).mean()


class ClassificationTask(BaseTask):
    """A classifier on a registered model: soft-target loss (smoothing, focal, mixed batches), accuracy, flip TTA."""

    monitor, mode = "val_acc", "max"

    RECIPE = ClassifyRecipe

    def __init__(self, num_classes: int, model: Model | Mapping | None = None, optim: Optim | Mapping | None = None,
                 schedule: Schedule | Mapping | None = None, train: ClassifyTrain | Mapping | None = None,
                 seed: int = 0, plan: Plan | None = None):
        """Build the ``model`` section's classifier with ``num_classes`` outputs.

        Args:
            num_classes: the data set's classes, the head's outputs.
            model: the model's registered name and arguments (``dlcv.recipes.Model``); None: ``dlcv_net``.
            optim: the optimiser (``dlcv.recipes.Optim``); None: the classification recipe's default.
            schedule: the learning-rate schedule (``dlcv.recipes.Schedule``).
            train: the loss, label smoothing, test-time augmentation and the rest of ``dlcv.recipes.ClassifyTrain``.
            seed: the run's seed.
            plan: the run's ``Plan``, which the schedules follow.

        Each section may also be its plain dict (a checkpoint's hyper-parameters); see ``BaseTask``.

        Raises:
            DlcvError: if a section breaks a rule.
        """
        super().__init__({"model": model, "optim": optim, "schedule": schedule, "train": train}, seed, plan,
                         num_classes=num_classes)

    @property
    def num_classes(self) -> int:
        return self.hparams.num_classes

    def configure_models(self) -> None:
        self.model = self.channels_last(create_model(self.model_config.name, num_classes=self.num_classes,
                                                     task="classify", **self.model_args()))

    def configure_metrics(self) -> None:
        """Build one ``MetricCollection``, cloned per stage (``train_acc``, ``val_acc``, ``test_acc``...).

        A metric added here is logged each epoch, and scored at the end, under each prefix.
        """
        # No argument checks: each would copy a value to the host every step.
        metrics = {"acc": MulticlassAccuracy(self.num_classes, average="micro", validate_args=False)}
        if self.train_config.top5_accuracy and self.num_classes > 5:
            metrics["top5_acc"] = MulticlassAccuracy(self.num_classes, top_k=5, average="micro", validate_args=False)
        collection = MetricCollection(metrics)
        self.train_metrics = collection.clone(prefix="train_")
        self.val_metrics = collection.clone(prefix="val_")
        self.test_metrics = collection.clone(prefix="test_")
        self.test_confusion = MulticlassConfusionMatrix(self.num_classes, validate_args=False)
        self.final_scores: dict[str, float] = {}

    def passes(self, tta: str) -> int:
        return classify_passes(tta)

    def setup(self, stage: str) -> None:
        # dlcv_net's whitening stem, from the same first images in every process; a resume's checkpoint replaces it.
        init = getattr(self.model, "init_from_images", None)
        data = getattr(self.trainer, "datamodule", None)
        if stage == "fit" and init is not None and data is not None:
            init(data.first_inputs(INIT_IMAGES))

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Compute ``train.loss`` (cross-entropy or focal, label smoothing applied) against soft targets.

        Args:
            logits: (N, C) logits.
            targets: (N, C) soft targets: one-hot, or mixed by MixUp / CutMix.

        Returns:
            The mean loss over the batch, a scalar.
        """
        train = self.train_config
        if train.label_smoothing:
            targets = targets * (1 - train.label_smoothing) + train.label_smoothing / targets.shape[1]
        if train.loss == "focal":
            return soft_focal_loss(logits, targets, train.focal_gamma)
        return F.cross_entropy(logits.float(), targets)

    def training_step(self, batch, batch_idx):
        x, y = batch
        if y.ndim == 1:
            y = F.one_hot(y, self.num_classes).to(x.dtype)
        logits = self.model(x)
        loss = self.loss(logits, y)
        self.train_metrics.update(logits.detach(), y.argmax(1))
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=len(y))
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = predict_logits(self.model, x, self.train_config.val_tta)
        loss = F.cross_entropy(logits, y)
        self.val_metrics.update(logits, y)
        self.log("val_loss", loss, on_epoch=True, sync_dist=True, batch_size=len(y))
        self.log_dict(self.val_metrics, on_epoch=True, prog_bar=True, batch_size=len(y))

    def final_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Return the (N, C) logits of a final-set batch under ``train.tta``, the test-time augmentation."""
        return predict_logits(self.model, x, self.train_config.tta)

    def final_predictions(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.final_logits(x).argmax(1)

    def test_step(self, batch, batch_idx):
        x, y = batch
        logits = self.final_logits(x)
        self.test_metrics.update(logits, y)
        self.test_confusion.update(logits.argmax(1), y)

    def on_test_epoch_end(self):
        """Keep the final scores over every process (without the ``test_`` prefix), then the confusion matrix."""
        self.final_scores = {name.removeprefix("test_"): float(value)
                             for name, value in self.test_metrics.compute().items()}
        self.test_metrics.reset()
        super().on_test_epoch_end()

    def final_line(self, summary: dict, data, run) -> str | None:
        """Write the best checkpoint's confusion matrix (``confusion.csv``) and return its final-set accuracy line.

        The final set is the validation folder, scored only when a holdout share of train chose the checkpoint.
        """
        matrix = self.final_confusion
        if matrix is not None:
            run.write_confusion(matrix)
        if matrix is None or data.final is None:
            return None
        folder = str(data.final.folder)
        accuracy = float(np.trace(matrix) / max(1, matrix.sum()))
        summary["final_validation"] = {"folder": folder, "accuracy": accuracy}
        top5 = self.final_scores.get("top5_acc")
        if top5 is not None:
            summary["final_validation"]["top5_accuracy"] = top5
        return (f"{folder} accuracy of the best checkpoint: {accuracy:.4f}"
                + (f", top-5 {top5:.4f}" if top5 is not None else "") + " (not used for any choice)")
