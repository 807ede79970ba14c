"""The one training sequence behind every training command, in the order a fit must keep.

``run`` checks and locks, ``Fit.prepared`` reads the data and seeds, ``Fit.fit`` trains, scores ``best.ckpt`` and
writes ``summary.json``.
"""

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
from dlcv.run_setup import check_run_dir, open_run_dir, override_keys, run_recipe, settle_replaced
from dlcv.runs import RunFolder
from dlcv.runtime import adopt_slurm_layout, check_devices, is_primary_process, resolve_precision


def rank_zero_print(*args, **kwargs) -> None:
    """Print (flushed) in the first process only, so that a multi-process run prints each line once."""
    if is_primary_process():
        print(*args, **kwargs, flush=True)


@contextlib.contextmanager
def run(recipe_type: type, config, data: str | os.PathLike, runs_dir: str | os.PathLike = "runs",
        name: str | None = None, overrides: tuple[str, ...] = (), overwrite: bool = False, resume: bool = False,
        caller_keys: tuple[str, ...] = (), inputs: tuple = ()):
    """Yield the ``Fit`` of a recipe on a data folder, its run folder locked until the fit ends.

    Args:
        recipe_type: the task's recipe class.
        config: a recipe file or a built recipe; None: the defaults.
        data: the data folder.
        runs_dir: the folder that holds the run folders.
        name: the run's name; None: the recipe's.
        overrides: ``key=value`` recipe overrides.
        overwrite: replace an existing run of that name.
        resume: continue the run of that name; with a ``train.budget`` override, within that budget from now.
        caller_keys: keys the caller set on a built recipe, which a resume must find unchanged.
        inputs: other folders the run reads, which it must not write into.

    Yields:
        The ``Fit``.

    Raises:
        DlcvError: for a broken recipe or override, a model too large for the machine, devices or nodes this
            machine lacks, or a run folder that is taken or cannot be resumed.
    """
    start = time.perf_counter()  # a time budget counts from here
    recipe = run_recipe(recipe_type, config, overrides, name, runs_dir, resume, caller_keys)
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
        new_budget = resume and "train.budget" in override_keys(overrides)
        yield Fit(recipe, runs_dir, folders, (overwrite, resume, new_budget), start, lock)


def check_model_memory(recipe) -> None:
    """Refuse a recipe's model whose training state would not fit the machine, before any folder is made.

    Only recipes with a ``model: {name, args}`` section are checked (``dlcv.models.registry.check_training_memory``).

    Raises:
        DlcvError: if the model is unknown, its arguments break a rule, or its training state does not fit.
    """
    from dlcv.models.registry import check_training_memory

    model = getattr(recipe, "model", None)
    if isinstance(getattr(model, "args", None), dict) and isinstance(getattr(model, "name", None), str):
        classes = recipe.CLASSES or getattr(recipe.data, "num_classes", None) or 2  # the head is a small share
        check_training_memory(model.name, recipe.task, model.args, classes, recipe.train.accelerator)


class Fit:
    """One run after ``run``'s checks: call ``prepared``, then ``fit``.

    It holds the ``recipe``, the ``plan`` (begun once the trainer knows its processes) and the run folder ``dir``.
    """

    def __init__(self, recipe, runs_dir, folders: tuple, flags: tuple[bool, bool, bool], start: float, lock):
        """Keep what ``run`` checked.

        Args:
            recipe: the run's recipe.
            runs_dir: the folder that holds the run folders.
            folders: the data folder, then the other inputs.
            flags: (overwrite, resume, new_budget); new_budget: a resumed run given a new budget.
            start: the ``time.perf_counter()`` reading at the command's start, from which a budget counts.
            lock: the run folder's ``FolderLock``.
        """
        from dlcv.plan import Plan

        self.recipe, self.plan, self.dir = recipe, Plan(), Path(runs_dir) / recipe.name
        self._runs_dir, self._folders, self._flags, self._start, self._lock = runs_dir, folders, flags, start, lock
        self._resolved: dict | None = None

    def prepared(self, data):
        """Read and check ``data`` (bad data fails here, before anything is written), then seed the run.

        Seeding here makes the task built next start alike each time.

        Args:
            data: the run's data module.

        Returns:
            ``data``, read.
        """
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
        """Train ``task``, score the best checkpoint, write ``summary.json`` and print the closing lines.

        Args:
            data: the data module, through ``prepared`` first.
            task: the Lightning task to train; ``task.summarize`` fills ``summary.json``.
            callbacks: more callbacks; each one's ``summary_fields()`` joins ``summary.json``.
            **trainer_options: the command's own Lightning ``Trainer`` arguments.

        Returns:
            The run folder.

        Raises:
            RuntimeError: if ``prepared`` was not called first.
            Stopped: if a signal ended the fit (``failed_fit``).
            DlcvError: if the run folder cannot be opened or written, or the fit fails in a way dlcv names.
        """
        from dlcv.trainer import build_trainer

        if self._resolved is None:
            raise RuntimeError("Fit.fit needs the data module through Fit.prepared first")
        (overwrite, resume, new_budget), recipe, plan = self._flags, self.recipe, self.plan
        train, resolved = recipe.train, self._resolved
        budget = time_budget(recipe, data, task, plan, self._start, new_budget) if train.budget else None
        self._lock.take(create=True)  # where the runs folder was missing at the first check
        shapes = {k: tuple(v.shape) for k, v in task.state_dict().items()} if resume else None
        run_dir, resume_from = open_run_dir(self._runs_dir, recipe, overwrite, resume, self._folders, shapes)
        run = RunFolder(run_dir)
        if is_primary_process():
            run.write_resolved(resolved)
        rank_zero_print(f"run folder: {run_dir}  ({data.describe()}, precision {resolved['precision']})")
        if resume_from is not None:
            rank_zero_print(f"resuming from {resume_from} with the run's saved recipe"
                            + (f", within a new budget of {train.budget} from now" if new_budget else ""))
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
    """Run ``trainer.fit`` into ``run``; an error is raised as ``failed_fit`` turns it.

    A new run that ends before its first checkpoint leaves no folder to block the command's rerun, and the run that
    ``--overwrite`` set aside comes back; one that has a checkpoint replaces it.
    """
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
    """Return the exception the user sees for ``exc``, which ended a fit.

    A signal (SIGTERM: exit 143, SIGINT: 130) becomes a ``Stopped`` saying how the run goes on; a write error naming
    no file (TensorBoard's, from its thread) becomes a ``DlcvError`` naming the run folder; any other ``exc`` is
    returned as it is. Lightning turns Ctrl-C into ``SystemExit(1)`` and its own SIGTERM handling into a
    ``SIGTERMException``.
    """
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
    """Set torch's thread count to ``threads`` (None or 0: unchanged) for one fit, then restore it."""
    import torch

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def time_budget(recipe, data, task, plan, started: float, new_budget: bool = False):
    """Build the ``TimeBudget`` callback that re-plans ``plan`` to end within ``train.budget``.

    Validation and final scoring are guessed from a training step's cost until timed.

    Args:
        recipe: the run's recipe.
        data: the prepared data module, for its image counts.
        task: the task, for its forward passes per image under test-time augmentation.
        plan: the run's plan.
        started: the ``time.perf_counter()`` reading the budget counts from.
        new_budget: a resumed run given a new budget, counted from ``started``.
    """
    from dlcv.budget import TimeBudget
    from dlcv.recipes import parse_duration

    train, scale = recipe.train, recipe.evaluation_scale()
    n_train, n_val, n_final = data.counts()
    n_val, n_final = round(n_val * scale), round(n_final * scale)  # in training-sized images
    val_passes = n_val * task.passes(train.val_tta)
    return TimeBudget(parse_duration(train.budget), started, plan, val_guess=val_passes / max(1, 3 * n_train),
                      final_ratio=n_final * task.passes(train.tta) / max(1, val_passes),
                      final_images=n_final / max(1, n_val), print_line=rank_zero_print, new_budget=new_budget,
                      reference_epochs=train.reference_epochs)


def trained_epochs(trainer, task) -> int | float:
    """Return the epochs trained: whole, or under a budget steps over steps per epoch (the last may be partial)."""
    if task.train_config.budget and task.plan.steps_per_epoch:
        return round(trainer.global_step / task.plan.steps_per_epoch, 2)
    return trainer.current_epoch


def score_best(trainer, task, data, best: Path) -> None:
    """Score ``best.ckpt`` on the final set with ``trainer.test`` in every process; nothing without a final set.

    ``task.final_confusion`` then holds the sum over the processes.
    """
    from dlcv.checkpoints import load_model_weights, read_checkpoint

    if data.test_tensors() is None or not best.is_file():
        return
    ckpt, recipe = read_checkpoint(best, task.hparams.task)
    load_model_weights(task.model, ckpt, best, recipe.model.name)
    trainer.test(task, datamodule=data, verbose=False)
