"""The one training sequence behind every training command, in the order a fit must keep: ``run`` checks and locks,
``Fit.prepared`` reads the data and seeds, ``Fit.fit`` trains, scores ``best.ckpt`` and writes ``summary.json``."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from pathlib import Path

from dlcv.errors import Stopped
from dlcv.files import write_error
from dlcv.io import WRITE_ERRORS, FolderLock
from dlcv.runs import RunFolder, check_run_dir, open_run_dir, override_keys, run_recipe, settle_replaced
from dlcv.runtime import adopt_slurm_layout, check_devices, is_primary_process, resolve_precision


def say(*args, **kwargs) -> None:
    """``print`` in the first process only: a multi-process run prints each line once."""
    if is_primary_process():
        print(*args, **kwargs, flush=True)


@contextlib.contextmanager
def run(recipe_type: type, config, data: str | os.PathLike, runs_dir: str | os.PathLike = "runs",
        name: str | None = None, overrides: tuple[str, ...] = (), overwrite: bool = False, resume: bool = False,
        fixed: tuple[str, ...] = (), inputs: tuple = ()):
    """Yield the ``Fit`` of a ``recipe_type`` from ``config`` (a recipe file or a built recipe; None: the defaults) on
    the ``data`` folder, its run folder locked until the fit ends. ``resume`` continues the run of that name (a
    ``train.budget`` override: within that budget from now); ``fixed``: keys the caller set on a built recipe, which a
    resume must find unchanged; ``inputs``: other folders the run reads, which it must not write into."""
    start = time.perf_counter()  # a time budget counts from here
    recipe = run_recipe(recipe_type, config, overrides, name, runs_dir, resume, fixed)
    check_model_memory(recipe)
    adopt_slurm_layout()
    check_devices(recipe.train.accelerator, recipe.train.num_nodes)
    folders = (data, *inputs)
    with FolderLock(Path(runs_dir) / recipe.name) as lock, torch_threads(recipe.train.threads):
        lock.take()
        if is_primary_process():
            settle_replaced(Path(runs_dir) / recipe.name)  # what an --overwrite killed before it ended set aside
        if not resume and is_primary_process():
            check_run_dir(runs_dir, recipe.name, overwrite, inputs=folders)
        anew = resume and "train.budget" in override_keys(overrides)
        yield Fit(recipe, runs_dir, folders, (overwrite, resume, anew), start, lock)


def check_model_memory(recipe) -> None:
    """A recipe's model (a ``model: {name, args}`` section) whose training state would not fit the machine, refused
    before any folder is made (``dlcv.models.registry.check_training_memory``)."""
    from dlcv.models.registry import check_training_memory

    model = getattr(recipe, "model", None)
    if isinstance(getattr(model, "args", None), dict) and isinstance(getattr(model, "name", None), str):
        classes = recipe.CLASSES or getattr(recipe.data, "num_classes", None) or 2  # the head is a small share
        check_training_memory(model.name, recipe.task, model.args, classes, recipe.train.accelerator)


class Fit:
    """One run after ``run``'s checks: its ``recipe``, its ``plan`` (begun once the trainer knows its processes) and
    its run folder ``dir``; ``prepared`` and then ``fit``."""

    def __init__(self, recipe, runs_dir, folders: tuple, flags: tuple[bool, bool, bool], start: float, lock):
        """``folders``: the data folder and the other inputs; ``flags``: (overwrite, resume, anew)."""
        from dlcv.plan import Plan

        self.recipe, self.plan, self.dir = recipe, Plan(), Path(runs_dir) / recipe.name
        self._runs_dir, self._folders, self._flags, self._start, self._lock = runs_dir, folders, flags, start, lock
        self._resolved: dict | None = None

    def prepared(self, data):
        """``data`` read and checked (bad data fails here, before anything is written), then the run seeded, so the
        task built next starts alike each time; returns ``data``."""
        import lightning as L

        from dlcv.data.synth import is_synthetic

        data.prepare()
        folder = Path(self._folders[0])
        # The recipe stays as loaded; what this run derives from the hardware and the data lives beside it.
        self._resolved = {"precision": resolve_precision(self.recipe.train.precision, self.recipe.train.accelerator),
                          **data.resolved(), "data": str(folder.resolve()), "synthetic_data": is_synthetic(folder)}
        L.seed_everything(self.recipe.seed, workers=True, verbose=False)
        return data

    def fit(self, data, task, callbacks=(), **trainer_options) -> Path:
        """Train ``task`` on ``data`` (``prepared``) with ``callbacks`` (their ``summary_fields()`` join
        ``summary.json``), score the best checkpoint, write ``summary.json`` with ``task.summarize`` and print its
        closing lines; return the run folder. ``trainer_options``: the command's own Lightning trainer arguments."""
        from dlcv.trainer import build_trainer

        if self._resolved is None:
            raise RuntimeError("Fit.fit needs the data module through Fit.prepared first")
        (overwrite, resume, anew), recipe, plan = self._flags, self.recipe, self.plan
        train, resolved = recipe.train, self._resolved
        budget = time_budget(recipe, data, task, plan, self._start, anew) if train.budget else None
        self._lock.take(create=True)  # where the runs folder was missing at the first check
        shapes = {k: tuple(v.shape) for k, v in task.state_dict().items()} if resume else None
        run_dir, resume_from = open_run_dir(self._runs_dir, recipe, overwrite, resume, self._folders, shapes)
        run = RunFolder(run_dir)
        if is_primary_process():
            run.write_resolved(resolved)
        say(f"run folder: {run_dir}  ({data.describe()}, precision {resolved['precision']})")
        if resume_from is not None:
            say(f"resuming from {resume_from} with the run's saved recipe"
                + (f", within a new budget of {train.budget} from now" if anew else ""))
        # Under a budget the loop has no set end: the plan stops it.
        trainer = build_trainer(run_dir, recipe, monitor=task.monitor, mode=task.mode,
                                max_epochs=-1 if budget else train.epochs, extra_callbacks=tuple(callbacks),
                                first_callbacks=(budget,) if budget else (), plan=plan,
                                precision=resolved["precision"], **trainer_options)
        plan.begin(data.steps_per_epoch(trainer.world_size), train.epochs)  # a budget's first plan, until timed
        train_run(trainer, task, data, resume_from, run)
        fit_seconds = time.perf_counter() - self._start
        score_best(trainer, task, data, run.best)
        if trainer.is_global_zero:
            summary = {"name": recipe.name, "epochs": trained_epochs(trainer, task),
                       "fit_seconds": round(fit_seconds, 1)}
            for callback in callbacks:
                summary.update(getattr(callback, "summary_fields", dict)())
            lines = task.summarize(summary, data, run)
            if budget is not None:
                summary["budget"] = budget.summary(trainer)
                lines.append(budget.closing_line(trainer))
            run.write_summary(summary)
            for line in lines:
                print(line, flush=True)
        trainer.strategy.barrier("summary written")  # every process leaves once it is written
        return run_dir


def train_run(trainer, task, data, resume_from: Path | None, run: RunFolder) -> None:
    """``trainer.fit`` into ``run``; how it ended said in one line (``failed_fit``). A new run that ends before its
    first checkpoint leaves no folder to block the command's rerun, and the run ``--overwrite`` set aside comes back;
    one that has a checkpoint replaces it."""
    try:
        trainer.fit(task, datamodule=data, ckpt_path=resume_from)
    except BaseException as exc:
        if is_primary_process() and resume_from is None and not run.last.is_file():
            shutil.rmtree(run.path, ignore_errors=True)  # only what this fit wrote: its recipe, logs, no checkpoint
        raise failed_fit(exc, trainer, run) from None
    finally:
        if is_primary_process():
            settle_replaced(run.path)


def failed_fit(exc: BaseException, trainer, run: RunFolder) -> BaseException:
    """The one line of a fit that a signal ended (SIGTERM: exit 143, SIGINT: 130), saying how it goes on, or that a
    writer naming no file met a full disk (TensorBoard's, from its thread); any other ``exc`` as it is. Lightning turns
    Ctrl-C into ``SystemExit(1)`` and its own SIGTERM handling into a ``SIGTERMException``."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    if isinstance(exc, OSError) and not exc.filename and exc.errno in WRITE_ERRORS:
        return write_error(run.path, exc)
    if not isinstance(exc, (Stopped, SystemExit)):
        return exc
    if isinstance(exc, Stopped):
        signum = exc.exit_status - 128
    elif isinstance(exc, SIGTERMException):
        signum = signal.SIGTERM
    elif trainer.interrupted:
        signum = signal.SIGINT
    else:
        return exc
    after = ("--resume continues from its last checkpoint" if run.last.is_file() else
             "it had no checkpoint yet: run the command again")  # a resumed run always has one
    return Stopped(f"{run.path}: stopped by {signal.Signals(signum).name} at epoch {trainer.current_epoch + 1}; "
                   f"{after}", signum)


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


def score_best(trainer, task, data, best: Path) -> None:
    """Score ``best.ckpt`` on the final set by ``trainer.test`` in every process; ``task.final_confusion`` sums them."""
    from dlcv.checkpoints import load_model_weights, read_checkpoint

    if data.test_tensors() is None or not best.is_file():
        return
    ckpt, recipe = read_checkpoint(best, task.recipe.task)
    load_model_weights(task.model, ckpt, best, recipe.model.name)
    trainer.test(task, datamodule=data, verbose=False)
