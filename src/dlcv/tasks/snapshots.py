"""Embedding snapshots during training: the second-last layer's outputs at chosen epochs."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import numpy as np
import torch

from dlcv.data.features import save_features, snapshot_path
from dlcv.plan import Plan
from dlcv.tta import batches


@contextmanager
def evaluating(trainer, pl_module):
    """Yield the task's model in eval mode, without gradients, in the run's precision; restored after.

    The context is the training steps' (the precision plugin's ``forward_context``: a bf16 autocast, or float16 on
    GPUs without bf16); callers pass inputs through the plugin's ``convert_input`` (bf16 for ``bf16-true``).
    """
    model = pl_module.model
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), trainer.precision_plugin.forward_context():
            yield model
    finally:
        model.train(was_training)


class ChosenEpochs(L.Callback):
    """Base callback that works at chosen epochs, judged by ``plan`` as it stands at each epoch's end."""

    def __init__(self, epochs: list[int | str], plan: Plan | None = None):
        """Set the chosen epochs.

        Args:
            epochs: epoch numbers (from 1), ``last`` (the epoch after which training stops) and ``middle`` (the
                first epoch at or past half the planned ones; once, also across a resume).
            plan: the run's plan; None: a new, empty one.
        """
        self.numbers = {e for e in epochs if isinstance(e, int)}
        self.words = {e for e in epochs if isinstance(e, str)}
        self.plan = plan if plan is not None else Plan()
        self.middle_done = False

    def due(self, trainer) -> bool:
        """Whether the epoch now ending is a chosen one (first process only, never in the sanity check)."""
        if trainer.sanity_checking or not trainer.is_global_zero:
            return False
        epoch, planned = trainer.current_epoch + 1, self.plan.last_epoch
        if "last" in self.words and (trainer.should_stop or (planned is not None and epoch >= planned)):
            return True
        if "middle" in self.words and not self.middle_done and planned is not None and epoch >= (planned + 1) // 2:
            self.middle_done = True
            return True
        return epoch in self.numbers

    def state_dict(self) -> dict:
        return {"middle_done": self.middle_done}

    def load_state_dict(self, state: dict) -> None:
        self.middle_done = bool(state.get("middle_done", False))


class EmbeddingSnapshots(ChosenEpochs):
    """Callback saving the model's second-last-layer features of fixed image sets at chosen epochs."""

    def __init__(self, run_dir: Path, epochs: list[int | str], sets: dict[str, tuple], prepare: Callable,
                 batch_size: int = 500, plan: Plan | None = None):
        """Keep the image sets and where their snapshots go.

        Args:
            run_dir: the run folder, which holds the snapshot files.
            epochs: epoch numbers, ``last`` or ``middle`` (as ``ChosenEpochs``).
            sets: file prefix ("" for the validation images, ``TRAINING_SUBSET`` for a training subset) ->
                ``(images, labels, file names)``, the images (N, H, W, 3) uint8.
            prepare: turns a uint8 batch into model input.
            batch_size: images per forward pass.
            plan: the run's plan, which says when ``last`` and ``middle`` come.
        """
        super().__init__(epochs, plan)
        self.run_dir, self.sets = Path(run_dir), sets
        self.prepare, self.batch_size = prepare, batch_size
        self.seconds: dict[str, float] = {}  # time spent per snapshot file, for the run's summary

    def summary_fields(self) -> dict:
        return {"snapshot_seconds": self.seconds}

    def on_train_epoch_end(self, trainer, pl_module):
        if not self.due(trainer):
            return
        epoch = trainer.current_epoch + 1
        with evaluating(trainer, pl_module) as model:
            for prefix, (images, labels, names) in self.sets.items():
                start = time.perf_counter()
                features = self._features(model, images, pl_module.device, trainer)
                path = snapshot_path(self.run_dir, epoch, prefix)
                path.parent.mkdir(exist_ok=True)
                save_features(path, features, np.asarray(labels), names, epoch)
                self.seconds[path.name] = round(time.perf_counter() - start, 2)

    def _features(self, model, images: torch.Tensor, device, trainer) -> np.ndarray:
        return torch.cat([model.forward_features(trainer.precision_plugin.convert_input(x)).float().cpu()
                          for _, x in batches(images, self.batch_size, device, self.prepare)]).numpy()
