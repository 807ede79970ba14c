"""mIoU exactly as the course grades it, from one 7x7 confusion matrix pooled over all pixels: the mean IoU of classes
0..5; Unknown (6) is not averaged, yet a prediction of ``i`` on an Unknown pixel is a false positive of ``i``; a class
absent from both gives 0/0 = nan, as the course's script prints."""

from __future__ import annotations

import numpy as np

from dlcv.data.masks import CODE_TO_CLASS, NUM_CLASSES, SCORED_CLASSES, UNKNOWN, colour_codes
from dlcv.metrics.classification import confusion_matrix


def confusion(gt: np.ndarray, pred: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """(num_classes, num_classes) counts, rows = ground truth, columns = prediction."""
    return confusion_matrix(gt.ravel(), pred.ravel(), num_classes)


def code_confusion(gt_rgb: np.ndarray, pred_rgb: np.ndarray) -> np.ndarray:
    """(8, 8) counts of thresholded colour codes (rows = ground truth) of two RGB masks, in one ``bincount``."""
    key = (colour_codes(gt_rgb) << 3) | colour_codes(pred_rgb)
    return np.bincount(key.ravel(), minlength=64).reshape(8, 8)


def codes_to_classes(codes: np.ndarray) -> np.ndarray:
    """An (8, 8) code confusion matrix as the (7, 7) class one; colours in no class count as Unknown."""
    target = np.where(CODE_TO_CLASS < NUM_CLASSES, CODE_TO_CLASS, UNKNOWN).astype(np.int64)
    matrix = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(matrix, np.ix_(target, target), codes)
    return matrix


def class_iou(matrix: np.ndarray, classes: int = SCORED_CLASSES) -> np.ndarray:
    """IoU of each of the first ``classes`` classes (nan where a class is absent from both)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(matrix)[:classes]
    union = matrix.sum(0)[:classes] + matrix.sum(1)[:classes] - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / union


def mean_iou(matrix: np.ndarray, classes: int = SCORED_CLASSES) -> float:
    """The course's mIoU: the plain mean of the per-class IoUs (nan if any class is 0/0)."""
    return float(np.mean(class_iou(matrix, classes)))
