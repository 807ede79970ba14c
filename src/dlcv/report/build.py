"""``dlcv report``: every table and figure of the homework from a folder of runs, as one
self-contained HTML page (``index.html``) and Markdown beside it (``report.md`` + ``figures/``)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from dlcv.errors import DlcvError
from dlcv.io import atomic_write, current_umask

REPORT_FILES = ("index.html", "report.md")
TITLE = "DLCV HW1: report"


def _check_output(output: Path) -> None:
    """The output may be new, empty or an earlier report (replaced whole); never a folder of other files."""
    if output.exists() and not output.is_dir():
        raise DlcvError(f"{output}: exists and is not a folder")
    if not output.parent.is_dir():
        raise DlcvError(f"{output}: the folder {output.parent} does not exist")
    if output.is_dir() and any(output.iterdir()) and not any((output / f).is_file() for f in REPORT_FILES):
        raise DlcvError(f"{output}: holds files that are not a report; choose a new or empty folder")


def _replace_folder(built: Path, output: Path) -> None:
    """Put ``built`` where ``output`` is: the earlier report stays whole until the new one is in place."""
    if not output.exists():
        os.replace(built, output)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{output.name}.old-", dir=output.parent))
    os.replace(output, old / output.name)
    os.replace(built, output)
    shutil.rmtree(old)


def build_report(runs: str | os.PathLike, output: str | os.PathLike, say=print) -> dict:
    """Write the report of the runs under ``runs`` into ``output``; return what it holds."""
    from dlcv.report.blocks import ReportContext
    from dlcv.report.discovery import discover_runs, find_outputs
    from dlcv.report.document import Text, render_html, render_markdown
    from dlcv.report.sections import SECTIONS
    from dlcv.report.sections.sam import OTHER_OUTPUTS

    start = time.perf_counter()
    runs, output = Path(runs), Path(output)
    _check_output(output)
    found, skipped = discover_runs(runs)
    if not found and not any(find_outputs(runs, name) for name in OTHER_OUTPUTS):
        raise DlcvError(f"{runs}: no run folders with metrics (recipe.yaml and metrics.csv) here or below")
    building = Path(tempfile.mkdtemp(prefix=f".{output.name}.building-", dir=output.parent))
    try:
        figures, scratch = building / "figures", building / ".scratch"
        figures.mkdir()
        scratch.mkdir()
        ctx = ReportContext(figures=figures, scratch=scratch, root=runs, say=say)
        sections = [s for s in (builder(found, ctx) for builder in SECTIONS) if s is not None]
        if skipped and sections:
            sections[-1].blocks.append(Text("Left out: " + "; ".join(skipped), note=True))
        shutil.rmtree(scratch)
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        meta = (f"Built by dlcv report from {len(found)} run(s) under {runs} on {stamp}. Every number is read "
                "from the runs' metrics.csv, summary.json and recipe.yaml.")
        with atomic_write(building / "index.html") as handle:
            handle.write(render_html(TITLE, meta, sections))
        with atomic_write(building / "report.md") as handle:
            handle.write(render_markdown(TITLE, meta, sections, building))
        os.chmod(building, 0o777 & ~current_umask())  # mkdtemp makes 0700; the report gets the usual mode
        _replace_folder(building, output)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return {"output": output, "index": output / "index.html", "markdown": output / "report.md",
            "sections": [s.title for s in sections], "runs": [r.name for r in found], "skipped": skipped,
            "figures": sorted(p.name for p in (output / "figures").iterdir()),
            "seconds": time.perf_counter() - start}
