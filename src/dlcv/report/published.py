"""The course reports' published numbers (``published.json``, from shared/REPORTS.md), to show
beside ours."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

PUBLISHED_FILE = Path(__file__).with_name("published.json")


@lru_cache(maxsize=1)
def published() -> dict:
    return json.loads(PUBLISHED_FILE.read_text())


def group(problem: str, key: str) -> dict:
    """One group of results, e.g. ``group("classification", "model_a")``."""
    return published()[problem][key]


def value_range(results: list[dict]) -> tuple[float, float]:
    values = [r["value"] for r in results]
    return min(values), max(values)


def range_text(problem: str, key: str) -> str:
    """``0.620-0.745``: the spread of the reports' numbers (each is listed in the comparison table)."""
    low, high = value_range(group(problem, key)["results"])
    return f"{low:.3f}-{high:.3f}"


OURS = "dlcv: "  # how a comparison table names our runs beside the reports


def ours(rows: list[list]) -> frozenset:
    """Indices of the comparison rows that are our runs (their report column starts with ``OURS``)."""
    return frozenset(i for i, row in enumerate(rows) if str(row[1]).startswith(OURS))
