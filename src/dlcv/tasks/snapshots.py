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
    """The task's model in eval mode, without gradients, in the run's precision (the context of its training
    steps: a bf16 or, on a T4 or V100, float16 autocast); restored after. Inputs go through the precision plugin's
    ``convert_input`` (the dtype the run's model takes: bf16 for ``bf16-true``)."""
    model = pl_module.model
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), trainer.precision_plugin.forward_context():
            yield model
    finally:
        model.train(was_training)


class ChosenEpochs(L.Callback):
    """A callback working at chosen epochs: numbers, ``last`` (after which training stops) and ``middle`` (the first at
    or past half the planned epochs; once, also across a resume), by ``plan`` as it stands at each epoch's end."""

    def __init__(self, epochs: list[int | str], plan: Plan | None = None):
        self.numbers = {e for e in epochs if isinstance(e, int)}
        self.words = {e for e in epochs if isinstance(e, str)}
        self.plan = plan if plan is not None else Plan()
        self.middle_done = False

    def due(self, trainer) -> bool:
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
    """At the end of each chosen epoch, save the model's features of fixed image sets: ``sets`` maps a file prefix
    ("" for the validation images, ``TRAINING_SUBSET`` for a training subset) to ``(uint8 images, labels, file
    names)``; ``prepare`` turns a uint8 batch into model input."""

    def __init__(self, run_dir: Path, epochs: list[int | str], sets: dict[str, tuple], prepare: Callable,
                 batch_size: int = 500, plan: Plan | None = None):
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
