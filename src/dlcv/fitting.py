"""The one fit driver behind every training command: a ``Command`` holds what differs, ``fit`` runs the sequence.

Check the recipe and lock the run folder (both before any data is read); build data and task; ``trainer.fit``; score
``best.ckpt`` on the final set in every process; write ``summary.json``. ``train.budget`` bounds the whole sequence.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dlcv.io import FolderLock
from dlcv.runs import RunFolder, check_run_dir, open_run_dir, override_keys, run_recipe
from dlcv.runtime import adopt_slurm_layout, check_devices, is_primary_process, resolve_precision


def say(*args, **kwargs) -> None:
    """``print`` in the first process only: a multi-process run prints each line once."""
    if is_primary_process():
        print(*args, **kwargs, flush=True)


def no_callbacks(recipe, data, run_dir: Path, plan) -> list:
    """A command without callbacks of its own."""
    return []


@dataclass(frozen=True)
class Command:
    """A training command as ``fit`` runs it: its recipe type, data folder and the parts that differ.

    ``make_data(folder, recipe, plan)``; ``make_task(recipe, data, plan)``; ``make_callbacks(recipe, data, run_dir,
    plan)``, whose ``summary_fields()`` join ``summary.json``; ``summarize(summary, recipe, trainer, task, data, run)``
    completes ``summary.json`` and returns the closing lines. ``inputs``: other folders the run must not write into."""

    recipe_type: type
    data: str | os.PathLike
    make_data: Callable
    make_task: Callable
    summarize: Callable
    make_callbacks: Callable = no_callbacks
    inputs: tuple = ()
    trainer_options: dict = field(default_factory=dict)
    fixed: tuple[str, ...] = ()  # recipe keys the command sets itself, which a resumed run must find unchanged

    @property
    def folders(self) -> tuple:
        """The folders the command reads: its run folder must be none of them."""
        return (self.data, *self.inputs)


def fit(command: Command, config, runs_dir: str | os.PathLike = "runs", name: str | None = None,
        overrides: tuple[str, ...] = (), overwrite: bool = False, resume: bool = False) -> Path:
    """Train ``command`` from ``config`` (a recipe file or ``command.recipe_type``; None: the defaults) and return the
    run folder, locked until the fit ends; ``resume`` continues the run of that name (a ``train.budget`` override:
    within that budget from now)."""
    start = time.perf_counter()  # a time budget counts from here
    recipe = run_recipe(command.recipe_type, config, overrides, name, runs_dir, resume, command.fixed)
    adopt_slurm_layout()
    check_devices(recipe.train.accelerator, recipe.train.num_nodes)
    with FolderLock(Path(runs_dir) / recipe.name) as lock, torch_threads(recipe.train.threads):
        lock.take()
        if not resume and is_primary_process():
            check_run_dir(runs_dir, recipe.name, overwrite, inputs=command.folders)
        anew = resume and "train.budget" in override_keys(overrides)
        return _fit(command, recipe, runs_dir, (overwrite, resume, anew), start, lock)


def _fit(command: Command, recipe, runs_dir, flags: tuple[bool, bool, bool], start: float, lock) -> Path:
    """``fit`` after the lock: data, task, trainer, fit, scoring, summary; ``flags``: (overwrite, resume, anew)."""
    import lightning as L

    from dlcv.data.synth import is_synthetic
    from dlcv.plan import Plan
    from dlcv.trainer import build_trainer

    overwrite, resume, anew = flags
    train, plan = recipe.train, Plan()  # begun below, once the trainer knows its processes
    data = command.make_data(command.data, recipe, plan)
    data.prepare()  # bad data fails here, before anything is written
    # The recipe stays as loaded; what this run derives from the hardware and the data lives beside it.
    resolved = {"precision": resolve_precision(train.precision, train.accelerator), **data.resolved(),
                "data": str(Path(command.data).resolve()), "synthetic_data": is_synthetic(command.data)}
    L.seed_everything(recipe.seed, workers=True, verbose=False)
    task = command.make_task(recipe, data, plan)  # a weights file that fails does so before the run folder
    budget = time_budget(recipe, data, task, plan, start, anew) if train.budget else None
    lock.take(create=True)  # where the runs folder was missing at the first check
    run_dir, resume_from = open_run_dir(runs_dir, recipe, overwrite, resume, inputs=command.folders)
    if is_primary_process():
        RunFolder(run_dir).write_resolved(resolved)
    say(f"run folder: {run_dir}  ({data.describe()}, precision {resolved['precision']})")
    if resume_from is not None:
        say(f"resuming from {resume_from} with the run's saved recipe"
            + (f", within a new budget of {train.budget} from now" if anew else ""))
    callbacks = command.make_callbacks(recipe, data, run_dir, plan)
    # Under a budget the loop has no set end: the plan stops it.
    trainer = build_trainer(run_dir, recipe, monitor=task.monitor, mode=task.mode,
                            max_epochs=-1 if budget else train.epochs, extra_callbacks=tuple(callbacks),
                            first_callbacks=(budget,) if budget else (), plan=plan,
                            precision=resolved["precision"], **command.trainer_options)
    plan.begin(data.steps_per_epoch(trainer.world_size), train.epochs)  # a budget's first plan, until timed
    trainer.fit(task, datamodule=data, ckpt_path=resume_from)
    fit_seconds = time.perf_counter() - start
    score_best(trainer, task, data, run_dir, recipe.task)
    if trainer.is_global_zero:
        summary = {"name": recipe.name, "epochs": trained_epochs(trainer, task), "fit_seconds": round(fit_seconds, 1)}
        lines = _summarize(command, summary, recipe, trainer, task, data, RunFolder(run_dir), callbacks, budget)
        for line in [*lines, *([budget.closing_line(trainer)] if budget else [])]:
            print(line, flush=True)
    trainer.strategy.barrier("summary written")  # every process leaves once it is written
    return run_dir


def _summarize(command: Command, summary: dict, recipe, trainer, task, data, run: RunFolder, callbacks,
               budget) -> list[str]:
    """Write ``summary.json`` with the callbacks', command's and budget's fields; return the command's closing lines."""
    for callback in callbacks:
        summary.update(getattr(callback, "summary_fields", dict)())
    lines = command.summarize(summary, recipe, trainer, task, data, run)
    if budget is not None:
        summary["budget"] = budget.summary(trainer)
    run.write_summary(summary)
    return lines


def selection_summary(summary: dict, recipe, trainer, task, run: RunFolder, final_line: str | None) -> list[str]:
    """A supervised run's ``summary.json`` fields (model, checkpoint choice) and closing lines, plus ``final_line``."""
    cfg, metric = recipe.data, task.monitor
    best = getattr(trainer.checkpoint_callback, "best_model_score", None)  # no checkpoint callback: None
    best = float(best) if best is not None else None
    summary.update({"model": recipe.model.name,
                    "selected_on": f"holdout {cfg.holdout:.0%} of {cfg.train}" if cfg.holdout > 0 else cfg.validation,
                    f"best_{metric}": best, "best_checkpoint": str(run.best)})
    return [f"best {metric} {f'{best:.4f}' if best is not None else '-'} (selected on {summary['selected_on']}); "
            f"fit took {summary['fit_seconds'] / 60:.1f} min", *([final_line] if final_line else []),
            f"best checkpoint: {run.best}"]


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """``train.threads`` for one fit only: the process's count is restored after it, for later fits in the process."""
    import torch

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def time_budget(recipe, data, task, plan, started: float, anew: bool = False):
    """The callback that re-plans ``plan`` to end within ``train.budget`` (``anew``: a resumed run's new budget,
    counted from ``started``); validation and final scoring are guessed from a training step's cost until timed."""
    from dlcv.budget import TimeBudget
    from dlcv.recipes import parse_duration

    train, scale = recipe.train, recipe.evaluation_scale()
    n_train, n_val, n_final = data.counts()
    n_val, n_final = round(n_val * scale), round(n_final * scale)  # in training-sized images
    val_passes = n_val * task.passes(train.val_tta)
    return TimeBudget(parse_duration(train.budget), started, plan, val_guess=val_passes / max(1, 3 * n_train),
                      final_ratio=n_final * task.passes(train.tta) / max(1, val_passes),
                      final_images=n_final / max(1, n_val), say=say, anew=anew,
                      reference_epochs=train.reference_epochs)


def trained_epochs(trainer, task) -> int | float:
    """Epochs trained: whole, or under a budget steps over steps per epoch (the last may be partial)."""
    if task.recipe.train.budget and task.plan.steps_per_epoch:
        return round(trainer.global_step / task.plan.steps_per_epoch, 2)
    return trainer.current_epoch


def score_best(trainer, task, data, run_dir: Path, kind: str) -> None:
    """Score ``best.ckpt`` on the final set by ``trainer.test`` in every process; ``task.final_confusion`` sums them."""
    from dlcv.checkpoints import load_model_weights, read_checkpoint

    best = RunFolder(run_dir).best
    if data.test_tensors() is None or not best.is_file():
        return
    ckpt, recipe = read_checkpoint(best, kind)
    load_model_weights(task.model, ckpt, best, recipe.model.name)
    trainer.test(task, datamodule=data, verbose=False)
