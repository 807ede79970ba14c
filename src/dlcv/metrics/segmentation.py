"""mIoU exactly as the course grades it, from one 7x7 confusion matrix pooled over all pixels.

The mean IoU is over classes 0..5; Unknown (6) is not averaged, yet a prediction of ``i`` on an Unknown pixel is a
false positive of ``i``; a class absent from both gives 0/0 = nan, as the course's script prints.
"""

from __future__ import annotations

import numpy as np

from dlcv.data.masks import CODE_TO_CLASS, NUM_CLASSES, SCORED_CLASSES, UNKNOWN, colour_codes
from dlcv.metrics.classification import confusion_matrix


def confusion(gt: np.ndarray, pred: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Return the (C, C) counts of two class-index masks, rows the ground truth, columns the prediction."""
    return confusion_matrix(gt.ravel(), pred.ravel(), num_classes)


def code_confusion(gt_rgb: np.ndarray, pred_rgb: np.ndarray) -> np.ndarray:
    """Return the (8, 8) counts of two (H, W, 3) uint8 RGB masks' colour codes, rows the ground truth."""
    key = (colour_codes(gt_rgb) << 3) | colour_codes(pred_rgb)
    return np.bincount(key.ravel(), minlength=64).reshape(8, 8)


def codes_to_classes(codes: np.ndarray) -> np.ndarray:
    """Fold an (8, 8) code confusion matrix into the (7, 7) class one; colours of no class count as Unknown."""
    target = np.where(CODE_TO_CLASS < NUM_CLASSES, CODE_TO_CLASS, UNKNOWN).astype(np.int64)
    matrix = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(matrix, np.ix_(target, target), codes)
    return matrix


def class_iou(matrix: np.ndarray, classes: int = SCORED_CLASSES) -> np.ndarray:
    """Return the IoU of each of the first ``classes`` classes of a confusion matrix.

    Args:
        matrix: (C, C) counts, rows the ground truth.
        classes: how many classes, from 0, are scored.

    Returns:
        (classes,) float64 IoUs; nan where a class is absent from both ground truth and prediction.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(matrix)[:classes]
    union = matrix.sum(0)[:classes] + matrix.sum(1)[:classes] - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / union


def mean_iou(matrix: np.ndarray, classes: int = SCORED_CLASSES) -> float:
    """Return the course's mIoU: the plain mean of the per-class IoUs (nan if any class is 0/0)."""
    return float(np.mean(class_iou(matrix, classes)))
