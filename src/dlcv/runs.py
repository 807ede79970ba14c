"""Run folders: ``RunFolder`` names a run folder's files and reads and writes them, for training and the report alike.

``runs/NAME/``: ``recipe.yaml`` (as loaded), ``resolved.json`` (derived), ``best.ckpt``, ``last.ckpt``, ``top/`` (k
best), ``metrics.csv``, ``tensorboard/``, ``confusion.csv`` (classification), ``summary.json`` (when the run ends).
"""

from __future__ import annotations

import csv
import functools
import glob
import math
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from dlcv.errors import DlcvError, shown
from dlcv.files import atomic_write
from dlcv.io import check_output_folder, make_output_folder, read_json, write_json
from dlcv.records import RunSummary
from dlcv.runtime import is_primary_process


@dataclass(frozen=True)
class RunFolder:
    """A run folder's files by name, and reading and writing them."""

    path: Path

    RECIPE = "recipe.yaml"
    METRICS = "metrics.csv"

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    recipe_file = property(lambda self: self.path / self.RECIPE)
    resolved_file = property(lambda self: self.path / "resolved.json")
    metrics_file = property(lambda self: self.path / self.METRICS)
    summary_file = property(lambda self: self.path / "summary.json")
    confusion_file = property(lambda self: self.path / "confusion.csv")
    best = property(lambda self: self.path / "best.ckpt")
    last = property(lambda self: self.path / "last.ckpt")
    top = property(lambda self: self.path / "top")  # the save_top_k best checkpoints
    backbone = property(lambda self: self.path / "backbone.pt")  # a pre-training run's trunk (a ResNet state_dict)
    knn_at_init = property(lambda self: self.path / "knn_at_init.json")  # its kNN monitor before the first epoch

    @property
    def finished(self) -> bool:
        """The run ended and wrote its summary."""
        return self.summary_file.is_file()

    # What the report reads, once per folder: the files as they were when first read.
    raw_recipe = functools.cached_property(lambda self: self.read_recipe())
    metrics = functools.cached_property(lambda self: self.read_metrics())
    summary = functools.cached_property(lambda self: self.read_summary())
    resolved = functools.cached_property(lambda self: self.read_resolved())
    name = property(lambda self: self.path.name)  # the folder: runs of one recipe under several names stay apart

    @property
    def task(self) -> str:
        """``classify`` or ``segment`` (the recipe's task, else its model's kind), or a later command's (``ssl``)."""
        from dlcv.models.registry import model_kind

        return str(self.raw_recipe.get("task") or model_kind(str(self.model_name)) or "unknown")

    @functools.cached_property
    def recipe(self):
        """The run's recipe, typed by its task's schema (old files over today's defaults); one line naming it if bad."""
        from dlcv.config import load_recipe
        from dlcv.recipes import RECIPES

        if self.task not in RECIPES:
            raise DlcvError(f"{self.recipe_file}: a recipe of no known task ({self.task!r})")
        return load_recipe(RECIPES[self.task], self.recipe_file)

    @property
    def model_name(self) -> str | None:
        """The model's registered name (BYOL's trunk: its architecture), as the file says."""
        model = self.raw_recipe.get("model") or {}
        return model.get("name") or model.get("arch")

    @property
    def num_classes(self) -> int | None:
        """The class count the run trained with (a run from before resolved.json: its recipe's)."""
        if "num_classes" in self.resolved or self.task != "classify":
            return self.resolved.get("num_classes")
        return self.recipe.data.num_classes

    @property
    def precision(self) -> str | None:
        """The precision the run trained in (``auto`` resolved for its hardware)."""
        return self.resolved["precision"] if "precision" in self.resolved else self.recipe.train.precision

    @property
    def synthetic(self) -> bool:
        """Trained on synthetic data (``dlcv data synth``, the demo): never comparable with the course's numbers."""
        return bool(self.resolved.get("synthetic_data"))

    def best_row(self, monitor: str) -> dict | None:
        """The metrics row of the epoch with the best ``monitor``: the lowest for a loss, else the highest.

        The best checkpoint holds this epoch when ``monitor`` is the metric it was chosen by (``summary.monitor``).
        """
        rows = [r for r in self.metrics if r.get(monitor) is not None]
        best = min if monitor.endswith("loss") else max  # ModelCheckpoint's mode for such a metric
        return best(rows, key=lambda r: r[monitor]) if rows else None

    @property
    def resumable(self) -> bool:
        """An interrupted run that ``--resume`` continues: its last checkpoint and its recipe are there."""
        return self.last.is_file() and self.recipe_file.is_file()

    def read_recipe(self) -> dict:
        """The recipe file the run wrote, as a mapping; one line naming the file when it is not one."""
        import yaml

        from dlcv.config import yaml_value

        try:
            data = yaml_value(self.recipe_file.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise DlcvError(f"{self.recipe_file}: not a readable recipe ({' '.join(str(exc).split())[:160]})") from None
        if not isinstance(data, dict):
            raise DlcvError(f"{self.recipe_file}: not a recipe (expected a mapping of keys)")
        return data

    def read_resolved(self) -> dict:
        """What the run derived (precision, class count, data folder, synthetic or not); ``{}``: its recipe has them."""
        return read_json(self.resolved_file) if self.resolved_file.is_file() else {}

    def write_resolved(self, resolved: dict) -> None:
        write_json(self.resolved_file, resolved)

    def read_metrics(self) -> list[dict]:
        """metrics.csv's rows (``read_metrics``), or none before the first epoch ends."""
        return read_metrics(self.metrics_file) if self.metrics_file.is_file() else []

    def read_summary(self) -> RunSummary:
        """summary.json (all None until the run ends); a figure that is not a number is one line naming file and key."""
        return RunSummary.read(self.summary_file) if self.summary_file.is_file() else RunSummary()

    def write_recipe(self, recipe) -> None:
        from dlcv.config import dump_recipe

        with atomic_write(self.recipe_file) as handle:
            handle.write(dump_recipe(recipe))

    def write_summary(self, summary: dict) -> None:
        RunSummary.model_validate(summary)  # as every reader will read it
        write_json(self.summary_file, summary)

    def read_confusion(self):
        """``confusion.csv`` as a square int64 array of (true, predicted) counts on the final set, or None if absent."""
        import numpy as np

        path = self.confusion_file
        if not path.is_file():
            return None
        try:
            with open(path, newline="") as handle:
                rows = list(csv.reader(handle))
            matrix = np.array([[int(v) for v in row[1:]] for row in rows[1:]], dtype=np.int64)
        except (OSError, ValueError, IndexError) as exc:
            raise DlcvError(f"{path}: not a confusion matrix CSV ({exc})") from None
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise DlcvError(f"{path}: not a square confusion matrix")
        return matrix

    def write_confusion(self, matrix) -> None:
        """A header ``true,pred_0,...``, then one row of counts per true class."""
        with atomic_write(self.confusion_file, newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["true", *(f"pred_{c}" for c in range(len(matrix)))])
            writer.writerows([c, *map(int, row)] for c, row in enumerate(matrix))

    @property
    def progress(self) -> Path:
        """``progress/``, segmentation's masks through training (``tasks.progress.MaskProgress``):
        ``images/ID_sat.png``, ``ground_truth/ID_mask.png`` and ``epoch_NNN/ID_mask.png`` per chosen epoch."""
        return self.path / "progress"

    def progress_epoch(self, epoch: int) -> Path:
        return self.progress / f"epoch_{epoch:03d}"

    def read_progress(self) -> tuple[list[int], list[tuple]]:
        """``(epochs, rows)``, a row per image: ``(id, image, [class map per epoch], ground truth)``; else one line
        saying what is missing."""
        from dlcv.data.masks import MaskCodec, read_mask
        from dlcv.files import decode_image

        truth = self.progress / "ground_truth"
        if not truth.is_dir():
            raise DlcvError(f"{self.path}: no masks through training here (expected {truth}); train with "
                            "progress.epochs set")
        epochs = sorted(int(p.name.split("_")[1]) for p in self.progress.glob("epoch_*") if p.is_dir())
        if not epochs:
            raise DlcvError(f"{self.path}: no epoch's masks saved yet under {self.progress}")
        codec = MaskCodec()
        rows = []
        for name in sorted(p.name[: -len("_mask.png")] for p in truth.glob("*_mask.png")):
            image = decode_image(self.progress / "images" / f"{name}_sat.png")
            masks = [read_mask(self.progress_epoch(e) / f"{name}_mask.png", codec) for e in epochs]
            rows.append((name, image, masks, read_mask(truth / f"{name}_mask.png", codec)))
        return epochs, rows


def read_metrics(path: Path) -> list[dict]:
    """Rows of a run's metrics.csv with numbers as floats (``epoch`` as int) and empty cells as None."""
    return read_metrics_table(path)[1]


def read_metrics_table(path: Path) -> tuple[list[str], list[dict]]:
    """``(columns, rows)`` of a run's metrics.csv, rows as ``read_metrics`` gives them; one line naming the file and
    row when it is not a table of numbers with whole epochs."""
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            raw = list(reader)
            columns = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DlcvError(f"{path}: cannot read the metrics ({exc})") from None
    if "epoch" not in columns:
        raise DlcvError(f"{path}: missing column epoch")
    rows = []
    for line, row in enumerate(raw, start=2):
        parsed = {}
        for key, value in row.items():
            if key is None:
                raise DlcvError(f"{path}:{line}: more cells than columns")
            try:
                number = float(value) if value not in ("", None) else None
            except ValueError:
                raise DlcvError(f"{path}:{line}: {key} is not a number: {value!r}") from None
            parsed[key] = None if number is not None and math.isnan(number) else number
        epoch = parsed["epoch"]
        if epoch is None or not math.isfinite(epoch) or epoch != int(epoch) or epoch < 0:
            raise DlcvError(f"{path}:{line}: epoch is not a whole number: {shown(row['epoch'])}")
        parsed["epoch"] = int(epoch)
        rows.append(parsed)
    return list(columns), rows


def check_run_name(name: str, what: str = "run name") -> None:
    """Refuse a run name that is not a plain folder name; ``what``: where it came from, for the message (``--name``)."""
    from dlcv.rules import FolderName, describe, is_folder_name

    if not is_folder_name(name):
        raise DlcvError(f"{what} {shown(name)}: give {describe(FolderName)}")


def check_run_dir(runs_dir: str | os.PathLike, name: str, overwrite: bool,
                  inputs: tuple[str | os.PathLike | None, ...] = ()) -> Path:
    """``runs_dir/name`` (a recipe's name, a plain folder name by the schema) checked as a run folder to write."""
    return check_output_folder(Path(runs_dir) / name, "run", overwrite, inputs, need_parent=False)


def run_recipe(kind: type, config, overrides: tuple[str, ...], name: str | None,
               runs_dir: str | os.PathLike, resume: bool, fixed: tuple[str, ...] = ()):
    """The recipe (a ``kind``) a training command runs: the defaults, then ``config`` (a file or a ``kind``), then the
    overrides, renamed to ``name`` if given. With ``resume``, the run folder's saved recipe, so the resumed run trains
    what the interrupted one did; an error if there is nothing to resume or an override or ``fixed`` key differs."""
    from dlcv.config import load_recipe

    if isinstance(config, kind):
        recipe = load_recipe(kind, None, overrides, base=config.model_dump())
    else:
        recipe = load_recipe(kind, config, overrides, resumed=resume)
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
    saved = load_recipe(kind, run.recipe_file, base=recipe.model_dump())
    saved.name = run.path.name  # the folder named is the run resumed, whatever name its recipe saved
    keys = override_keys(overrides)
    resumed = resumed_recipe(run, saved, recipe, (*keys, *fixed))
    if resumed.train.budget and "train.epochs" in keys and "train.budget" not in keys:
        raise DlcvError(f"--set train.epochs={resumed.train.epochs} on --resume: the run trains to a time budget "
                        f"(train.budget {resumed.train.budget}, its saved recipe); give --budget DURATION to train on")
    return resumed


RESUME_KEYS = ("train.epochs", "train.budget")  # what --set (or --budget) may change on --resume


def override_keys(overrides: tuple[str, ...]) -> list[str]:
    """The dotted keys that ``--set KEY=VALUE`` overrides name (``--budget`` arrives as ``train.budget``)."""
    return [item.split("=", 1)[0].strip() for item in overrides]


def resumed_recipe(run: RunFolder, saved, given, keys: tuple[str, ...]):
    """The recipe ``--resume`` trains: ``saved`` with the ``RESUME_KEYS`` among ``keys`` (the overrides) from ``given``;
    a change to another key, or nothing to train, is refused in one line (exit 2: a script learns it did not train)."""
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
    """Seconds of a budget of ``seconds`` the run has used, per its summary, else its last checkpoint; or None."""
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
    """Refuse, in one line naming it, a checkpoint that is unreadable, truncated, not Lightning's for training, or
    of another task or model (weights not of the run's ``shapes``)."""
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
    """``(run folder, checkpoint to resume from or None)``: a new run gets an empty, checked folder with its recipe
    (by the primary process; an earlier run replaced only with ``overwrite``), a resumed one its ``last.ckpt`` (which
    must hold weights of ``shapes``, the model's)."""
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
    """Move the run folder ``--overwrite`` replaces beside it, hidden, until ``settle_replaced`` decides its fate."""
    aside = run_dir.with_name(f".{run_dir.name}.{REPLACED}-{os.getpid()}")
    shutil.rmtree(aside, ignore_errors=True)  # a leftover of an earlier process of this pid
    try:
        os.replace(run_dir, aside)
    except OSError as exc:
        raise DlcvError(f"{run_dir}: cannot be set aside for the new run ({exc.strerror or exc})") from None
    return aside


def settle_replaced(run_dir: Path) -> None:
    """Decide on the runs ``--overwrite`` set aside beside ``run_dir`` (this process's, or those of processes that
    ended): removed once ``run_dir`` has a ``last.ckpt`` to show; otherwise put back in its place, the new run's
    folder (its recipe and logs, no checkpoint) removed."""
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
