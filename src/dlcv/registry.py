"""The tasks dlcv does, one line each.

A task's commands are ``dlcv.cli.<name>`` (``add(commands)`` and one function per command) and its report section is
``dlcv.report.sections.<section>`` (``build(runs, ctx)``); a new task is its own modules and one line here
(docs/contributing.md works an example).
"""

from __future__ import annotations

from typing import NamedTuple


class Task(NamedTuple):
    """One task: its command group and its report section."""

    name: str  # its command group: dlcv NAME ...
    section: str  # its report section, in the page's default order


TASKS = (Task("classify", "classification"), Task("ssl", "ssl"), Task("segment", "segmentation"), Task("sam", "sam"))
