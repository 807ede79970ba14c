"""The report's sections by name, in page order: one module per task (``dlcv.registry.TASKS``).

Each builder takes ``(runs, ctx)`` and returns a ``Section``, or None when none of its runs are there.
"""

from __future__ import annotations

from importlib import import_module

from dlcv.errors import DlcvError
from dlcv.registry import TASKS

SECTIONS = {task.section: import_module(f"dlcv.report.sections.{task.section}").build for task in TASKS}
# Each year's homework, problem by problem, as the scripts in scripts/YEAR/ number them.
YEARS = {
    2021: ("classification", "segmentation"),
    2022: ("classification", "segmentation"),
    2023: ("classification", "ssl", "segmentation", "sam"),
    2024: ("ssl", "segmentation", "sam"),
}


def in_order(year: int | None = None) -> list:
    """Return the section builders in ``year``'s page order (its problems first, then the rest), or ``SECTIONS``'.

    Raises:
        DlcvError: if ``year`` is not one of ``YEARS``.
    """
    if year is not None and year not in YEARS:
        raise DlcvError(f"--year {year}: choose among {', '.join(map(str, YEARS))}")
    first = YEARS.get(year, ())
    return [SECTIONS[name] for name in (*first, *(n for n in SECTIONS if n not in first))]
