"""The real-image transfer split (``dlcv data transfer-split``): p1's images in the self-supervised problem's layouts.

Classes 0-24 become ``mini/train/NNNNN.jpg`` (train_50's, unlabelled, named in a seeded shuffle: Mini-ImageNet's
stand-in) and, labelled, ``supervised/{train_50,val_50}/`` (for the backbone of settings B and D); classes 25-49,
renumbered 0-24, become ``office/{train,val}/{label}_{index}.jpg`` with ``train.csv`` / ``val.csv``
(``id,filename,label``, as Office-Home's).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from dlcv.data.p1 import label_from_filename
from dlcv.errors import DlcvError
from dlcv.files import decode_image, list_images
from dlcv.io import staged_folder

PRETRAIN_CLASSES = range(25)
TRANSFER_CLASSES = range(25, 50)


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``source`` as ``target``, or copy it where no link can be made."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _write_jpeg(source: Path, target: Path) -> None:
    """Write the image ``source`` to ``target`` as an RGB JPEG of quality 95."""
    from PIL import Image

    Image.fromarray(decode_image(source)).save(target, format="JPEG", quality=95)


def write_transfer_split(p1: str | os.PathLike, output: str | os.PathLike, seed: int = 0,
                         overwrite: bool = False) -> dict[str, int]:
    """Write the transfer split of a p1 data folder into ``output``, built beside it and renamed in.

    Args:
        p1: the p1_data folder, holding train_50/ and val_50/ with images of classes 0-49.
        output: the folder to write.
        seed: seeds the shuffle that names the unlabelled images.
        overwrite: replace a folder that already holds files.

    Returns:
        the image counts of ``mini``, ``office_train``, ``office_val``, ``supervised_train`` and ``supervised_val``.

    Raises:
        DlcvError: if a p1 folder is missing, a class of 0-49 has no image, two images would get one name, or
            ``output`` may not be written.
    """
    from dlcv.data.office import write_office_csv

    p1, output = Path(p1), Path(output)
    train, val = p1 / "train_50", p1 / "val_50"
    for folder in (train, val):
        if not folder.is_dir():
            raise DlcvError(f"{folder}: no such folder (give --p1 the p1_data folder holding train_50/ and val_50/)")
    with staged_folder(output, overwrite, inputs=(p1,), kind="transfer split") as staging:
        train_files, val_files = list_images(train), list_images(val)
        labels = {p: label_from_filename(p) for p in (*train_files, *val_files)}
        missing = [c for c in (*PRETRAIN_CLASSES, *TRANSFER_CLASSES) if c not in set(labels.values())]
        if missing:
            raise DlcvError(f"{p1}: the transfer split needs classes 0-49; none of class {missing[0]}")
        for sub in ("mini/train", "office/train", "office/val", "supervised/train_50", "supervised/val_50"):
            (staging / sub).mkdir(parents=True)
        pretrain = [p for p in train_files if labels[p] in PRETRAIN_CLASSES]
        counts = {"mini": len(pretrain), "office_train": 0, "office_val": 0, "supervised_train": 0, "supervised_val": 0}
        order = np.random.default_rng(seed).permutation(len(pretrain))
        for index, position in enumerate(order):
            _write_jpeg(pretrain[position], staging / "mini" / "train" / f"{index:05d}.jpg")
        for split, files in (("train", train_files), ("val", val_files)):
            rows, sources = [], {}
            for path in files:
                if labels[path] in TRANSFER_CLASSES:
                    label = labels[path] - TRANSFER_CLASSES.start
                    name = f"{label}_{path.stem.split('_', 1)[1]}.jpg"
                    if name in sources:  # e.g. 25_1.png and 025_1.png, or 25_1.png and 25_1.jpg
                        raise DlcvError(f"{sources[name]} and {path.name}: both would become office/{split}/{name}; "
                                        "keep one of them")
                    sources[name] = path
                    _write_jpeg(path, staging / "office" / split / name)
                    rows.append((name, label))
                elif labels[path] in PRETRAIN_CLASSES:
                    _link_or_copy(path, staging / "supervised" / f"{split}_50" / path.name)
                    counts[f"supervised_{split}"] += 1
            rows.sort(key=lambda r: (r[1], r[0]))
            write_office_csv(staging / "office" / f"{split}.csv", ((i, *row) for i, row in enumerate(rows)))
            counts[f"office_{split}"] = len(rows)
    return counts
