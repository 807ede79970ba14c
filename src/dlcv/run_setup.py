"""Starting a run folder: its name, its recipe (a resumed run's saved one), its checkpoint, and the folder it replaces.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
from pathlib import Path

from dlcv.errors import DlcvError, shown
from dlcv.io import check_output_folder, make_output_folder
from dlcv.runs import RunFolder
from dlcv.runtime import is_primary_process


def check_run_name(name: str, what: str = "run name") -> None:
    """Refuse a run name that is not a plain folder name; ``what`` names it in the message (``--name``)."""
    from dlcv.rules import FolderName, describe, is_folder_name

    if not is_folder_name(name):
        raise DlcvError(f"{what} {shown(name)}: give {describe(FolderName)}")


def check_run_dir(runs_dir: str | os.PathLike, name: str, overwrite: bool,
                  inputs: tuple[str | os.PathLike | None, ...] = ()) -> Path:
    """Check ``runs_dir/name`` as a run folder to write (``check_output_folder``), and return it."""
    return check_output_folder(Path(runs_dir) / name, "run", overwrite, inputs, need_parent=False)


def run_recipe(recipe_type: type, config, overrides: tuple[str, ...], name: str | None,
               runs_dir: str | os.PathLike, resume: bool, caller_keys: tuple[str, ...] = ()):
    """The recipe a training command runs: defaults, then ``config``, then the overrides, then ``name``.

    With ``resume`` it is the run folder's saved recipe (``resumed_recipe``), so that the resumed run trains what the
    interrupted one did.

    Args:
        recipe_type: the recipe's class (``ClassifyRecipe``...).
        config: a recipe file, a built ``recipe_type``, or None for the defaults.
        overrides: ``--set KEY=VALUE`` items (``--budget`` arrives as ``train.budget=...``).
        name: the run's name, in place of the recipe's; None keeps the recipe's.
        runs_dir: the folder that holds the runs.
        resume: continue the run ``runs_dir/NAME`` from its last checkpoint.
        caller_keys: keys the caller set on a built recipe, which a resume must find unchanged.

    Raises:
        DlcvError: the recipe is not valid, the run has no name or a bad one; with ``resume``, nothing to resume, a
            changed key that ``--resume`` keeps, or ``train.epochs`` set for a run trained to a time budget.
    """
    from dlcv.config import load_recipe

    if isinstance(config, recipe_type):
        recipe = load_recipe(recipe_type, None, overrides, base=config.model_dump())
    else:
        recipe = load_recipe(recipe_type, config, overrides, resumed=resume)
    if name:
        check_run_name(name)  # before the recipe takes it: one line, not the schema's exception
        recipe.name = name
    if not recipe.name:
        raise DlcvError("the run needs a name: give --name NAME" + ("" if config is None else
                                                                     f" (the recipe {config} sets none)"))
    if not resume:
        return recipe
    run = RunFolder(Path(runs_dir) / recipe.name)
    if not run.resumable:
        raise DlcvError(f"{run.path}: nothing to resume (no last.ckpt and recipe.yaml); start the run without --resume")
    saved = load_recipe(recipe_type, run.recipe_file, base=recipe.model_dump())
    saved.name = run.path.name  # the folder named is the run resumed, whatever name its recipe saved
    keys = override_keys(overrides)
    resumed = resumed_recipe(run, saved, recipe, (*keys, *caller_keys))
    if resumed.train.budget and "train.epochs" in keys and "train.budget" not in keys:
        raise DlcvError(f"--set train.epochs={resumed.train.epochs} on --resume: the run trains to a time budget "
                        f"(train.budget {resumed.train.budget}, its saved recipe); give --budget DURATION to train on")
    return resumed


RESUME_KEYS = ("train.epochs", "train.budget")  # what --set (or --budget) may change on --resume


def override_keys(overrides: tuple[str, ...]) -> list[str]:
    """The dotted keys that ``--set KEY=VALUE`` overrides name (``--budget`` arrives as ``train.budget``)."""
    return [item.split("=", 1)[0].strip() for item in overrides]


def resumed_recipe(run: RunFolder, saved, given, keys: tuple[str, ...]):
    """The recipe ``--resume`` trains: ``saved``, with the ``RESUME_KEYS`` values that ``given`` changes.

    A refusal is a ``DlcvError`` (exit status 2), so that a script learns the run did not train.

    Args:
        run: the run folder resumed.
        saved: its saved recipe.
        given: the recipe the command line builds.
        keys: the keys the overrides name, and the caller's keys.

    Raises:
        DlcvError: a key other than ``RESUME_KEYS`` changes, or there is nothing to train: the budget is spent, the
            epochs asked are trained already, or the run finished and asks no more epochs.
    """
    from dlcv.config import lookup
    from dlcv.rules import format_duration, parse_duration

    recipe, changed = saved.model_copy(deep=True), []
    for key in keys:
        if key == "name" or lookup(given, key) == lookup(saved, key):  # the name picks the run; equal changes nothing
            continue
        if key not in RESUME_KEYS:
            raise DlcvError(f"--resume keeps the run's saved recipe; {key} cannot change on resume")
        changed.append(key)
    train = recipe.train
    if "train.epochs" in changed:
        train.epochs = given.train.epochs
    if "train.budget" in changed:
        train.budget = given.train.budget
    if train.budget:
        if "train.budget" in keys:
            return recipe
        seconds = parse_duration(train.budget)
        used = budget_used(run, seconds)
        if run.finished or (used is not None and used >= seconds):
            spent = f"its budget of {format_duration(seconds)} is spent" + (
                f" ({format_duration(used)} used)" if used is not None else "")
            finished = "the run finished and " if run.finished else ""
            raise DlcvError(f"{run.path}: nothing to resume: {finished}{spent}; give --budget DURATION to train on "
                            "within a new budget")
        return recipe
    done = max((row["epoch"] for row in run.read_metrics()), default=0)
    if "train.epochs" in changed and train.epochs <= done:
        raise DlcvError(f"{run.path}: train.epochs={train.epochs} on --resume: the run has trained {done} "
                        "epoch(s) already; give more to train on")
    if run.finished and "train.epochs" not in changed:
        raise DlcvError(f"{run.path}: nothing to resume: the run finished its {done} epoch(s) (summary.json); give "
                        f"--set train.epochs=N above {done} to train on, or start afresh with --overwrite")
    return recipe


def budget_used(run: RunFolder, seconds: float) -> float | None:
    """Seconds the run used of its ``seconds`` budget, from its summary or else its last checkpoint; or None."""
    from dlcv.budget import TimeBudget, spent_under
    from dlcv.models.weights import safe_load

    if run.finished:
        summary = run.read_summary()
        parts = (summary.budget.spent_before if summary.budget else None, summary.fit_seconds)
        return sum(parts) if None not in parts else None
    ckpt = safe_load(run.last, "checkpoint")
    states = ckpt.get("callbacks") if isinstance(ckpt, dict) else None
    return spent_under(states.get(TimeBudget.__qualname__), seconds) if isinstance(states, dict) else None


def check_checkpoint(path: Path, shapes: dict[str, tuple]) -> None:
    """Refuse a checkpoint that a run cannot resume from, in one line naming it.

    Args:
        path: the checkpoint (``last.ckpt``).
        shapes: the shape of each weight of the run's model, by state_dict key.

    Raises:
        DlcvError: the file is unreadable or truncated, not a Lightning checkpoint for training, or holds weights of
            other names or shapes (another task or model).
    """
    from dlcv.models.weights import safe_load

    ckpt = safe_load(path, "checkpoint")
    if not isinstance(ckpt, dict) or not {"state_dict", "global_step", "loops"} <= ckpt.keys():
        raise DlcvError(f"{path}: not a training checkpoint to resume from (no state_dict, global_step and loops); "
                        "start afresh with --overwrite")
    saved = {k: tuple(getattr(v, "shape", ())) for k, v in ckpt["state_dict"].items()}
    if saved != shapes:
        key = next(k for k in sorted(set(saved) | set(shapes)) if saved.get(k) != shapes.get(k))
        raise DlcvError(f"{path}: its weights are not this run's model's ({key}: {saved.get(key, 'missing')} in the "
                        f"checkpoint, {shapes.get(key, 'missing')} in the model); start afresh with --overwrite")


def open_run_dir(runs_dir: str | os.PathLike, recipe, overwrite: bool, resume: bool,
                 inputs: tuple[str | os.PathLike | None, ...] = (), shapes: dict | None = None
                 ) -> tuple[Path, Path | None]:
    """Open the folder a training run writes: a new, checked one with its recipe, or the one it resumes.

    Only the primary process makes a new folder; an earlier run of that name is set aside (``set_aside``), which only
    ``overwrite`` allows. A resumed run's ``last.ckpt`` and metrics are checked before anything of it changes.

    Args:
        runs_dir: the folder that holds the runs.
        recipe: the run's recipe; ``recipe.name`` names its folder.
        overwrite: replace an earlier run of that name (``--overwrite``).
        resume: continue the run from its ``last.ckpt``.
        inputs: the command's inputs, which the run folder may not be, hold or lie inside.
        shapes: with ``resume``, the shape of each weight of the model, by state_dict key.

    Returns:
        ``(run folder, checkpoint to resume from or None)``.

    Raises:
        DlcvError: the folder is refused (``check_run_dir``) or cannot be set aside or written; with ``resume``, the
            checkpoint is not the model's (``check_checkpoint``) or ``metrics.csv`` is malformed.
    """
    run_dir = Path(runs_dir) / recipe.name
    if resume:
        run = RunFolder(run_dir)
        check_checkpoint(run.last, shapes)  # read whole before anything of the run changes
        run.read_metrics()  # the rows the resumed run keeps: a malformed file is refused here, not after the changes
        if is_primary_process():
            from dlcv.config import lookup

            # A finished run trained on (more epochs, a new budget) is unfinished until it writes a new summary.
            run.summary_file.unlink(missing_ok=True)
            if any(lookup(run.read_recipe(), key) != lookup(recipe, key) for key in RESUME_KEYS):
                run.write_recipe(recipe)
        return run_dir, run.last
    if is_primary_process():
        run_dir = check_run_dir(runs_dir, recipe.name, overwrite, inputs)
        if run_dir.exists() and any(run_dir.iterdir()):
            set_aside(run_dir)  # a run folder of dlcv's (checked above): gone once the new one has a checkpoint
        run_dir = make_output_folder(run_dir, "run")  # the manifest kind of a run folder (dlcv.io)
        RunFolder(run_dir).write_recipe(recipe)
    return run_dir, None


REPLACED = "dlcv-replaced"  # ``.NAME.dlcv-replaced-PID``: the run ``--overwrite`` replaces, kept until it is settled


def set_aside(run_dir: Path) -> Path:
    """Move the run folder ``--overwrite`` replaces beside it, hidden, until ``settle_replaced`` settles it.

    Raises:
        DlcvError: the folder cannot be moved.
    """
    aside = run_dir.with_name(f".{run_dir.name}.{REPLACED}-{os.getpid()}")
    shutil.rmtree(aside, ignore_errors=True)  # a leftover of an earlier process of this pid
    try:
        os.replace(run_dir, aside)
    except OSError as exc:
        raise DlcvError(f"{run_dir}: cannot be set aside for the new run ({exc.strerror or exc})") from None
    return aside


def settle_replaced(run_dir: Path) -> None:
    """Drop or restore the runs that ``--overwrite`` set aside beside ``run_dir``.

    Only those set aside by this process or by processes that ended. Each is removed once ``run_dir`` has a
    ``last.ckpt``; otherwise it goes back in its place, and the new run's folder (recipe and logs, no checkpoint) is
    removed.
    """
    from dlcv.io import process_alive

    run_dir = Path(run_dir)
    for aside in sorted(run_dir.parent.glob(f".{glob.escape(run_dir.name)}.{REPLACED}-*")):
        pid = aside.name.rpartition("-")[2]
        if not pid.isdigit() or (int(pid) != os.getpid() and process_alive(int(pid))) or not aside.is_dir():
            continue
        if RunFolder(run_dir).last.is_file():
            shutil.rmtree(aside, ignore_errors=True)
            continue
        if run_dir.is_dir():
            shutil.rmtree(run_dir)
        os.replace(aside, run_dir)
        print(f"note: {run_dir}: the new run ended before its first checkpoint; the run it was to replace is back",
              file=sys.stderr, flush=True)
