"""Problem 1's format: ``{class}_{index}.png`` folders and ``filename,label`` CSVs."""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from dlcv.data.images import list_images
from dlcv.errors import DlcvError

_CLASS_PREFIX = re.compile(r"^(\d+)_")


def label_from_filename(path: str | os.PathLike) -> int:
    """The class number before the first ``_`` of a file name such as ``12_345.png``."""
    name = Path(path).name
    match = _CLASS_PREFIX.match(name)
    if match is None:
        raise DlcvError(f"{path}: the file name has no class prefix (expected {{class}}_{{index}}.png)")
    return int(match.group(1))


def _safe_member(folder: Path, name: str, csv_path: Path, line: int) -> Path:
    """``folder / name`` after refusing names that leave the folder (absolute, ``..``)."""
    if (
        not name
        or PurePosixPath(name).is_absolute()
        or PureWindowsPath(name).is_absolute()
        or PureWindowsPath(name).drive
        or ".." in PurePosixPath(name.replace("\\", "/")).parts
    ):
        raise DlcvError(f"{csv_path}:{line}: file name {name!r} points outside the image folder {folder}")
    return folder / name


def read_csv_rows(path: str | os.PathLike, required: tuple[str, ...]) -> list[dict[str, str]]:
    """The rows of a CSV as dicts, after checking that it exists and has the ``required`` columns."""
    path = Path(path)
    if not path.is_file():
        raise DlcvError(f"{path}: no such file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            missing = [c for c in required if c not in columns]
            if missing:
                raise DlcvError(
                    f"{path}: missing column(s) {', '.join(missing)} (header is {','.join(columns) or 'empty'})"
                )
            rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    except UnicodeDecodeError:
        raise DlcvError(f"{path}: not a text CSV file") from None
    except csv.Error as exc:
        raise DlcvError(f"{path}: not a valid CSV ({exc})") from None
    return rows


def parse_label(value: str, where: str) -> int:
    try:
        label = int(value)
    except ValueError:
        raise DlcvError(f"{where}: label {value!r} is not a whole number") from None
    if label < 0:
        raise DlcvError(f"{where}: label {label} is negative")
    return label


@dataclass(frozen=True)
class LabelledImages:
    """Image files with their class labels (``labels`` is None for unlabelled images)."""

    files: list[Path]
    labels: np.ndarray | None

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.files]

    def subset(self, index: np.ndarray) -> LabelledImages:
        return LabelledImages(
            [self.files[i] for i in index], None if self.labels is None else self.labels[index]
        )


def read_image_folder(folder: str | os.PathLike, labels_csv: str | os.PathLike | None = None,
                      labelled: bool = True) -> LabelledImages:
    """The images of ``folder`` (sorted by name) with labels from a CSV or from their file names.

    With ``labels_csv``, the CSV's ``filename,label`` rows decide which images there are; every
    named file must exist inside ``folder``. Without it and with ``labelled``, each file name must
    start with its class. With ``labelled=False`` the images are listed without labels.
    """
    folder = Path(folder)
    if labels_csv is None:
        files = list_images(folder)
        if not labelled:
            return LabelledImages(files, None)
        labels = np.array([label_from_filename(p) for p in files], dtype=np.int64)
        return LabelledImages(files, labels)

    csv_path = Path(labels_csv)
    if not folder.is_dir():
        raise DlcvError(f"{folder}: no such folder")
    rows = read_csv_rows(csv_path, ("filename", "label"))
    if not rows:
        raise DlcvError(f"{csv_path}: the CSV has no rows")
    pairs = []
    seen = set()
    for line, row in enumerate(rows, start=2):
        path = _safe_member(folder, row["filename"], csv_path, line)
        if row["filename"] in seen:
            raise DlcvError(f"{csv_path}:{line}: file name {row['filename']!r} appears twice")
        seen.add(row["filename"])
        if not path.is_file():
            raise DlcvError(f"{csv_path}:{line}: unknown file name {row['filename']!r}: no such file in {folder}")
        pairs.append((path, parse_label(row["label"], f"{csv_path}:{line}")))
    pairs.sort(key=lambda pair: pair[0].name)
    return LabelledImages([p for p, _ in pairs], np.array([l for _, l in pairs], dtype=np.int64))


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (train, holdout) keeping ``fraction`` of every class aside, seeded."""
    if not 0.0 < fraction < 1.0:
        raise DlcvError(f"holdout fraction must be between 0 and 1, got {fraction}")
    rng = np.random.default_rng(seed)
    train, holdout = [], []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        rng.shuffle(members)
        keep = max(1, round(len(members) * fraction)) if len(members) > 1 else 0
        holdout.extend(members[:keep])
        train.extend(members[keep:])
    return np.sort(np.array(train, dtype=np.int64)), np.sort(np.array(holdout, dtype=np.int64))
