"""Feature files: the second-last layer's outputs for a set of images, with their labels and file names.

A feature file is an ``.npz`` of ``features`` (N, D) float16 (ample for plots and neighbour statistics), ``labels``
(N,) and optionally ``filenames`` (N,) and ``epoch``; a run keeps one per snapshot epoch as
``runs/NAME/embeddings/epoch_NNN.npz``.
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlcv.data.p1 import MAX_CLASSES
from dlcv.errors import DlcvError
from dlcv.files import atomic_path

SNAPSHOT_DIR = "embeddings"
TRAINING_SUBSET = "train_"  # file-name prefix of the training-subset snapshots
_SNAPSHOT_NAME = re.compile(rf"^({TRAINING_SUBSET})?epoch_([0-9]+)\.npz$")


@dataclass
class FeatureSet:
    """One feature file's contents: features, labels, optional file names and the epoch they were taken at."""

    features: np.ndarray  # (N, D) float32 once loaded
    labels: np.ndarray  # (N,) int64 once loaded
    filenames: list[str] | None = None
    epoch: int | None = None
    source: str = ""  # the file it was read from

    def title(self) -> str:
        return f"epoch {self.epoch}" if self.epoch is not None else Path(self.source).stem


def save_features(path: str | os.PathLike, features: np.ndarray, labels: np.ndarray,
                  filenames: list[str] | None = None, epoch: int | None = None) -> None:
    """Write a feature file atomically.

    Args:
        path: the ``.npz`` file to write.
        features: (N, D) features, stored as float16.
        labels: (N,) class labels, stored as int32.
        filenames: the N images' file names, or None.
        epoch: the epoch the features were taken at, or None.
    """
    arrays = {"features": np.asarray(features, dtype=np.float16), "labels": np.asarray(labels, dtype=np.int32)}
    if filenames is not None:
        arrays["filenames"] = np.asarray(filenames, dtype=str)
    if epoch is not None:
        arrays["epoch"] = np.asarray(epoch, dtype=np.int32)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def load_features(path: str | os.PathLike) -> FeatureSet:
    """Read and check a feature file.

    Args:
        path: an ``.npz`` feature file.

    Returns:
        the file's ``FeatureSet``, features as float32 (N, D) and labels as int64 (N,).

    Raises:
        DlcvError: if the file is missing or unreadable, lacks ``features`` or ``labels``, or holds an array of the
            wrong shape, type or range (N >= 3 points and D >= 2 dimensions are needed).
    """
    path = Path(path)
    if not path.is_file():
        raise DlcvError(f"{path}: no such feature file")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise DlcvError(f"{path}: one array (.npy), not a feature file (.npz of features and labels)")
        with data:
            keys = set(data.files)
            if "features" not in keys:
                raise DlcvError(f"{path}: no 'features' array (a feature file holds features, labels and "
                                "optionally filenames)")
            if "labels" not in keys:
                raise DlcvError(f"{path}: no 'labels' array: every point needs its class to be drawn")
            features, labels = data["features"], data["labels"]
            filenames = data["filenames"] if "filenames" in keys else None
            epoch = data["epoch"] if "epoch" in keys else None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DlcvError(f"{path}: not a readable .npz feature file ({exc})") from None
    features = _checked_features(path, features)
    _check_labels(path, labels, len(features))
    if filenames is not None and (filenames.ndim != 1 or filenames.dtype.kind != "U" or
                                  len(filenames) != len(features)):
        raise DlcvError(f"{path}: 'filenames' must be {len(features)} names (one per point), got "
                        f"{filenames.dtype} of shape {filenames.shape}")
    if epoch is not None and (epoch.shape != () or epoch.dtype.kind not in "iu" or epoch < 0):
        raise DlcvError(f"{path}: 'epoch' must be one whole number >= 0, got {epoch.dtype} of shape {epoch.shape}")
    return FeatureSet(features, labels.astype(np.int64), None if filenames is None else filenames.tolist(),
                      None if epoch is None else int(epoch), str(path))


# Every layout and statistic squares and sums features in float32: beyond this they would overflow to inf.
LARGEST_FEATURE = 1e15


def _checked_features(path: Path, features: np.ndarray) -> np.ndarray:
    """Return ``features`` as float32 (N, D); ``DlcvError`` unless real, finite and within ``LARGEST_FEATURE``."""
    if features.dtype.kind not in "iuf":  # records, objects, complex numbers, text, booleans
        raise DlcvError(f"{path}: 'features' must be an array of real numbers, got {features.dtype}")
    if features.ndim != 2 or len(features) < 3 or features.shape[1] < 2:
        raise DlcvError(f"{path}: 'features' must be N x D with N >= 3 and D >= 2, got shape {features.shape}")
    if not np.isfinite(features).all():
        raise DlcvError(f"{path}: 'features' holds NaN or infinite values")
    largest = float(np.abs(features.astype(np.float64)).max())
    if largest > LARGEST_FEATURE:
        raise DlcvError(f"{path}: 'features' holds values up to {largest:.3g} in size; layouts and neighbour "
                        f"statistics need them within {LARGEST_FEATURE:g} (rescale the features)")
    return features.astype(np.float32)


def _check_labels(path: Path, labels: np.ndarray, points: int) -> None:
    """``DlcvError`` unless ``labels`` are ``points`` whole numbers, classes 0 to MAX_CLASSES - 1."""
    if labels.shape != (points,):
        raise DlcvError(f"{path}: 'labels' has shape {labels.shape}, expected ({points},)")
    if labels.dtype.kind not in "iu":
        raise DlcvError(f"{path}: 'labels' must be whole numbers, got {labels.dtype}")
    if labels.min() < 0 or labels.max() >= MAX_CLASSES:
        raise DlcvError(f"{path}: 'labels' must be classes 0 to {MAX_CLASSES - 1}, got {labels.min()} to "
                        f"{labels.max()}")


def snapshot_path(run_dir: str | os.PathLike, epoch: int, prefix: str = "") -> Path:
    """Return a snapshot's path ``run_dir/embeddings/[prefix]epoch_NNN.npz`` (prefix "" or ``TRAINING_SUBSET``)."""
    return Path(run_dir) / SNAPSHOT_DIR / f"{prefix}epoch_{epoch:03d}.npz"


def load_run_snapshots(run_dir: str | os.PathLike, training_subset: bool = False) -> list[FeatureSet]:
    """Load every snapshot of a run, in epoch order.

    Args:
        run_dir: the run folder.
        training_subset: the snapshots of its training subset instead of those of its validation images.

    Returns:
        one ``FeatureSet`` per snapshot, its ``epoch`` from the file name where the file has none.

    Raises:
        DlcvError: if the run kept no such snapshots, or one of them is not a valid feature file.
    """
    folder = Path(run_dir) / SNAPSHOT_DIR
    prefix = TRAINING_SUBSET if training_subset else None
    found = sorted((int(m.group(2)), p) for p in folder.glob("*epoch_*.npz")
                   if (m := _SNAPSHOT_NAME.match(p.name)) and m.group(1) == prefix)
    if not found:
        what = "training-subset " if training_subset else ""
        raise DlcvError(f"{run_dir}: the run kept no {what}embedding snapshots (no {SNAPSHOT_DIR}/"
                        f"{prefix or ''}epoch_NNN.npz); train it with embed.epochs"
                        f"{' and embed.train_subset' if training_subset else ''} set in the recipe")
    sets = [load_features(p) for _, p in found]
    for (epoch, _), fs in zip(found, sets):
        fs.epoch = epoch if fs.epoch is None else fs.epoch
    return sets


