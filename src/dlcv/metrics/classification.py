"""Accuracy, per-class accuracy and the confusion matrix of label arrays."""

from __future__ import annotations

import numpy as np


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Count each (true, predicted) pair of class indices.

    Args:
        truth: (N,) true class indices, each in 0..num_classes - 1.
        predicted: (N,) predicted class indices, each in 0..num_classes - 1.
        num_classes: the number of classes C.

    Returns:
        (C, C) int64 counts: ``cm[i, j]`` items (images, pixels) of class ``i`` predicted as ``j``.
    """
    index = truth.astype(np.int64, copy=False) * num_classes + predicted.astype(np.int64, copy=False)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Return the share of equal labels in two (N,) arrays (nan when they are empty)."""
    return float(np.mean(truth == predicted)) if len(truth) else float("nan")


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Return each class's recall from a (C, C) confusion matrix (nan for a class with no images)."""
    totals = cm.sum(axis=1)
    return np.where(totals > 0, np.diag(cm) / np.maximum(totals, 1), np.nan)
