"""Finding the run folders under a folder (each a ``RunFolder``: its recipe, metrics and summary)."""

from __future__ import annotations

import os
from pathlib import Path

from dlcv.errors import DlcvError
from dlcv.files import check_utf8_name, is_utf8_name
from dlcv.runs import RunFolder

MAX_DEPTH = 3  # runs/NAME, demo/runs/NAME, experiments/ssl/NAME


def from_runs(folder: Path, root: Path) -> str:
    """Name ``folder`` from the folder of runs ``root`` (``runs/p1/x``): the report shows no path of the machine."""
    return (Path(root.name) / folder.relative_to(root)).as_posix() if folder.is_relative_to(root) else folder.name


def find_run_folders(root: Path, left_out: list[str]) -> list[Path]:
    """Return the folders holding a recipe.yaml, ``root`` itself or at most ``MAX_DEPTH`` levels below it, sorted.

    The search enters no trained run (one with a metrics.csv; other folders with a recipe may hold runs, as
    ``dlcv ssl table``'s do), no link and no hidden folder.

    Args:
        root: the folder of runs.
        left_out: gets a note for each link or hidden folder holding a recipe.yaml, and for each folder whose name
            is not UTF-8 (which no page could name).
    """
    found = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        if RunFolder.RECIPE in files:
            found.append(here)
            if RunFolder.METRICS in files:
                dirs[:] = []
                continue
        if len(here.relative_to(root).parts) >= MAX_DEPTH:
            dirs[:] = []
            continue
        for name in sorted(dirs):
            try:
                check_utf8_name(Path(from_runs(here, root)) / name)  # named from the runs folder, as every note
            except DlcvError as exc:
                left_out.append(str(exc))
                continue
            why = "a link" if (here / name).is_symlink() else "hidden (its name starts with a dot)" \
                if name.startswith(".") else None
            if why and (here / name / RunFolder.RECIPE).is_file():
                left_out.append(f"{from_runs(here / name, root)}: {why}, not searched; give it as --runs to report it")
        dirs[:] = sorted(d for d in dirs if is_utf8_name(d) and not d.startswith(".") and not (here / d).is_symlink())
    return sorted(found)


def find_outputs(root: Path, name: str) -> list[Path]:
    """Return the folders, ``root`` or at most ``MAX_DEPTH`` levels below it, holding a file ``name``, sorted."""
    return sorted({p.parent for depth in range(MAX_DEPTH + 1)
                   for p in root.glob("/".join(["*"] * depth + [name])) if p.is_file() and is_utf8_name(p)})


def discover_runs(root: str | os.PathLike) -> tuple[list[RunFolder], list[str]]:
    """Find the runs under ``root`` that have metrics.

    Returns:
        ``(runs, notes)``: each ``RunFolder`` with a metrics.csv, and a line for each folder left out.

    Raises:
        DlcvError: if ``root`` is not a folder, or its name is not UTF-8.
    """
    root = Path(root)
    check_utf8_name(root)
    if not root.is_dir():
        raise DlcvError(f"{root}: no such folder of runs")
    skipped: list[str] = []
    folders = find_run_folders(root, skipped)
    runs = []
    for folder in folders:
        run = RunFolder(folder)
        if run.metrics:
            runs.append(run)
        elif not run.summary and not any(other != folder and other.is_relative_to(folder) for other in folders):
            # An untrained run: not a folder of runs (a recipe above runs) nor a command's output (a summary.json).
            skipped.append(f"{from_runs(folder, root)}: no {RunFolder.METRICS} yet (not trained, or stopped before its "
                           "first epoch)")
    return runs, skipped
