"""Finding the run folders under a folder and reading what each holds: its resolved recipe, the
per-epoch metrics, the summary."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from dlcv.errors import DlcvError
from dlcv.runs import RunFolder

RECIPE_FILE, METRICS_FILE = RunFolder.RECIPE, RunFolder.METRICS
MAX_DEPTH = 3  # runs/NAME, demo/runs/NAME, experiments/ssl/NAME


@dataclass
class Run:
    path: Path
    recipe: dict
    metrics: list[dict]  # one dict per epoch: "epoch" and each column as float, or None where empty
    summary: dict = field(default_factory=dict)
    resolved: dict = field(default_factory=dict)  # what the run derived beside its recipe (resolved.json)

    @property
    def name(self) -> str:
        return self.path.name  # the folder: runs of one recipe under several names stay apart

    @property
    def task(self) -> str:
        """``classify`` or ``segment`` (the recipe's task, else the registry's kind of its model), or
        the task a later command wrote into the recipe (e.g. ``ssl``)."""
        task = self.recipe.get("task")
        if task:
            return str(task)
        from dlcv.models.registry import model_kind

        return model_kind(str(self.model_name)) or "unknown"

    @property
    def model_name(self) -> str | None:
        return (self.recipe.get("model") or {}).get("name")

    @property
    def num_classes(self) -> int | None:
        """The class count the run trained with (a run from before resolved.json: its recipe's)."""
        return self.resolved.get("num_classes", (self.recipe.get("data") or {}).get("num_classes"))

    @property
    def precision(self) -> str | None:
        """The precision the run trained in (``auto`` resolved for its hardware)."""
        return self.resolved.get("precision", (self.recipe.get("train") or {}).get("precision"))

    @property
    def synthetic(self) -> bool:
        """Trained on synthetic data (``dlcv data synth``, the demo): never comparable with the course's numbers."""
        return bool(self.resolved.get("synthetic_data"))

    @property
    def finished(self) -> bool:
        return bool(self.summary)

    def best_row(self, monitor: str) -> dict | None:
        """The epoch with the best ``monitor`` (the one the best checkpoint holds)."""
        rows = [r for r in self.metrics if r.get(monitor) is not None]
        return max(rows, key=lambda r: r[monitor]) if rows else None


def read_run(path: Path) -> Run:
    folder = RunFolder(path)
    return Run(path=path, recipe=folder.read_recipe(), metrics=folder.read_metrics(), summary=folder.read_summary(),
               resolved=folder.read_resolved())


def find_run_folders(root: Path) -> list[Path]:
    """Folders holding a recipe.yaml at most ``MAX_DEPTH`` levels below ``root`` (or ``root`` itself).
    A trained run's own sub-folders are not searched; a recipe.yaml without metrics.csv may be a
    folder of runs (``dlcv ssl table`` keeps its recipe beside its settings' runs), so it is."""
    found = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        if RECIPE_FILE in files:
            found.append(here)
            if METRICS_FILE in files:
                dirs[:] = []
                continue
        if len(here.relative_to(root).parts) >= MAX_DEPTH:
            dirs[:] = []
        else:
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    return sorted(found)


def find_outputs(root: Path, name: str) -> list[Path]:
    """Folders holding a file ``name`` at most ``MAX_DEPTH`` levels below ``root`` (or ``root`` itself):
    the outputs of commands that are not training runs (dlcv sam masks, dlcv sam refine)."""
    return sorted({p.parent for depth in range(MAX_DEPTH + 1)
                   for p in root.glob("/".join(["*"] * depth + [name])) if p.is_file()})


def discover_runs(root: str | os.PathLike) -> tuple[list[Run], list[str]]:
    """``(runs with metrics, notes on folders left out)`` under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise DlcvError(f"{root}: no such folder of runs")
    folders = find_run_folders(root)
    runs, skipped = [], []
    for folder in folders:
        run = read_run(folder)
        if run.metrics:
            runs.append(run)
        elif not run.summary and not any(other != folder and other.is_relative_to(folder) for other in folders):
            # (a recipe.yaml above other runs is a folder of runs, and one beside a summary.json the
            # finished output of a command that does not train, such as dlcv sam masks: neither is an untrained run)
            skipped.append(f"{folder}: no {METRICS_FILE} yet (not trained, or stopped before its first epoch)")
    return runs, skipped
