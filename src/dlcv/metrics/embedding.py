"""How well a feature space separates classes: leave-one-out kNN accuracy and the silhouette score.

Both are cosine, in the original feature space rather than a 2-D layout, so that "the clusters got better" is
measured, not read off a picture.
"""

from __future__ import annotations

import numpy as np


def _unit_rows(features: np.ndarray) -> np.ndarray:
    x = np.asarray(features, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _vote(sim: np.ndarray, bank_y: np.ndarray, k: int, num_classes: int) -> np.ndarray:
    """Majority class among each row's ``k`` most similar bank points; ties go to the nearer (rank-weighted votes)."""
    nearest = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sim, nearest, axis=1), axis=1)
    nearest = np.take_along_axis(nearest, order, axis=1)
    rank_weight = 1.0 + 1e-3 * (k - np.arange(k)) / k
    votes = np.zeros((len(sim), num_classes))
    np.add.at(votes, (np.arange(len(sim))[:, None], bank_y[nearest]), rank_weight[None, :])
    return votes.argmax(1)


def knn_accuracy(features: np.ndarray, labels: np.ndarray, k: int = 10, chunk: int = 2048) -> float:
    """Leave-one-out k-nearest-neighbour accuracy by cosine similarity: each point against all the others.

    Args:
        features: (N, D) features.
        labels: (N,) labels.
        k: neighbours that vote (at most N - 1 are used).
        chunk: points per block of the similarity matrix, which bounds memory.

    Returns:
        The share of points whose neighbours' vote gives their own label.
    """
    k = min(k, len(features) - 1)
    return knn_accuracy_against(features, labels, features, labels, k, chunk, leave_one_out=True)


def knn_accuracy_against(bank: np.ndarray, bank_labels: np.ndarray, query: np.ndarray, query_labels: np.ndarray,
                         k: int = 20, chunk: int = 2048, leave_one_out: bool = False) -> float:
    """Classify ``query`` points by their ``k`` most cosine-similar ``bank`` points; return the accuracy.

    Votes are weighted slightly by rank, so that a tie goes to the nearer neighbours.

    Args:
        bank: (M, D) features of the labelled points.
        bank_labels: (M,) their labels.
        query: (N, D) features to classify.
        query_labels: (N,) their true labels.
        k: neighbours that vote (at most M are used).
        chunk: queries per block of the similarity matrix, which bounds memory.
        leave_one_out: query and bank are the same points, and none is its own neighbour.

    Returns:
        The share of queries classified right (0 when there are none).
    """
    b, q = _unit_rows(bank), _unit_rows(query)
    classes, y = np.unique(np.asarray(bank_labels), return_inverse=True)
    k = min(k, len(b))
    correct = 0
    for start in range(0, len(q), chunk):
        sim = q[start : start + chunk] @ b.T
        if leave_one_out:
            sim[np.arange(len(sim)), np.arange(start, start + len(sim))] = -np.inf
        predicted = classes[_vote(sim, y, k, len(classes))]
        correct += int((predicted == np.asarray(query_labels)[start : start + chunk]).sum())
    return correct / max(1, len(q))


def silhouette(features: np.ndarray, labels: np.ndarray, max_points: int = 10_000, seed: int = 0) -> float:
    """Mean silhouette coefficient with cosine distance, through scikit-learn's ``silhouette_score``.

    Args:
        features: (N, D) features.
        labels: (N,) class of each row.
        max_points: above this many rows, the score of a random sample of this many (scikit-learn's ``sample_size``).
        seed: the sample's random state.

    Returns:
        The score in [-1, 1]; NaN with fewer than two classes, 0 when every class has one point (each scores 0).
    """
    from sklearn.metrics import silhouette_score

    labels = np.asarray(labels)
    classes = len(np.unique(labels))
    if classes < 2:
        return float("nan")
    if classes == len(labels):  # scikit-learn refuses it; every point alone in its class scores 0
        return 0.0
    sample = max_points if len(labels) > max_points else None
    return float(silhouette_score(np.asarray(features, dtype=np.float32), labels, metric="cosine", sample_size=sample,
                                  random_state=seed))
