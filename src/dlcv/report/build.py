"""``dlcv report``: every table and figure of the homework, built from a folder of runs.

The report is one self-contained HTML page (``index.html``), Markdown beside it (``report.md``, ``figures/``) and,
where a Chromium is found, ``report.pdf``.
"""

from __future__ import annotations

import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from dlcv.errors import DlcvError, listed
from dlcv.files import atomic_write
from dlcv.io import staged_folder
from dlcv.report.answers import place_answers
from dlcv.report.blocks import ReportContext
from dlcv.report.discovery import discover_runs, find_outputs
from dlcv.report.document import Text, render_html, render_markdown
from dlcv.report.pdf import find_chromium, print_pdf
from dlcv.report.sections import in_order
from dlcv.report.sections.sam import OTHER_OUTPUTS

TITLE = "DLCV HW1: report"
KIND = "report"  # an earlier report is replaced without --overwrite; any other folder of files is refused


def build_report(runs: str | os.PathLike, output: str | os.PathLike, print_line=print, overwrite: bool = False,
                 year: int | None = None, pdf: bool = True, answers=None) -> dict:
    """Write the report of the runs under ``runs`` into ``output``, and return what it holds.

    Args:
        runs: the folder of run folders (and of SAM outputs).
        output: the report folder: new, empty, or an earlier report, which is replaced.
        print_line: prints the progress lines.
        overwrite: also replace a folder of dlcv's that is not a report.
        year: order the sections as that year's homework does (``sections.YEARS``); None: ``SECTIONS``' order.
        pdf: also print ``report.pdf`` when a Chromium is found.
        answers: the student's name, id and answers (``report.answers.Answers``), placed under ``year``'s questions.

    Returns:
        a dict of ``output``, ``index``, ``markdown``, ``sections`` (titles), ``runs`` (names), ``skipped`` (notes),
        ``figures`` (file names), ``pdf`` (its path, or None), ``pdf_problem`` (why the PDF failed, the rest being
        kept; or None) and ``seconds``.

    Raises:
        DlcvError: if ``runs`` holds no run with metrics and no SAM output, ``year`` is unknown,
            ``$DLCV_CHROMIUM`` is not an executable, or ``output`` may not be written.
    """
    start = time.perf_counter()
    runs, output = Path(runs), Path(output)
    with staged_folder(output, overwrite, inputs=(runs,), kind=KIND, replaces_same_kind=True) as building:
        builders, browser = in_order(year), find_chromium() if pdf else None
        found, skipped = discover_runs(runs)
        if not found and not any(find_outputs(runs, name) for name in OTHER_OUTPUTS):
            raise DlcvError(f"{runs}: no run folders with metrics (recipe.yaml and metrics.csv) here or below"
                            + (f"; left out {listed(skipped, 1)}" if skipped else ""))
        figures, scratch = building / "figures", building / ".scratch"
        figures.mkdir()
        scratch.mkdir()
        ctx = ReportContext(figures=figures, scratch=scratch, root=runs, print_line=print_line)
        sections = [s for s in (builder(found, ctx) for builder in builders) if s is not None]
        if skipped and sections:
            sections[-1].blocks.append(Text("Left out: " + "; ".join(skipped), note=True))
        if answers is not None:
            sections = place_answers(sections, year, answers)
        shutil.rmtree(scratch)
        pdf_problem = _write_pages(building, _byline(found, runs, answers), sections, browser)
    return {"output": output, "index": output / "index.html", "markdown": output / "report.md",
            "sections": [s.title for s in sections], "runs": [r.name for r in found], "skipped": skipped,
            "figures": sorted(p.name for p in (output / "figures").iterdir()),
            "pdf": output / "report.pdf" if browser and pdf_problem is None else None, "pdf_problem": pdf_problem,
            "seconds": time.perf_counter() - start}


def _byline(found: list, runs: Path, answers) -> str:
    """Return the line under the title: the student (when the answers name one), the runs read and when."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    meta = (f"Built by dlcv report from {len(found)} run(s) under {runs.resolve().name or 'the root'}/ on {stamp}. "
            "Every number is read "
            "from the runs' metrics.csv, summary.json and recipe.yaml.")
    if answers is not None and (answers.name or answers.student_id):
        who = " ".join(filter(None, (answers.name, f"({answers.student_id})" if answers.student_id else "")))
        meta = f"{who}. {meta}"
    return meta


def _write_pages(folder: Path, meta: str, sections: list, browser) -> str | None:
    """Write index.html, report.md and, with ``browser``, report.pdf into ``folder``; return why the PDF failed."""
    with atomic_write(folder / "index.html") as handle:
        handle.write(render_html(TITLE, meta, sections))
    with atomic_write(folder / "report.md") as handle:
        handle.write(render_markdown(TITLE, meta, sections, folder))
    if browser:
        try:
            print_pdf(browser, folder / "index.html", folder / "report.pdf")
        except DlcvError as exc:
            return str(exc)
    return None
