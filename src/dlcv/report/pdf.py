"""The report as PDF: its HTML printed by headless Chromium (A4; ``document.STYLE`` keeps figures and tables whole)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from dlcv.errors import DlcvError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
HOW_TO_GET = ("install one (Debian/Ubuntu: apt-get install chromium) or name it with DLCV_CHROMIUM=/path/to/chromium")


def find_chromium() -> str | None:
    """Return the Chromium to print with: ``$DLCV_CHROMIUM`` when set, else the first of ``BROWSERS`` on the PATH.

    Returns:
        the browser's path or name, or None when none is found.

    Raises:
        DlcvError: if ``$DLCV_CHROMIUM`` is not an executable file.
    """
    named = os.environ.get("DLCV_CHROMIUM")
    if named:
        if not (Path(named).is_file() and os.access(named, os.X_OK)):
            raise DlcvError(f"DLCV_CHROMIUM={named}: not an executable file")
        return named
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def print_pdf(browser: str, page: Path, pdf: Path, timeout: float = 180.0) -> None:
    """Print the HTML file ``page`` to ``pdf`` with ``browser``, headless, without header or footer.

    Args:
        browser: the Chromium to run.
        page: the HTML file.
        pdf: the PDF file to write.
        timeout: seconds the browser may take.

    Raises:
        DlcvError: if the browser cannot start, takes longer than ``timeout``, or writes no PDF.
    """
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--no-first-run", "--no-pdf-header-footer", f"--print-to-pdf={pdf}", page.resolve().as_uri()]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DlcvError(f"{browser}: could not print the report to PDF ({exc})") from None
    if not pdf.is_file() or pdf.read_bytes()[:5] != b"%PDF-":
        last = (done.stderr.strip().splitlines() or ["no message"])[-1][:200]
        raise DlcvError(f"{browser}: could not print the report to PDF (exit {done.returncode}: {last})")
