"""The course reports' published numbers (``published.json``, from shared/REPORTS.md), to show beside ours."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from dlcv.report.document import Table

PUBLISHED_FILE = Path(__file__).with_name("published.json")


@lru_cache(maxsize=1)
def published() -> dict:
    return json.loads(PUBLISHED_FILE.read_text())


def group(problem: str, key: str) -> dict:
    """One group of results, e.g. ``group("classification", "model_a")``."""
    return published()[problem][key]


def range_text(problem: str, key: str) -> str:
    """``0.620-0.745``: the spread of the reports' numbers (each is listed in the comparison table)."""
    values = [r["value"] for r in group(problem, key)["results"]]
    return f"{min(values):.3f}-{max(values):.3f}"


OURS = "dlcv: "  # how a comparison table names our runs beside the reports


def comparison_table(problem: str, keys: tuple[str, ...], runs: list, role, score, metric: str, caption: str) -> Table:
    """For each group in ``keys``, the reports' results and then our ``runs`` whose ``role(run)`` is that group, each
    with its ``score(run)``; our rows stand out."""
    rows = []
    for key in keys:
        published = group(problem, key)
        rows += [[published["title"], r["report"], r["model"], r["value"]] for r in published["results"]]
        rows += [[published["title"], f"{OURS}{run.name}", run.model_name, score(run)] for run in runs
                 if role(run) == key]
    ours = frozenset(i for i, row in enumerate(rows) if str(row[1]).startswith(OURS))
    return Table(["", "report", "model", metric], rows, caption=caption, marked=ours)
