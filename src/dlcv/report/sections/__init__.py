"""The report's sections, in page order. Each builder takes ``(runs, ctx)`` and returns a
``Section``, or None when none of its runs are there; a new section is one module and one line here."""

from __future__ import annotations

from dlcv.report.sections import classification, sam, segmentation, ssl

SECTIONS = [
    classification.build,
    ssl.build,
    segmentation.build,
    sam.build,
]
