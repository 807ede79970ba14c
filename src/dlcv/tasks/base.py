"""The base task: typed arguments saved as hyper-parameters, the optimiser and schedule, per-epoch seeding, and the
final scoring.

Classification, segmentation and BYOL subclass it as torchgeo's tasks do: ``configure_models``, ``configure_losses``,
``configure_metrics``, the checkpoint metric (``monitor``, ``mode``) and their steps. A task scored on a labelled final
set builds ``self.test_confusion`` and defines ``final_predictions``; ``trainer.test`` then sums ``final_confusion``
over the processes.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import ClassVar

import lightning as L
import numpy as np
import torch
from torch import nn

from dlcv.plan import Plan
from dlcv.tasks.optim import build_optimizer, build_scheduler


def task_sections(recipe_type, sections: Mapping, seed) -> object:
    """Check a task's sections (typed, or the plain dicts of a checkpoint) as one recipe of its type.

    Args:
        recipe_type: the recipe type whose sections the task takes (``ClassifyRecipe``...).
        sections: section name -> the typed section, its plain dict, or None (the recipe type's default).
        seed: the run's seed.

    Returns:
        A ``recipe_type`` holding the given sections; its other sections (data, snapshots) at their defaults.

    Raises:
        DlcvError: if a section breaks a rule (one line naming the key).
    """
    from dlcv.config import validated

    plain = {name: value.model_dump() if hasattr(value, "model_dump") else dict(value) if isinstance(value, Mapping)
             else value for name, value in sections.items() if value is not None}  # anything else: pydantic's error
    return validated(recipe_type, {**plain, "seed": seed}, lambda key: f"{recipe_type.__name__}'s arguments")


class BaseTask(L.LightningModule):
    """A LightningModule around ``self.model``, built from typed arguments that it saves as plain hyper-parameters.

    Each task takes the sections of its recipe type that it uses (``model``, ``optim``, ``schedule``, ``train``, and
    its own) as typed sections or as their plain dicts, and keeps them as ``<section>_config``; Lightning's
    ``load_from_checkpoint`` rebuilds it from the saved dicts (``weights_only`` loading: plain data only). The data
    module saves the ``data`` section beside them.
    """

    RECIPE: ClassVar[type]  # the recipe type whose sections the task takes; its ``task`` is saved as a hyper-parameter
    model: nn.Module
    monitor: str = "val_loss"  # the metric that selects checkpoints (and stops early)
    mode: str = "min"

    def __init__(self, sections: Mapping, seed: int = 0, plan: Plan | None = None, **extra):
        """Build the task's model, loss and metrics from its sections.

        Args:
            sections: section name -> the typed section (a ``dlcv.recipes`` section), its plain dict, or None for
                the recipe type's default. Plain dicts are a checkpoint's hyper-parameters (as Lightning's
                ``load_from_checkpoint`` passes them): the model is then built without its pretrained weights,
                which the checkpoint's replace.
            seed: the run's seed; each epoch's random draws follow from it.
            plan: the run's ``Plan``, which the schedules (and BYOL's momentum) follow; None: a new, empty plan.
            **extra: the task's own plain arguments (the class count), saved beside the sections.

        Raises:
            DlcvError: if a section breaks a rule.
        """
        super().__init__()
        self.weights_from_checkpoint = any(isinstance(value, Mapping) for value in sections.values())
        typed = task_sections(self.RECIPE, sections, seed)
        self.seed = typed.seed
        for name in sections:
            setattr(self, f"{name}_config", getattr(typed, name))
        self.save_hyperparameters({"task": typed.task, **{name: getattr(typed, name).model_dump() for name in sections},
                                   "seed": self.seed, **extra})  # plain data: checkpoints load safely
        self.final_confusion: np.ndarray | None = None
        self.plan = plan if plan is not None else Plan()  # the schedules (and BYOL's momentum) follow it
        self.configure_models()
        self.configure_losses()
        self.configure_metrics()

    @classmethod
    def from_recipe(cls, recipe, plan: Plan | None = None, **extra):
        """Build the task from a run's recipe: the sections its ``__init__`` names, its seed, and ``extra``.

        Args:
            recipe: the run's typed recipe (of ``cls.RECIPE`` or a subclass).
            plan: the run's ``Plan``.
            **extra: the task's other arguments (``num_classes``, ``monitored``).
        """
        names = [name for name in inspect.signature(cls.__init__).parameters if name in type(recipe).model_fields]
        return cls(**{name: getattr(recipe, name) for name in names}, plan=plan, **extra)

    def configure_models(self) -> None:
        """Build ``self.model`` (what the optimiser trains) from ``self.model_config``."""
        raise NotImplementedError

    def model_args(self) -> dict:
        """The ``model`` section's ``args``; without pretrained weights where a checkpoint's weights replace them."""
        from dlcv.models import rebuild_args

        args = self.model_config.args
        return rebuild_args(args) if self.weights_from_checkpoint else args

    def configure_losses(self) -> None:
        """Build the training loss."""

    def configure_metrics(self) -> None:
        """Build the metrics (``self.test_confusion`` for a task scored on a final set)."""

    def channels_last(self, model: nn.Module) -> nn.Module:
        """Return ``model`` channels-last when ``train.channels_last`` asks for it (faster convolutions)."""
        return model.to(memory_format=torch.channels_last) if self.train_config.channels_last else model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def configure_optimizers(self):
        optimizer = build_optimizer(self.model, self.optim_config)
        if not self.plan.steps_per_epoch:  # a task trained outside ``dlcv.fitting``: the trainer's epochs
            epochs = max(1, self.trainer.max_epochs or 1)
            self.plan.begin(int(self.trainer.estimated_stepping_batches) // epochs, epochs)
        scheduler = build_scheduler(optimizer, self.schedule_config, self.plan)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def on_train_epoch_start(self):
        # Draws depend on (seed, epoch, rank) alone: a run resumed here draws what the uninterrupted run drew.
        torch.manual_seed(self.seed * 1_000_003 + self.current_epoch * 7919 + self.global_rank)
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=False, on_epoch=True,
                 sync_dist=True)  # the same in every process: the mean keeps it

    def passes(self, tta: str) -> int:
        """Return the model's forward passes per image under the test-time augmentation ``tta`` (for a budget)."""
        return 1

    def final_predictions(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Predict the classes of a final-set batch under ``train.tta``, the test-time augmentation.

        Args:
            x: the model's input batch, (N, 3, H, W).
            y: its labels: (N,) class indices, or (N, H, W) masks, whose size the prediction takes.

        Returns:
            The predicted classes, shaped as ``y``.
        """
        raise NotImplementedError

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.test_confusion.update(self.final_predictions(x, y), y)

    def on_test_epoch_end(self):
        self.final_confusion = self.test_confusion.compute().cpu().numpy().astype(np.int64)  # over all processes
        self.test_confusion.reset()

    def summarize(self, summary: dict, data, run) -> list[str]:
        """Complete ``summary`` once the fit has ended and return the run's closing lines.

        Args:
            summary: ``summary.json``'s fields so far (``fit_seconds`` among them); completed in place.
            data: the run's data module.
            run: the run's ``RunFolder``.

        Returns:
            The best ``monitor`` value and the set it was selected on, ``final_line``'s line, and the best
            checkpoint's path.
        """
        final_line, cfg, metric = self.final_line(summary, data, run), data.cfg, self.monitor
        best = getattr(self.trainer.checkpoint_callback, "best_model_score", None)  # no checkpoint callback: None
        best = float(best) if best is not None else None
        selected_on = f"holdout {cfg.holdout:.0%} of {cfg.train}" if cfg.holdout > 0 else cfg.validation
        summary.update({"model": self.model_config.name, "selected_on": selected_on, "monitor": metric,
                        "best_model_score": best, f"best_{metric}": best, "best_checkpoint": str(run.best)})
        return [f"best {metric} {f'{best:.4f}' if best is not None else '-'} (selected on {summary['selected_on']}); "
                f"fit took {summary['fit_seconds'] / 60:.1f} min", *([final_line] if final_line else []),
                f"best checkpoint: {run.best}"]

    def final_line(self, summary: dict, data, run) -> str | None:
        """Add the best checkpoint's final-set score to ``summary`` and return its closing line, or None."""
        return None
