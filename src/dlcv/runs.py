"""Run folders: ``RunFolder`` names a run's files and reads and writes them, for training and the report.

``runs/NAME/``: ``recipe.yaml`` (as loaded), ``resolved.json`` (derived), ``best.ckpt``, ``last.ckpt``, ``top/`` (k
best), ``metrics.csv``, ``tensorboard/``, ``confusion.csv`` (classification), ``summary.json`` (when the run ends).
"""

from __future__ import annotations

import csv
import functools
import math
from dataclasses import dataclass
from pathlib import Path

from dlcv.errors import DlcvError, shown
from dlcv.files import atomic_write
from dlcv.io import read_json, write_json
from dlcv.records import RunSummary


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
        """The run's task (``classify``, ``segment``, ``ssl``...): the recipe's, else its model's kind."""
        from dlcv.models.registry import model_task

        return str(self.raw_recipe.get("task") or model_task(str(self.model_name)) or "unknown")

    @functools.cached_property
    def recipe(self):
        """The run's recipe, typed by its task's schema; an older file is read over today's defaults.

        Raises:
            DlcvError: the recipe file is unreadable, of no known task, or not valid for its task's schema.
        """
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
        """The number of classes the run trained with (``resolved.json``'s; a classifier's recipe's without it)."""
        if "num_classes" in self.resolved or self.task != "classify":
            return self.resolved.get("num_classes")
        return self.recipe.data.num_classes

    @property
    def precision(self) -> str | None:
        """The precision the run trained in (``resolved.json``'s, ``auto`` resolved; else the recipe's)."""
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
        """Read the recipe file the run wrote, as a mapping.

        Raises:
            DlcvError: the file is not readable YAML, or not a mapping of keys.
        """
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
        """What the run derived (precision, classes, data folder, synthetic or not); {} without ``resolved.json``."""
        return read_json(self.resolved_file) if self.resolved_file.is_file() else {}

    def write_resolved(self, resolved: dict) -> None:
        """Write ``resolved.json``."""
        write_json(self.resolved_file, resolved)

    def read_metrics(self) -> list[dict]:
        """The rows of ``metrics.csv`` (``read_metrics``); [] before the first epoch ends."""
        return read_metrics(self.metrics_file) if self.metrics_file.is_file() else []

    def read_summary(self) -> RunSummary:
        """Read ``summary.json``; every field is None until the run ends.

        Raises:
            DlcvError: a field is not what it must be (a number...), naming the file and the field.
        """
        return RunSummary.read(self.summary_file) if self.summary_file.is_file() else RunSummary()

    def write_recipe(self, recipe) -> None:
        """Write ``recipe.yaml`` (``dump_recipe``)."""
        from dlcv.config import dump_recipe

        with atomic_write(self.recipe_file) as handle:
            handle.write(dump_recipe(recipe))

    def write_summary(self, summary: dict) -> None:
        """Write ``summary.json``, checked first as every reader will read it.

        Raises:
            pydantic.ValidationError: a field is not of its type (a caller's bug, not the user's).
        """
        RunSummary.model_validate(summary)  # as every reader will read it
        write_json(self.summary_file, summary)

    def read_confusion(self):
        """Read ``confusion.csv``: int64 (C, C) counts on the final set, rows true, columns predicted classes.

        Returns:
            the matrix, or None without ``confusion.csv``.

        Raises:
            DlcvError: the file is not a CSV of whole numbers, or the matrix is not square.
        """
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
        """Write ``confusion.csv``: a header ``true,pred_0,...``, then one row of counts per true class.

        Args:
            matrix: (C, C) counts, rows true and columns predicted classes.
        """
        with atomic_write(self.confusion_file, newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["true", *(f"pred_{c}" for c in range(len(matrix)))])
            writer.writerows([c, *map(int, row)] for c, row in enumerate(matrix))

    @property
    def progress(self) -> Path:
        """The folder of segmentation masks saved through training (``tasks.progress.MaskProgress``).

        It holds ``images/ID_sat.png``, ``ground_truth/ID_mask.png`` and ``epoch_NNN/ID_mask.png`` per chosen epoch.
        """
        return self.path / "progress"

    def progress_epoch(self, epoch: int) -> Path:
        """The folder of one epoch's masks, ``progress/epoch_NNN``."""
        return self.progress / f"epoch_{epoch:03d}"

    def read_progress(self) -> tuple[list[int], list[tuple]]:
        """Read the masks saved through training, for the figure of their progress.

        Returns:
            ``(epochs, rows)``: the epochs saved, ascending, and per image ``(id, image, masks, ground truth)``: the
            image uint8 (H, W, 3), a uint8 (H, W) class map per epoch, and the ground truth's class map.

        Raises:
            DlcvError: no masks were saved through training, none of any epoch yet, or a file is unreadable.
        """
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
    """Rows of a run's metrics.csv with numbers as floats (``epoch`` as int), empty and NaN cells as None."""
    return read_metrics_table(path)[1]


def read_metrics_table(path: Path) -> tuple[list[str], list[dict]]:
    """``(columns, rows)`` of a run's metrics.csv, the rows as ``read_metrics`` gives them.

    Raises:
        DlcvError: the file is unreadable or has no ``epoch`` column, or a row has more cells than columns, a cell
            that is not a number, or an epoch that is not a whole number of 0 or more (naming the file and line).
    """
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
