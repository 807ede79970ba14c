"""Land-cover masks: RGB PNG to class index and back, exactly as the course's evaluation script reads them.

Each channel is thresholded at 128 into a code ``4*R + 2*G + B``, seven of whose eight values are classes. Red (4),
which the course's script leaves undefined, ``MaskCodec`` counts as Unknown (class 6, in no score's average) under
``"unknown"`` (the default), or refuses under ``"error"``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlcv.errors import DlcvError, mismatch_message
from dlcv.files import SizeMismatch, atomic_path, decode_image, unique_ids

CLASS_NAMES = ("Urban", "Agriculture", "Rangeland", "Forest", "Water", "Barren", "Unknown")
CLASS_COLOURS = np.array(
    [(0, 255, 255), (255, 255, 0), (255, 0, 255), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)],
    dtype=np.uint8,
)
NUM_CLASSES = len(CLASS_NAMES)  # 7, Unknown included
SCORED_CLASSES = 6  # mIoU averages classes 0-5
UNKNOWN = 6
UNMAPPED_POLICIES = ("unknown", "error")
_UNMAPPED = 255  # code-table entry of a colour in no class


def colour_codes(rgb: np.ndarray) -> np.ndarray:
    """Return the (H, W) uint8 code ``4*R + 2*G + B`` of (H, W, 3) uint8 RGB, each channel thresholded at 128."""
    return ((rgb[..., 0] >> 7) << 2) | ((rgb[..., 1] >> 7) << 1) | (rgb[..., 2] >> 7)


CODE_TO_CLASS = np.full(8, _UNMAPPED, dtype=np.uint8)  # code 4 (red) stays unmapped
CODE_TO_CLASS[colour_codes(CLASS_COLOURS)] = np.arange(NUM_CLASSES)


def unmapped_error(source, count: int) -> DlcvError:
    """Return the ``error`` policy's error for ``count`` pixels of a colour in no class in ``source``."""
    return DlcvError(f"{source}: {count} pixel(s) of a colour in no class (red, (255, 0, 0)); "
                     "use the 'unknown' policy to count them as Unknown")


@dataclass(frozen=True)
class MaskCodec:
    """Converts RGB masks to uint8 class indices 0-6 and back; ``unmapped`` says what red pixels become.

    ``unmapped`` is ``"unknown"`` (counted as Unknown) or ``"error"`` (refused); any other value raises ``DlcvError``.
    """

    unmapped: str = "unknown"

    def __post_init__(self):
        if self.unmapped not in UNMAPPED_POLICIES:
            raise DlcvError(f"unmapped colours: {self.unmapped!r} is not one of {', '.join(UNMAPPED_POLICIES)}")

    def decode(self, rgb: np.ndarray, source: str | os.PathLike = "mask") -> np.ndarray:
        """Convert an (H, W, 3) uint8 RGB mask to (H, W) uint8 class indices.

        Args:
            rgb: (H, W, 3 or more) uint8 mask; channels beyond three are ignored.
            source: the mask's file, named in errors.

        Raises:
            DlcvError: if ``rgb`` is not an RGB array, or holds red pixels under the ``error`` policy.
        """
        if rgb.ndim != 3 or rgb.shape[2] < 3:
            raise DlcvError(f"{source}: a mask must be an RGB image, got an array of shape {rgb.shape}")
        classes = CODE_TO_CLASS[colour_codes(rgb)]
        unmapped = classes == _UNMAPPED
        if self.unmapped == "error" and unmapped.any():
            raise unmapped_error(source, int(unmapped.sum()))
        classes[unmapped] = UNKNOWN
        return classes

    @staticmethod
    def encode(classes: np.ndarray) -> np.ndarray:
        """Convert (H, W) class indices to an (H, W, 3) uint8 RGB mask in ``CLASS_COLOURS``.

        Raises:
            DlcvError: if an index lies outside 0-6.
        """
        classes = np.asarray(classes)
        if classes.size and (classes.min() < 0 or classes.max() >= NUM_CLASSES):
            raise DlcvError(f"class indices must lie in 0..{NUM_CLASSES - 1}")
        return CLASS_COLOURS[classes]


def read_mask(path: Path, codec: MaskCodec, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode one mask PNG to (H, W) uint8 class indices.

    Args:
        path: the mask file.
        codec: the ``MaskCodec`` that maps its colours.
        size: the (height, width) it must have; None: any.

    Raises:
        SizeMismatch: if the mask is not of ``size``.
        DlcvError: if it cannot be read, is not RGB, or ``codec`` refuses its colours.
    """
    rgb = decode_image(path, rgb_only=True)
    if size is not None and rgb.shape[:2] != size:
        raise SizeMismatch(f"{path}: mask is {rgb.shape[1]}x{rgb.shape[0]}, expected {size[1]}x{size[0]}")
    return codec.decode(rgb, path)


def write_png(path: Path, array: np.ndarray) -> None:
    """Write a uint8 image array as a PNG, atomically, so that a reader never sees half a file."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def write_mask(path: Path, classes: np.ndarray) -> None:
    """Write (H, W) class indices as an RGB mask PNG, atomically."""
    write_png(path, MaskCodec.encode(classes))


# --- folders of masks ----------------------------------------------------------------------------------
MASK_NAME = re.compile(r"^(.+)_mask\.png$", re.IGNORECASE)


def mask_files(folder: Path, role: str) -> dict[str, Path]:
    """Return the ``NNNN_mask.png`` files of a folder by file name, one per id (``unique_ids``).

    Args:
        folder: the folder of masks.
        role: what the folder is (``"predictions"``, ``"labels"``), named in errors.

    Raises:
        DlcvError: if the folder is missing, holds no masks, or holds two files of one id.
    """
    if not folder.is_dir():
        raise DlcvError(f"{folder}: no such folder ({role})")
    found = {p.name: p for p in unique_ids(folder, MASK_NAME).values()}
    if not found:
        raise DlcvError(f"{folder}: no masks (expected NNNN_mask.png) ({role})")
    return found


def pair_masks(predictions: Path, labels: Path) -> list[tuple[str, Path, Path]]:
    """Pair predicted and ground-truth masks by file name, as ``(name, prediction, ground truth)`` in name order.

    Raises:
        DlcvError: if either folder is unusable, or a mask has no partner (the error lists them).
    """
    pred, gt = mask_files(predictions, "predictions"), mask_files(labels, "labels")
    problem = mismatch_message(f"{predictions} against {labels}", [
        ("ground-truth mask(s) have no prediction", sorted(set(gt) - set(pred))),
        ("prediction(s) have no ground truth", sorted(set(pred) - set(gt)))])
    if problem:
        raise DlcvError(problem)
    return [(name, pred[name], gt[name]) for name in sorted(gt)]
