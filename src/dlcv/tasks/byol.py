"""BYOL (Grill et al., 2020) as a composition of lightly's parts, in the shared base task.

An online network learns to predict a target's projection of another view; the target gets no gradient and follows the
online weights by a moving average, its momentum rising from ``byol.momentum`` to 1 on a cosine schedule over all
steps. A kNN monitor (validation) scores the online trunk's features on a labelled set every epoch: ``knn_acc``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import nn
from torch.optim.swa_utils import update_bn

from dlcv.io import read_json, write_json
from dlcv.metrics.embedding import knn_accuracy_against
from dlcv.models.transfer import export_backbone, resnet_trunk
from dlcv.plan import Plan
from dlcv.recipes.schema import Optim, Schedule, Train
from dlcv.recipes.tasks import Byol, ByolRecipe, Monitor, Trunk
from dlcv.runtime import inference_device
from dlcv.tasks.base import BaseTask
from dlcv.tta import batches
from dlcv.viz.curves import monitor_label, plot_knn_curve


class BYOLTask(BaseTask):
    """BYOL pre-training of a torchvision ResNet trunk with lightly's heads and loss.

    ``self.model`` holds the online parts (what the optimiser trains); ``self.target`` their momentum copies.
    """

    RECIPE = ByolRecipe

    def __init__(self, model: Trunk | Mapping | None = None, byol: Byol | Mapping | None = None,
                 optim: Optim | Mapping | None = None, schedule: Schedule | Mapping | None = None,
                 train: Train | Mapping | None = None, monitor: Monitor | Mapping | None = None,
                 monitored: bool = True, seed: int = 0, plan: Plan | None = None):
        """Build the online and target networks.

        Args:
            model: the trunk (``dlcv.recipes.Trunk``); None: a ResNet50.
            byol: the heads' widths and the target's momentum (``dlcv.recipes.Byol``).
            optim: the optimiser (``dlcv.recipes.Optim``); None: Adam, as the BYOL recipe's default.
            schedule: the learning-rate schedule (``dlcv.recipes.Schedule``).
            train: ``dlcv.recipes.Train``.
            monitor: the kNN monitor's neighbours (``dlcv.recipes.Monitor``).
            monitored: whether the run has a labelled monitor set; its kNN accuracy then selects checkpoints, else
                the training loss does.
            seed: the run's seed.
            plan: the run's ``Plan``; the momentum rises over its steps.

        Each section may also be its plain dict (a checkpoint's hyper-parameters); see ``BaseTask``.

        Raises:
            DlcvError: if a section breaks a rule.
        """
        super().__init__({"model": model, "byol": byol, "optim": optim, "schedule": schedule, "train": train,
                          "monitor": monitor}, seed, plan, monitored=monitored)
        # With a labelled monitor set the kNN accuracy selects checkpoints; without, the loss.
        self.monitor, self.mode = ("knn_acc", "max") if monitored else ("train_loss", "min")

    def configure_models(self) -> None:
        byol = self.byol_config
        trunk, width = resnet_trunk(self.model_config.arch)
        trunk = self.channels_last(trunk)
        projection = BYOLProjectionHead(width, byol.hidden_dim, byol.output_dim)
        prediction = BYOLPredictionHead(byol.output_dim, byol.hidden_dim, byol.output_dim)
        self.model = nn.ModuleDict({"backbone": trunk, "projection": projection, "prediction": prediction})
        self.target = nn.ModuleDict({"backbone": copy.deepcopy(trunk), "projection": copy.deepcopy(projection)})
        deactivate_requires_grad(self.target)

    def configure_losses(self) -> None:
        self.criterion = NegativeCosineSimilarity()

    def configure_metrics(self) -> None:
        self._monitor: list[tuple[torch.Tensor, torch.Tensor]] = []  # (features, rows) gathered each validation

    @property
    def backbone(self) -> nn.Module:
        return self.model["backbone"]

    def momentum(self) -> float:
        return cosine_schedule(self.global_step, max(1, self.plan.total_steps), self.byol_config.momentum, 1.0)

    def online(self, x: torch.Tensor) -> torch.Tensor:
        return self.model["prediction"](self.model["projection"](self.model["backbone"](x)))

    @torch.no_grad()
    def projected_target(self, x: torch.Tensor) -> torch.Tensor:
        return self.target["projection"](self.target["backbone"](x)).detach()

    def byol_loss(self, view0: torch.Tensor, view1: torch.Tensor) -> torch.Tensor:
        """Return the symmetric loss: each view's online prediction against the other's target projection."""
        p0, p1 = self.online(view0), self.online(view1)
        z0, z1 = self.projected_target(view0), self.projected_target(view1)
        return 0.5 * (self.criterion(p0.float(), z1.float()) + self.criterion(p1.float(), z0.float()))

    def training_step(self, batch, batch_idx):
        view0, view1 = batch
        momentum = self.momentum()
        for part in self.target:  # the backbone, then the projection
            update_momentum(self.model[part], self.target[part], m=momentum)
        loss = self.byol_loss(view0, view1)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True,
                 batch_size=len(view0))
        self.log("momentum", momentum, on_step=False, on_epoch=True, batch_size=len(view0))
        return loss

    def validation_step(self, batch, batch_idx):
        x, rows = batch
        self._monitor.append((self.backbone(x).float().cpu(), rows.cpu()))

    def on_validation_epoch_end(self):
        if not self._monitor:
            return
        features = torch.cat([f for f, _ in self._monitor]).numpy()
        rows = torch.cat([r for _, r in self._monitor]).numpy()
        self._monitor.clear()
        if self.trainer.world_size > 1:  # each process saw its share of the monitor set: the kNN needs all
            shares: list = [None] * self.trainer.world_size
            dist.all_gather_object(shares, (features, rows))
            features, rows = np.concatenate([f for f, _ in shares]), np.concatenate([r for _, r in shares])
        self.log("knn_acc", monitor_knn(features, rows, self.monitor_config.k), prog_bar=True)

    def summarize(self, summary: dict, data, run) -> list[str]:
        """Export the trunk as ``backbone.pt``, draw the kNN curve and return the run's closing line.

        ``summary`` gains the pre-training's numbers (images, final loss, kNN curve); arguments as in
        ``BaseTask.summarize``.
        """
        arch = self.model_config.arch
        export_backbone(self.backbone, arch, run.backbone, seed=self.seed)
        metrics = run.read_metrics()
        curve = [row["knn_acc"] for row in metrics if row.get("knn_acc") is not None]
        losses = [row["train_loss"] for row in metrics if row.get("train_loss") is not None]
        summary.update({"arch": arch, "images": len(data.images), "final_train_loss": _last(losses),
                        "knn_acc": curve, "final_knn_acc": _last(curve),
                        "knn_monitor": str(data.monitor) if data.monitor is not None else None,
                        "backbone": str(run.backbone)})
        if curve:
            summary["knn_figure"] = str(plot_knn_curve(curve, run.path / "knn_curve", run.path.name,
                                                       summary["knn_acc_at_init"], monitor_label(Path(data.monitor))))
        knn = f", kNN accuracy {summary['final_knn_acc']:.4f}" if curve else ""
        return [f"pre-training took {summary['fit_seconds'] / 60:.1f} min{knn}; backbone: {run.backbone}"]

    @torch.no_grad()
    def knn_untrained(self, data, calibration_images: int = 2048) -> dict[str, float]:
        """Measure the kNN monitor of the untrained trunk, on the inference device.

        Args:
            data: the BYOL data module (its monitor set, pre-training images and ``eval_input``).
            calibration_images: at most this many pre-training images, evenly spaced, set the batch-norm
                statistics.

        Returns:
            ``knn_acc``: with batch-norm statistics of the calibration images (as epoch 1 starts);
            ``knn_acc_unit_bn``: with the initial ones (mean 0, variance 1).
        """
        prepare, batch = data.eval_input, data.cfg.eval_batch_size
        device = inference_device()  # before fit the task is still on the CPU; a GPU, when there is one, does this
        trunk = copy.deepcopy(self.backbone).to(device)

        def knn() -> float:
            features = trunk_features(trunk, data.monitor_x, prepare, batch, device)
            return monitor_knn(features, data.monitor_y.numpy(), self.monitor_config.k)

        unit_bn = knn()
        calibrate_batch_norm(trunk, evenly_spaced(data.images, calibration_images), prepare, batch, device)
        return {"knn_acc_unit_bn": unit_bn, "knn_acc": knn()}


class KnnAtInit(L.Callback):
    """Callback measuring the kNN monitor before any training, the point the per-epoch curve is read against.

    It runs ``BYOLTask.knn_untrained`` when a run starts (not when it resumes) and writes the JSON file ``path``.
    """

    def __init__(self, path: Path, data):
        self.path, self.data = path, data

    def on_fit_start(self, trainer, pl_module) -> None:
        if self.data.monitor is None or trainer.ckpt_path is not None or not trainer.is_global_zero:
            return

        untrained = pl_module.knn_untrained(self.data)
        write_json(self.path, untrained)
        print(f"kNN accuracy of the untrained trunk: {untrained['knn_acc']:.4f} (batch-norm statistics of the "
              f"pre-training images; {untrained['knn_acc_unit_bn']:.4f} with none)", flush=True)

    def summary_fields(self) -> dict:
        return {"knn_acc_at_init": read_json(self.path).get("knn_acc") if self.path.is_file() else None}


def _last(values: list[float]) -> float | None:
    return values[-1] if values else None


def evenly_spaced(images: torch.Tensor, count: int) -> torch.Tensor:
    """Pick at most ``count`` images evenly spaced through ``images`` (a folder by name is often by class)."""
    if len(images) <= count:
        return images
    return images[torch.linspace(0, len(images) - 1, count).round().long()]


def monitor_knn(features: np.ndarray, rows: np.ndarray, k: int) -> float:
    """Score the kNN monitor: the queries classified by their cosine-nearest bank images.

    Args:
        features: (N, D) features of the monitor images.
        rows: (N, 2) int: each image's label, then 1 for a query or 0 for a bank image.
        k: neighbours that vote.

    Returns:
        The queries' accuracy, rounded to float32 as Lightning logs it.
    """
    query = rows[:, 1] == 1
    accuracy = knn_accuracy_against(features[~query], rows[~query, 0], features[query], rows[query, 0], k=k)
    return float(np.float32(accuracy))


@torch.no_grad()
def trunk_features(trunk: nn.Module, images: torch.Tensor, prepare, batch: int, device=None) -> np.ndarray:
    """Compute the trunk's features of uint8 images, in evaluation mode.

    Args:
        trunk: the ResNet trunk; left in evaluation mode.
        images: (N, H, W, 3) uint8.
        prepare: turns a uint8 batch on ``device`` into model input.
        batch: images per forward pass.
        device: where to run; None: where ``images`` are.

    Returns:
        (N, D) float32 features.
    """
    trunk.eval()
    return torch.cat([trunk(x).float().cpu() for _, x in batches(images, batch, device, prepare)]).numpy()


def calibrate_batch_norm(trunk: nn.Module, images: torch.Tensor, prepare, batch: int, device=None) -> None:
    """Set every batch-norm layer's running statistics to their average over uint8 ``images``.

    As torch's ``update_bn`` does; arguments as in ``trunk_features``, and ``trunk`` is left in evaluation mode.
    """
    update_bn((x for _, x in batches(images, batch, device, prepare)), trunk)
    trunk.eval()
