"""``dlcv report``: every table and figure of the homework from a folder of runs, as one
self-contained HTML page (``index.html``), Markdown beside it (``report.md`` + ``figures/``) and, where a
Chromium is found, the page printed as ``report.pdf``."""

from __future__ import annotations

import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from dlcv.errors import DlcvError
from dlcv.io import atomic_write, check_output_folder, staged_folder

TITLE = "DLCV HW1: report"
KIND = "report"  # an earlier report is replaced without --overwrite; any other folder of files is refused


def build_report(runs: str | os.PathLike, output: str | os.PathLike, say=print, overwrite: bool = False,
                 year: int | None = None, pdf: bool = True, answers=None) -> dict:
    """Write the report of the runs under ``runs`` into ``output``, its sections in the order of ``year``'s
    homework (``dlcv.report.sections.YEARS``), with ``report.pdf`` when ``pdf`` and a Chromium is found (one that
    fails leaves the rest written, and ``pdf_problem`` says why); ``answers`` (``report.answers.Answers``): the
    student's name, id and answers, put under ``year``'s questions; return what it holds."""
    from dlcv.report.answers import place_answers
    from dlcv.report.blocks import ReportContext
    from dlcv.report.discovery import discover_runs, find_outputs
    from dlcv.report.document import Text, render_html, render_markdown
    from dlcv.report.pdf import find_chromium, print_pdf
    from dlcv.report.sections import in_order
    from dlcv.report.sections.sam import OTHER_OUTPUTS

    start = time.perf_counter()
    runs, output = Path(runs), Path(output)
    check_output_folder(output, overwrite, inputs=(runs,), kind=KIND)
    builders, browser = in_order(year), find_chromium() if pdf else None
    found, skipped = discover_runs(runs)
    if not found and not any(find_outputs(runs, name) for name in OTHER_OUTPUTS):
        raise DlcvError(f"{runs}: no run folders with metrics (recipe.yaml and metrics.csv) here or below")
    with staged_folder(output, overwrite, inputs=(runs,), kind=KIND, replaces_same_kind=True) as building:
        figures, scratch = building / "figures", building / ".scratch"
        figures.mkdir()
        scratch.mkdir()
        ctx = ReportContext(figures=figures, scratch=scratch, root=runs, say=say)
        sections = [s for s in (builder(found, ctx) for builder in builders) if s is not None]
        if skipped and sections:
            sections[-1].blocks.append(Text("Left out: " + "; ".join(skipped), note=True))
        if answers is not None:
            sections = place_answers(sections, year, answers)
        shutil.rmtree(scratch)
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        meta = (f"Built by dlcv report from {len(found)} run(s) under {runs} on {stamp}. Every number is read "
                "from the runs' metrics.csv, summary.json and recipe.yaml.")
        if answers is not None and (answers.name or answers.student_id):
            who = " ".join(filter(None, (answers.name, f"({answers.student_id})" if answers.student_id else "")))
            meta = f"{who}. {meta}"
        with atomic_write(building / "index.html") as handle:
            handle.write(render_html(TITLE, meta, sections))
        with atomic_write(building / "report.md") as handle:
            handle.write(render_markdown(TITLE, meta, sections, building))
        pdf_problem = None
        if browser:
            try:
                print_pdf(browser, building / "index.html", building / "report.pdf")
            except DlcvError as exc:  # the page and the Markdown are whole: keep them, say what failed
                pdf_problem, browser = str(exc), None
    return {"output": output, "index": output / "index.html", "markdown": output / "report.md",
            "sections": [s.title for s in sections], "runs": [r.name for r in found], "skipped": skipped,
            "figures": sorted(p.name for p in (output / "figures").iterdir()),
            "pdf": output / "report.pdf" if browser else None, "pdf_problem": pdf_problem,
            "seconds": time.perf_counter() - start}
