"""Finding the run folders under a folder and reading what each holds: its resolved recipe, the
per-epoch metrics, the summary."""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dlcv.errors import DlcvError

RECIPE_FILE = "recipe.yaml"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
MAX_DEPTH = 3  # runs/NAME, demo/runs/NAME, experiments/ssl/NAME


@dataclass
class Run:
    path: Path
    recipe: dict
    metrics: list[dict]  # one dict per epoch: "epoch" and each column as float, or None where empty
    summary: dict = field(default_factory=dict)

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

        return model_kind(str((self.recipe.get("model") or {}).get("name"))) or "unknown"

    @property
    def finished(self) -> bool:
        return bool(self.summary)

    def best_row(self, monitor: str) -> dict | None:
        """The epoch with the best ``monitor`` (the one the best checkpoint holds)."""
        rows = [r for r in self.metrics if r.get(monitor) is not None]
        return max(rows, key=lambda r: r[monitor]) if rows else None


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DlcvError(f"{path}: not a readable recipe ({' '.join(str(exc).split())[:160]})") from None
    if not isinstance(data, dict):
        raise DlcvError(f"{path}: not a recipe (expected a mapping of keys)")
    return data


def read_metrics(path: Path) -> list[dict]:
    """Rows of a run's metrics.csv with numbers as floats (``epoch`` as int) and empty cells as None."""
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
        if parsed["epoch"] is None:
            raise DlcvError(f"{path}:{line}: empty epoch")
        parsed["epoch"] = int(parsed["epoch"])
        rows.append(parsed)
    return rows


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DlcvError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DlcvError(f"{path}: expected a JSON object")
    return data


def read_run(path: Path) -> Run:
    recipe = _read_yaml(path / RECIPE_FILE)
    metrics = read_metrics(path / METRICS_FILE) if (path / METRICS_FILE).is_file() else []
    summary = read_json(path / SUMMARY_FILE) if (path / SUMMARY_FILE).is_file() else {}
    return Run(path=path, recipe=recipe, metrics=metrics, summary=summary)


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
