"""Problem 1's format: ``{class}_{index}.png`` folders and ``filename,label`` CSVs."""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from dlcv.data.images import check_inside, list_images
from dlcv.errors import DlcvError

_CLASS_PREFIX = re.compile(r"^(\d+)_")
# Every class number read from a file (a name, a CSV, a checkpoint) is below this before anything is
# sized by it: a head, a one-hot matrix, a confusion matrix. ImageNet-21k has 21,841 classes.
MAX_CLASSES = 100_000


def label_from_filename(path: str | os.PathLike) -> int:
    """The class number before the first ``_`` of a file name such as ``12_345.png``."""
    name = Path(path).name
    match = _CLASS_PREFIX.match(name)
    if match is None:
        raise DlcvError(f"{path}: the file name has no class prefix (expected {{class}}_{{index}}.png)")
    label = int(match.group(1))
    if label >= MAX_CLASSES:
        raise DlcvError(f"{path}: class {match.group(1)} in the file name is out of range (classes are 0..."
                        f"{MAX_CLASSES - 1})")
    return label


def _safe_member(folder: Path, name: str, csv_path: Path, line: int) -> Path:
    """``folder / name`` after refusing names that leave the folder (absolute, ``..``, a link out of it)."""
    if (
        not name
        or PurePosixPath(name).is_absolute()
        or PureWindowsPath(name).is_absolute()
        or PureWindowsPath(name).drive
        or ".." in PurePosixPath(name.replace("\\", "/")).parts
    ):
        raise DlcvError(f"{csv_path}:{line}: file name {name!r} points outside the image folder {folder}")
    return check_inside(folder, folder / name, f"{csv_path}:{line}")


def read_csv_rows(path: str | os.PathLike, required: tuple[str, ...]) -> list[dict[str, str]]:
    """The rows of a CSV as dicts, after checking that it exists and has the ``required`` columns."""
    path = Path(path)
    if not path.is_file():
        raise DlcvError(f"{path}: no such file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            twice = sorted({c for c in columns if columns.count(c) > 1})
            if twice:
                raise DlcvError(f"{path}: the header names column(s) {', '.join(twice)} more than once")
            missing = [c for c in required if c not in columns]
            if missing:
                raise DlcvError(
                    f"{path}: missing column(s) {', '.join(missing)} (header is {','.join(columns) or 'empty'})"
                )
            rows = []
            for row in reader:
                # DictReader files extra fields under None and fills missing ones with None.
                if None in row or None in row.values():
                    fields = len(columns) + len(row.get(None) or ()) - sum(v is None for v in row.values())
                    raise DlcvError(f"{path}:{reader.line_num}: {fields} field(s), but the header has "
                                    f"{len(columns)}")
                rows.append({k.strip(): v.strip() for k, v in row.items()})
    except UnicodeDecodeError:
        raise DlcvError(f"{path}: not a text CSV file") from None
    except csv.Error as exc:
        raise DlcvError(f"{path}: not a valid CSV ({exc})") from None
    return rows


def parse_label(value: str, where: str) -> int:
    """A class label from text: a whole number in 0..MAX_CLASSES-1, else one line naming ``where``."""
    shown = repr(value) if len(value) <= 24 else repr(value[:20]) + f" ({len(value)} characters)"
    if len(value) > len(str(MAX_CLASSES)) + 2:  # int() of thousands of digits is slow, then refused anyway
        raise DlcvError(f"{where}: label {shown} is out of range (classes are 0...{MAX_CLASSES - 1})")
    try:
        label = int(value)
    except ValueError:
        raise DlcvError(f"{where}: label {shown} is not a whole number") from None
    if label < 0:
        raise DlcvError(f"{where}: label {label} is negative")
    if label >= MAX_CLASSES:
        raise DlcvError(f"{where}: label {value} is out of range (classes are 0...{MAX_CLASSES - 1})")
    return label


def check_class_count(labels: np.ndarray, where: str | os.PathLike) -> int:
    """The class count ``labels`` imply (highest + 1), refused above twice the number of different labels (a stray
    ``99999_0.png`` among 50 classes would make a 100,000-class model); ``data.num_classes`` states such a count."""
    count = int(labels.max()) + 1
    distinct = len(np.unique(labels))
    if count > max(2 * distinct, 10):
        raise DlcvError(f"{where}: labels run up to {count - 1} but only {distinct} different ones occur; a stray "
                        "class number? (set data.num_classes if that many classes are meant)")
    return count


@dataclass(frozen=True)
class LabelledImages:
    """Image files with their class labels."""

    files: list[Path]
    labels: np.ndarray

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.files]

    def subset(self, index: np.ndarray) -> LabelledImages:
        return LabelledImages([self.files[i] for i in index], self.labels[index])


def read_image_folder(folder: str | os.PathLike, labels_csv: str | os.PathLike | None = None) -> LabelledImages:
    """The images of ``folder`` (sorted by name), labelled by ``labels_csv``'s ``filename,label`` rows (which decide the
    images; each must exist inside ``folder``) or else by the class each file name must start with."""
    folder = Path(folder)
    if labels_csv is None:
        files = list_images(folder)
        return LabelledImages(files, np.array([label_from_filename(p) for p in files], dtype=np.int64))

    csv_path = Path(labels_csv)
    if not folder.is_dir():
        raise DlcvError(f"{folder}: no such folder")
    rows = read_csv_rows(csv_path, ("filename", "label"))
    if not rows:
        raise DlcvError(f"{csv_path}: the CSV has no rows")
    pairs: dict[str, tuple[Path, int]] = {}
    for line, row in enumerate(rows, start=2):
        path = _safe_member(folder, row["filename"], csv_path, line)
        if row["filename"] in pairs:
            raise DlcvError(f"{csv_path}:{line}: file name {row['filename']!r} appears twice")
        if not path.is_file():
            raise DlcvError(f"{csv_path}:{line}: unknown file name {row['filename']!r}: no such file in {folder}")
        pairs[row["filename"]] = (path, parse_label(row["label"], f"{csv_path}:{line}"))
    ordered = sorted(pairs.values(), key=lambda pair: pair[0].name)
    return LabelledImages([p for p, _ in ordered], np.array([l for _, l in ordered], dtype=np.int64))


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
