"""The homework's report, built from run folders.

Its parts: ``discovery`` of runs, ``sections/`` (a registry), shared blocks (``blocks``, ``architecture``), the
course's published numbers (``published.json``) and the HTML / Markdown writer (``document``).
"""

from dlcv.report.build import build_report

__all__ = ["build_report"]
