"""The course reports' published numbers (``published.json``, from shared/REPORTS.md), to show beside ours."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from dlcv.report.document import Table

PUBLISHED_FILE = Path(__file__).with_name("published.json")


@lru_cache(maxsize=1)
def published() -> dict:
    """Return the contents of ``published.json``, read once."""
    return json.loads(PUBLISHED_FILE.read_text())


def group(problem: str, key: str) -> dict:
    """Return one group of published results (its title and results), e.g. ``group("classification", "model_a")``."""
    return published()[problem][key]


def range_text(problem: str, key: str) -> str:
    """Return the spread of a group's published numbers as text, e.g. ``0.620-0.745``."""
    values = [r["value"] for r in group(problem, key)["results"]]
    return f"{min(values):.3f}-{max(values):.3f}"


OURS = "dlcv: "  # how a comparison table names our runs beside the reports


def comparison_table(problem: str, keys: tuple[str, ...], runs: list, role, score, metric: str, caption: str) -> Table:
    """Return a table of the reports' results with ours beside them, group by group; our rows stand out.

    Args:
        problem: the problem's key in ``published.json``.
        keys: the groups, in order; each lists the reports' results, then our runs of that group.
        runs: our runs.
        role: ``role(run)`` gives the group a run belongs to.
        score: ``score(run)`` gives a run's number.
        metric: the name of the numbers' column.
        caption: the table's caption.
    """
    rows = []
    for key in keys:
        published = group(problem, key)
        rows += [[published["title"], r["report"], r["model"], r["value"]] for r in published["results"]]
        rows += [[published["title"], f"{OURS}{run.name}", run.model_name, score(run)] for run in runs
                 if role(run) == key]
    ours = frozenset(i for i, row in enumerate(rows) if str(row[1]).startswith(OURS))
    return Table(["", "report", "model", metric], rows, caption=caption, marked=ours)
