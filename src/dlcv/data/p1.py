"""Problem 1's format: ``{class}_{index}.png`` folders and ``filename,label`` CSVs."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlcv.errors import DlcvError
from dlcv.files import list_images, read_csv_rows, safe_member

_CLASS_PREFIX = re.compile(r"^([0-9]+)_")  # ASCII digits: int() also reads other scripts'
_ASCII_WHOLE = re.compile(r"[0-9]+")
# Every class number read from a file (a name, a CSV, a checkpoint) is below this before anything is
# sized by it: a head, a one-hot matrix, a confusion matrix. ImageNet-21k has 21,841 classes.
MAX_CLASSES = 100_000


def label_from_filename(path: str | os.PathLike) -> int:
    """Return the class number before the first ``_`` of a file name such as ``12_345.png``.

    Raises:
        DlcvError: if the name has no class prefix of ASCII digits, or the class is not below ``MAX_CLASSES``.
    """
    name = Path(path).name
    match = _CLASS_PREFIX.match(name)
    if match is None:
        raise DlcvError(f"{path}: the file name has no class prefix (expected {{class}}_{{index}}.png)")
    label = int(match.group(1))
    if label >= MAX_CLASSES:
        raise DlcvError(f"{path}: class {match.group(1)} in the file name is out of range (classes are 0..."
                        f"{MAX_CLASSES - 1})")
    return label


def parse_label(value: str, where: str) -> int:
    """Parse a class label from text: ASCII digits making a whole number from 0 to ``MAX_CLASSES`` - 1.

    Raises:
        DlcvError: naming ``where`` (a file and line), if ``value`` is not such a number.
    """
    shown = repr(value) if len(value) <= 24 else repr(value[:20]) + f" ({len(value)} characters)"
    if len(value) > len(str(MAX_CLASSES)) + 2:  # int() of thousands of digits is slow, then refused anyway
        raise DlcvError(f"{where}: label {shown} is out of range (classes are 0...{MAX_CLASSES - 1})")
    if not _ASCII_WHOLE.fullmatch(value):  # int() would also read "+1", " 1", "1_0", "٢" and "３"
        raise DlcvError(f"{where}: label {shown} is not a whole number of digits 0-9")
    label = int(value)
    if label >= MAX_CLASSES:
        raise DlcvError(f"{where}: label {value} is out of range (classes are 0...{MAX_CLASSES - 1})")
    return label


def check_class_count(labels: np.ndarray, where: str | os.PathLike) -> int:
    """Return the class count ``labels`` imply: the highest label + 1.

    A count above twice the number of different labels (and above 10) is refused: a stray ``99999_0.png`` among 50
    classes would make a 100,000-class model. ``data.num_classes`` states such a count when it is meant.

    Raises:
        DlcvError: naming ``where``, if the count is refused.
    """
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
    labels: np.ndarray  # (N,) int64

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.files]

    def subset(self, index: np.ndarray) -> LabelledImages:
        return LabelledImages([self.files[i] for i in index], self.labels[index])


def read_image_folder(folder: str | os.PathLike, labels_csv: str | os.PathLike | None = None) -> LabelledImages:
    """List the labelled images of a folder, sorted by file name.

    Args:
        folder: the image folder.
        labels_csv: a CSV of ``filename,label`` rows, which decide the images (each must exist inside ``folder``);
            None: every image of ``folder``, labelled by the class its file name starts with.

    Raises:
        DlcvError: if the folder or CSV is missing, malformed or empty, a row names a missing, repeated or outside file,
            or a label is not a class number.
    """
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
        path = safe_member(folder, row["filename"], csv_path, line)
        if row["filename"] in pairs:
            raise DlcvError(f"{csv_path}:{line}: file name {row['filename']!r} appears twice")
        if not path.is_file():
            raise DlcvError(f"{csv_path}:{line}: unknown file name {row['filename']!r}: no such file in {folder}")
        pairs[row["filename"]] = (path, parse_label(row["label"], f"{csv_path}:{line}"))
    ordered = sorted(pairs.values(), key=lambda pair: pair[0].name)
    return LabelledImages([p for p, _ in ordered], np.array([l for _, l in ordered], dtype=np.int64))


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into sorted ``(train, holdout)`` arrays, holding out ``fraction`` of every class.

    Each class of two samples or more gives at least one to the holdout; a class of one sample stays in train.

    Args:
        labels: (N,) class labels.
        fraction: the share of each class held out, strictly between 0 and 1.
        seed: seeds the draw.

    Raises:
        DlcvError: if ``fraction`` is not strictly between 0 and 1.
    """
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
