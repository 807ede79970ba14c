"""How well a feature space separates classes: leave-one-out kNN accuracy and the silhouette score.

Both use cosine geometry in the original feature space (not a 2-D layout), so "the clusters got
better" is a measured statement rather than a reading of a picture.
"""

from __future__ import annotations

import numpy as np


def _unit_rows(features: np.ndarray) -> np.ndarray:
    x = np.asarray(features, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_accuracy(features: np.ndarray, labels: np.ndarray, k: int = 10, chunk: int = 2048) -> float:
    """Leave-one-out k-nearest-neighbour accuracy with cosine similarity.

    Each point is classified by the majority class among its ``k`` most similar other points; a
    tie goes to the class of the nearer neighbours (votes are weighted by rank very slightly).
    """
    x = _unit_rows(features)
    labels = np.asarray(labels)
    n = len(x)
    k = min(k, n - 1)
    classes, y = np.unique(labels, return_inverse=True)
    rank_weight = 1.0 + 1e-3 * (k - np.arange(k)) / k  # nearer neighbour breaks ties
    correct = 0
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        sim = x[start:stop] @ x.T
        sim[np.arange(stop - start), np.arange(start, stop)] = -np.inf  # leave one out
        nearest = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sim, nearest, axis=1), axis=1)
        nearest = np.take_along_axis(nearest, order, axis=1)
        votes = np.zeros((stop - start, len(classes)))
        np.add.at(votes, (np.arange(stop - start)[:, None], y[nearest]), rank_weight[None, :])
        correct += int((votes.argmax(1) == y[start:stop]).sum())
    return correct / n


def silhouette(features: np.ndarray, labels: np.ndarray, max_points: int = 10_000, seed: int = 0) -> float:
    """Mean silhouette coefficient (cosine distance); above ``max_points`` a fixed random sample."""
    from sklearn.metrics import silhouette_score

    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return float("nan")
    sample = max_points if len(labels) > max_points else None
    return float(silhouette_score(np.asarray(features, dtype=np.float32), labels, metric="cosine",
                                  sample_size=sample, random_state=seed))
