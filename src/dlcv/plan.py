"""The run's plan: its length in optimiser steps, which the schedules, the data and the callbacks follow.

``train.epochs`` fixes it when the fit begins; under a time budget ``dlcv.budget.TimeBudget`` re-plans
``total_steps`` as the run goes, so every schedule ends with the run."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass
class Plan:
    """The run's length in optimiser steps, shared by the task, the data and the callbacks.

    Its one writer is the fit (``begin``) and then the budget; the others read it.

    Attributes:
        total_steps: the steps planned.
        steps_per_epoch: steps in each epoch; 0 until the fit begins.
        clock: the run's time function, in seconds.
    """

    total_steps: int = 0
    steps_per_epoch: int = 0
    clock: Callable[[], float] = field(default=time.perf_counter, repr=False, compare=False)

    def begin(self, steps_per_epoch: int, epochs: int) -> None:
        """Plan ``epochs`` epochs of ``steps_per_epoch`` steps (at least 1); under a budget a first guess."""
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.total_steps = self.steps_per_epoch * epochs

    @property
    def epochs(self) -> float | None:
        """The epochs planned: the steps over the steps of an epoch; None before those are known."""
        return self.total_steps / self.steps_per_epoch if self.steps_per_epoch else None

    @property
    def last_epoch(self) -> int | None:
        """The epoch (counted from 1) in which training stops; None before the plan is made."""
        return math.ceil(self.total_steps / self.steps_per_epoch) if self.steps_per_epoch else None

    def progress(self, step: int, start: int = 0) -> float:
        """Return how far ``step`` is between ``start`` and the run's last step, in [0, 1]."""
        return min(1.0, max(0.0, (step - start) / max(1, self.total_steps - start)))

    def now(self, device: torch.device) -> float:
        """Read the clock once ``device`` has finished the work queued so far (CUDA runs ahead of the host)."""
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return self.clock()
