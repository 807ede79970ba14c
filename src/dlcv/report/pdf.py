"""The report as PDF: its HTML printed by headless Chromium (A4; ``document.STYLE`` keeps figures and tables whole)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from dlcv.errors import DlcvError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
HOW_TO_GET = ("install one (Debian/Ubuntu: apt-get install chromium) or name it with DLCV_CHROMIUM=/path/to/chromium")
# Scripts whose characters the usual Latin fonts lack: (fontconfig language, name, first and last code point).
SCRIPTS = (("zh", "Chinese", 0x4E00, 0x9FFF), ("zh", "Chinese", 0x3400, 0x4DBF), ("zh", "Chinese", 0x3000, 0x303F),
           ("zh", "Chinese", 0xFF00, 0xFFEF), ("ja", "Japanese", 0x3040, 0x30FF), ("ko", "Korean", 0xAC00, 0xD7AF))
CJK_PACKAGE = "fonts-noto-cjk"  # Debian's and Ubuntu's (and Colab's) fonts for Chinese, Japanese and Korean


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


def scripts_in(text: str) -> dict[str, str]:
    """Return the scripts of ``SCRIPTS`` that ``text`` uses, as {fontconfig language: name}."""
    found = {}
    for char in set(text):
        point = ord(char)
        for language, name, first, last in SCRIPTS:
            if first <= point <= last:
                found[language] = name
    return found


def missing_fonts(text: str) -> list[str]:
    """Return the names of the scripts in ``text`` that no font of this machine covers (fontconfig's ``fc-list``).

    Chromium draws a character no font covers as an empty box. Without ``fc-list`` every such script is missing.
    """
    missing = []
    for language, name in sorted(scripts_in(text).items()):
        try:
            listed = subprocess.run(["fc-list", f":lang={language}", "family"], capture_output=True, text=True,
                                    timeout=30, check=False, stdin=subprocess.DEVNULL).stdout
        except (OSError, subprocess.TimeoutExpired):
            listed = ""
        if not listed.strip() and name not in missing:
            missing.append(name)
    return missing


def pdf_pages(pdf: Path) -> int:
    """Return the number of pages of a PDF that Chromium printed (its page objects, counted in the file)."""
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf.read_bytes()))
