"""Accuracy, per-class accuracy and the confusion matrix of label arrays."""

from __future__ import annotations

import numpy as np


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """``cm[i, j]`` = number of images of class ``i`` predicted as ``j``."""
    index = truth.astype(np.int64, copy=False) * num_classes + predicted.astype(np.int64, copy=False)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean(truth == predicted)) if len(truth) else float("nan")


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall of every class (nan for a class with no images)."""
    totals = cm.sum(axis=1)
    return np.where(totals > 0, np.diag(cm) / np.maximum(totals, 1), np.nan)
