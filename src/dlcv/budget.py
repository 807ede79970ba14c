"""Training to a time budget: the whole command, final scoring included, ends within ``train.budget``.

Steps are planned from the measured speed and re-planned each epoch, so the schedules (``dlcv.plan.Plan``) always
finish, the run stopping mid-epoch if need be; a resumed run keeps its checkpoint's budget unless given a new one."""

from __future__ import annotations

import math
import statistics
import time

import lightning as L

from dlcv.plan import Plan
from dlcv.rules import format_duration

WARM_STEPS = 2  # the first steps of a command (kernel choice, caches) are not timed
SPEED_STEPS = 64  # the step time is measured over the latest epochs that hold at least this many steps
# Left unplanned for the work after the final scoring and a slow last epoch: seconds + share of the budget.
TAIL = (2.5, 0.01)


def plan_steps(seconds: float, step_seconds: float, epoch_seconds: float, done: int, per_epoch: int) -> int:
    """Return the most optimiser steps taken, never fewer than ``done``, once ``seconds`` have passed.

    Args:
        seconds: the time left to train, in seconds.
        step_seconds: one step's time, in seconds.
        epoch_seconds: each epoch's extra time at its end (a partial last epoch's too), in seconds.
        done: the steps taken so far.
        per_epoch: steps per epoch.

    Returns:
        The total steps planned.
    """
    step_seconds = max(step_seconds, 1e-9)
    first = per_epoch - done % per_epoch  # the steps to the end of the current epoch (a whole one at a boundary)

    def partial(left: float, limit: int) -> int:
        return max(0, min(limit, math.floor((left - epoch_seconds) / step_seconds)))

    cost = first * step_seconds + epoch_seconds
    if seconds < cost:
        return done + partial(seconds, first - 1)
    epoch_cost = per_epoch * step_seconds + epoch_seconds
    full = math.floor((seconds - cost) / epoch_cost)
    left = seconds - cost - full * epoch_cost
    return done + first + full * per_epoch + partial(left, per_epoch - 1)


class TimeBudget(L.Callback):
    """Callback that plans the run's steps to end by the deadline, and stops the run there."""

    def __init__(self, seconds: float, started: float, plan: Plan, val_guess: float, final_ratio: float,
                 final_images: float = 0.0, print_line=print, new_budget: bool = False,
                 reference_epochs: float | None = None, clock=time.perf_counter):
        """Set the budget; the first plan follows once the first steps are timed.

        Args:
            seconds: the budget, in seconds.
            started: a ``clock`` reading at the command's start.
            plan: the run's plan, which this callback re-plans.
            val_guess: a validation's time as a share of a training epoch's, until measured.
            final_ratio: the final scoring's time in validations, until probed.
            final_images: the final set's size over the validation set's (0: no final scoring).
            print_line: prints a line (the first process's ``print``).
            new_budget: a resumed run given a new budget, counted from ``started``.
            reference_epochs: the epochs the recipe's documented figure took; a shorter plan warns.
            clock: the time function, in seconds; the plan's too.
        """
        self.seconds, self.started, self.plan, self.new_budget = float(seconds), started, plan, new_budget
        self.clock = plan.clock = clock  # the one time function of the budget and the plan's ``now``
        self.reference_epochs = reference_epochs
        self.val_guess, self.final_ratio = val_guess, final_ratio
        self.final_images = final_images
        self.final_per_val: float | None = None  # a final-scoring batch's time over a validation batch's
        self.print_line = print_line
        self.spent_before = 0.0  # a resumed run: the seconds its earlier commands spent
        self.planned = False  # planned in this command (a resumed run measures its machine again)
        self.step_seconds: float | None = None
        self.epoch_steps: list[tuple[int, float]] = []  # each epoch's (steps, seconds of training)
        self.epoch_costs: list[float] = []  # each epoch's fixed cost (its time less its steps')
        self.val_seconds: float | None = None
        self.setup_seconds = 0.0  # this command's time before its first step (data, model, trainer, sanity check)
        self._marks: dict[str, float] = {}
        self._start_step = 0

    # --- the deadline and the plan -------------------------------------------------------------------
    def seconds_left(self) -> float:
        """Return the seconds of the budget left now."""
        return self.seconds - self.spent_before - (self.clock() - self.started)

    def reserve(self) -> float:
        """Return the seconds left over when training ends: final scoring, the last epoch's extra work, the tail."""
        validation = self.val_seconds  # until one is timed, the guess that prices an epoch's end
        if validation is None:
            validation = self.val_guess * self.plan.steps_per_epoch * (self.step_seconds or 0.0)
        final = validation * self.final_validations()
        extra = max(self.epoch_costs) - statistics.median(self.epoch_costs) if self.epoch_costs else 0.0
        return final + extra + TAIL[0] + TAIL[1] * self.seconds

    def final_validations(self) -> float:
        """Return the final scoring's time in validations: measured once the probe has run, else the first guess."""
        return self.final_ratio if self.final_per_val is None else self.final_images * self.final_per_val

    def epoch_cost(self, per_epoch: int) -> float:
        """Return an epoch's time beyond its steps, in seconds: the measured median, else the first guess."""
        if self.epoch_costs:
            return statistics.median(self.epoch_costs)
        return self.val_guess * per_epoch * (self.step_seconds or 0.0)

    def replan(self, trainer) -> None:
        """Plan the steps from the latest measurements (first process), the same plan in every process.

        The first plan of the command is printed, with a note when it falls short of ``reference_epochs``.
        """
        per_epoch = self.plan.steps_per_epoch
        total = plan_steps(self.seconds_left() - self.reserve(), self.step_seconds or 0.0,
                           self.epoch_cost(per_epoch), trainer.global_step, per_epoch)
        total = trainer.strategy.broadcast(total, src=0)
        self.plan.total_steps = max(total, trainer.global_step)
        if not self.planned:
            self.planned = True
            left = format_duration(self.seconds_left())
            ending = (f"{left} left" if self.plan.total_steps > trainer.global_step else
                      f"{left} left after a setup of {format_duration(self.setup_seconds)}: no time for more steps, "
                      f"training stops here and the final scoring follows (a larger budget trains)")
            self.print_line(f"budget {format_duration(self.seconds)}: {self.step_seconds:.3f} s a step, "
                            f"{self.epoch_cost(per_epoch):.1f} s more an epoch -> {self.plan.total_steps} steps "
                            f"= {self.plan.epochs:.2f} epochs, {ending}")
            if self.reference_epochs and self.plan.epochs < self.reference_epochs:
                self.print_line(f"note: the recipe's figure (docs/results.md) was reached in "
                                f"{self.reference_epochs:g} epochs or more; at this speed the budget affords "
                                f"{self.plan.epochs:.2f}, so it may not be reached: give a larger --budget")

    # --- Lightning's hooks ---------------------------------------------------------------------------
    def on_train_start(self, trainer, pl_module) -> None:
        self._start_step = trainer.global_step
        self._marks["boundary"] = self.clock()
        self.setup_seconds = self._marks["boundary"] - self.started

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._marks["epoch"] = self.clock()
        self._marks["epoch_step"] = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        taken = trainer.global_step - self._start_step
        per_epoch = self.plan.steps_per_epoch
        warm_end = WARM_STEPS + max(3, min(20, per_epoch // 5))
        if warm_end < per_epoch and self._measure_due(taken, warm_end):
            now = self.plan.now(pl_module.device)
            if taken == WARM_STEPS:
                self._marks["warm"] = now
            elif "warm" in self._marks:
                self.step_seconds = (now - self._marks["warm"]) / (taken - WARM_STEPS)
                self.replan(trainer)
        self._marks["batch"] = self.clock()
        if self.planned and trainer.global_step >= self.plan.total_steps:
            trainer.should_stop = True

    def _measure_due(self, taken: int, warm_end: int) -> bool:
        """Whether to time the steps now: at the warm-up's end and ``warm_end``, then at each doubling in epoch 1.

        Timing again as the steps double keeps slow first steps from fixing too short a plan.
        """
        if not self.planned:
            return taken in (WARM_STEPS, warm_end)
        doubling, rest = divmod(taken, warm_end)
        return not rest and doubling > 1 and doubling & (doubling - 1) == 0 and not self.epoch_steps

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._marks["validation"] = self.clock()

    def _probe_due(self, trainer, batch_idx: int) -> bool:
        """The first warm validation batch (the second of the first validation, the first of a later one), once."""
        warm = batch_idx == 1 or (batch_idx == 0 and self.val_seconds is not None)
        unmeasured = self.final_per_val is None and "val_step" not in self._marks
        return self.final_images > 0 and unmeasured and warm and not trainer.sanity_checking

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if self._probe_due(trainer, batch_idx):
            self._marks["val_batch"] = self.plan.now(pl_module.device)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        """Time this validation step, then the final scoring's prediction of the same batch (the probe).

        The probe runs ``final_predictions`` under the final scoring's autocast: its test-time augmentation, its sizes.
        """
        if "val_batch" not in self._marks:
            return
        self._marks["val_step"] = self.plan.now(pl_module.device) - self._marks.pop("val_batch")
        x, y = batch
        start = self.plan.now(pl_module.device)
        with trainer.precision_plugin.test_step_context():
            pl_module.final_predictions(x, y)
        self._marks["final_step"] = self.plan.now(pl_module.device) - start

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        probe, validation = self._marks.pop("final_step", None), self._marks.pop("val_step", None)
        if probe is not None and validation is not None:
            # probe + validation step bounds a final-scoring step (prediction and metric update) from above.
            self.final_per_val = 1.0 + probe / max(validation, 1e-9)
            self._marks["probe"] = probe  # not the validation's time, nor the epoch's
        if not trainer.sanity_checking and "validation" in self._marks:
            self.val_seconds = self.clock() - self._marks["validation"] - self._marks.get("probe", 0.0)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        now = self.clock()
        probe = self._marks.pop("probe", 0.0)
        steps = trainer.global_step - self._marks.get("epoch_step", trainer.global_step)
        # The command's first steps (kernel choice, lazy loading) are a one-off: neither a step's time nor an epoch's.
        timed_from, one_off = self._marks.get("epoch"), 0.0
        warm = self._marks.pop("warm", None) if not self.epoch_steps else None
        if warm is not None and steps > WARM_STEPS:
            steps, timed_from, one_off = steps - WARM_STEPS, warm, warm - timed_from
        if steps > 0 and "batch" in self._marks:
            training = self._marks["batch"] - timed_from
            self.epoch_steps.append((steps, training))
            self.epoch_costs.append(max(0.0, now - self._marks["boundary"] - one_off - training - probe))
            self.step_seconds = latest_step_seconds(self.epoch_steps)
        self._marks["boundary"] = now
        if trainer.should_stop:
            return
        self.replan(trainer)
        if self.plan.total_steps <= trainer.global_step:  # no time for another step: this epoch was the last
            trainer.should_stop = True

    def used(self) -> float:
        """Return the seconds the run's commands have spent of the budget so far."""
        return self.spent_before + self.clock() - self.started

    def state_dict(self) -> dict:
        return {"seconds": self.seconds, "spent": self.used(),
                "total_steps": self.plan.total_steps}

    def load_state_dict(self, state: dict) -> None:
        self.spent_before = 0.0 if self.new_budget else spent_under(state, self.seconds) or 0.0
        self.plan.total_steps = int(state.get("total_steps", self.plan.total_steps))

    def closing_line(self, trainer) -> str:
        """Return the run's closing line on the budget: steps and epochs trained, time used."""
        used = self.used()
        epochs = trainer.global_step / max(1, self.plan.steps_per_epoch)
        return (f"budget {format_duration(self.seconds)}: {trainer.global_step} steps = {epochs:.2f} "
                f"epochs; {format_duration(used)} used so far ({used / self.seconds:.1%})")

    def summary(self, trainer) -> dict:
        """Return the budget's part of ``summary.json``: what was planned and measured."""
        return {"seconds": self.seconds, "spent_before": round(self.spent_before, 1),
                "used_seconds": round(self.used(), 1), "setup_seconds": round(self.setup_seconds, 1),
                "steps": trainer.global_step, "steps_per_epoch": self.plan.steps_per_epoch,
                "step_seconds": round(self.step_seconds, 4) if self.step_seconds else None,
                "epoch_seconds": round(self.epoch_cost(self.plan.steps_per_epoch), 2),
                "validation_seconds": round(self.val_seconds, 2) if self.val_seconds else None,
                "final_scoring_validations": round(self.final_validations(), 2)
                if self.final_per_val is not None else None}


def spent_under(state: dict, seconds: float) -> float | None:
    """Return the seconds a checkpoint's ``TimeBudget`` state says were spent of a budget of ``seconds``.

    None when it holds none, or they were spent under another budget (a new budget counts from its own start).
    """
    if not isinstance(state, dict) or not isinstance(state.get("spent"), (int, float)):
        return None
    return float(state["spent"]) if float(state.get("seconds", seconds)) == float(seconds) else None


def latest_step_seconds(epochs: list[tuple[int, float]]) -> float:
    """Return seconds per step over the latest epochs with ``SPEED_STEPS`` steps (or all): recent yet steady."""
    steps = seconds = 0.0
    for count, spent in reversed(epochs):
        steps, seconds = steps + count, seconds + spent
        if steps >= SPEED_STEPS:
            break
    return seconds / steps

