"""The self-supervised problem's labelled formats: Office-Home, and the kNN monitor's sets.

Office-Home is ``office/{train,val}/`` with ``train.csv`` / ``val.csv`` of header ``id,filename,label`` (a test CSV's
labels empty), read as classification data (``data.train_labels: train.csv``); prediction keeps the CSV's order and
ids (``read_office_csv``). Images of mixed sizes are cached once, resized to ``data.image_size``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dlcv.data.images import load_resized_stack
from dlcv.data.p1 import parse_label, read_image_folder, stratified_holdout
from dlcv.errors import DlcvError
from dlcv.files import atomic_write, office_rows


@dataclass(frozen=True)
class OfficeRows:
    """The rows of an Office-Home CSV in file order; ``labels`` None where the label column is empty."""

    ids: list[str]
    filenames: list[str]
    files: list[Path]
    labels: list[int | None]


def read_office_csv(csv_path: str | os.PathLike, folder: str | os.PathLike) -> OfficeRows:
    """Read an Office-Home CSV of ``id,filename,label`` rows (the label may be empty).

    Args:
        csv_path: the CSV file.
        folder: the folder of its images; every file must exist inside it.

    Raises:
        DlcvError: if the CSV is missing, malformed or empty, names a file outside ``folder`` or not in it, or holds
            a label that is not a class number.
    """
    rows, files = office_rows(csv_path, folder)
    labels = [parse_label(row["label"], f"{csv_path}:{line}") if row.get("label") else None
              for line, row in enumerate(rows, start=2)]
    return OfficeRows([row["id"] for row in rows], [row["filename"] for row in rows], files, labels)


def write_office_csv(path: str | os.PathLike, rows: Iterable[tuple]) -> None:
    """Write ``(id, filename, label)`` rows under the header ``id,filename,label``, atomically."""
    with atomic_write(path, newline="") as handle:
        csv.writer(handle).writerows([("id", "filename", "label"), *rows])


def monitor_sets(folder: str | os.PathLike, side: int | None, max_bank: int, seed: int,
                 use_cache: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Load the kNN monitor's images: a class-balanced bank of labelled images, then the queries.

    Args:
        folder: Office-Home (``train/`` the bank, ``val/`` the queries, with ``train.csv``, ``val.csv``) or a
            p1-style folder (``train_50/``, ``val_50/``, the class starting each file name), e.g. the transfer
            split's ``supervised/``.
        side: resize every image to ``side`` x ``side`` pixels; None: as they are, all of one size.
        max_bank: the most bank images, drawn class-balanced.
        seed: seeds that draw.
        use_cache: read and write the decoded-image cache.

    Returns:
        ``(images, rows)``: (N, H, W, 3) uint8 images, bank first, and (N, 2) int64 ``[label, is_query]`` rows.

    Raises:
        DlcvError: if ``folder`` has neither layout, or its images or labels cannot be read.
    """
    folder = Path(folder)
    if (folder / "train.csv").is_file():
        bank, queries = [read_image_folder(folder / name, folder / f"{name}.csv") for name in ("train", "val")]
    elif (folder / "train_50").is_dir() and (folder / "val_50").is_dir():
        bank, queries = [read_image_folder(folder / name) for name in ("train_50", "val_50")]
    else:
        raise DlcvError(f"{folder}: not a kNN monitor folder: it needs train/, val/ with train.csv, val.csv "
                        "(Office-Home), or train_50/ and val_50/ (p1 layout)")
    if len(bank.labels) > max_bank:
        bank = bank.subset(stratified_holdout(bank.labels, max_bank / len(bank.labels), seed)[1])
    images, rows = [], []
    for is_query, listed in enumerate((bank, queries)):
        images.append(torch.from_numpy(np.array(load_resized_stack(listed.files, side, use_cache=use_cache))))
        flags = torch.full((len(listed.labels),), is_query, dtype=torch.int64)
        rows.append(torch.stack([torch.from_numpy(listed.labels), flags], 1))
    return torch.cat(images), torch.cat(rows)
