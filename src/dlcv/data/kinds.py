"""Which of the course's data folders a folder looks like, so that a command given the wrong one says so."""

from __future__ import annotations

import re
from pathlib import Path

from dlcv.errors import DlcvError

P1_IMAGE = re.compile(r"^[0-9]+_[0-9]+\.png$")
KINDS = {  # what each command wants, in words
    "p1": "Problem 1's classification data (train_50/ and val_50/ of CLASS_INDEX.png)",
    "p1_images": "a folder of Problem 1 images (CLASS_INDEX.png)",
    "satellite": "the satellite set (train/ and validation/ of NNNN_sat.jpg with NNNN_mask.png)",
    "tiles": "a folder of satellite tiles (NNNN_sat.jpg)",
    "ssl": "the self-supervision data (mini/train/ and office/)",
}


def folder_kind(folder: Path) -> str | None:
    """Return the key of ``KINDS`` that ``folder`` looks like; None for none of them (or no such folder)."""
    if not folder.is_dir():
        return None
    if (folder / "train_50").is_dir() or (folder / "val_50").is_dir():
        return "p1"
    if (folder / "mini").is_dir() or (folder / "office").is_dir():
        return "ssl"
    if any(_holds_tiles(folder / sub) for sub in ("train", "validation")):
        return "satellite"
    names = [p.name for _, p in zip(range(200), folder.iterdir())]
    if any(name.lower().endswith("_sat.jpg") for name in names):
        return "tiles"
    if any(P1_IMAGE.match(name) for name in names):
        return "p1_images"
    return None


def _holds_tiles(folder: Path) -> bool:
    return folder.is_dir() and any(True for _ in zip(range(1), folder.glob("*_sat.jpg")))


def check_kind(folder: Path, wanted: str) -> None:
    """Refuse a ``folder`` that looks like another of the course's folders than the ``wanted`` kind.

    Args:
        folder: the folder a command was given.
        wanted: the key of ``KINDS`` the command wants.

    Raises:
        DlcvError: if ``folder`` looks like another kind; the line names both.
    """
    kind = folder_kind(folder)
    if kind is not None and kind != wanted:
        raise DlcvError(f"{folder}: looks like {KINDS[kind]}; this command wants {KINDS[wanted]}")
