"""The confusion-matrix figure: rows normalised to recall, so every class reads on one scale."""

from __future__ import annotations

import os

import numpy as np

from dlcv.files import atomic_path
from dlcv.viz.embedding import _pyplot


def plot_confusion(cm: np.ndarray, path: str | os.PathLike, title: str = "Confusion matrix") -> None:
    """Draw confusion matrix ``cm`` with row-normalised colours (recall) and write it to ``path``.

    Args:
        cm: (C, C) integer counts, true classes in rows.
        path: the image file; its suffix gives the format (none: PNG).
        title: the title's start; the accuracy follows it.
    """
    plt = _pyplot()
    n = cm.shape[0]
    names = [str(i) for i in range(n)]
    totals = cm.sum(axis=1, keepdims=True)
    recall = np.divide(cm, totals, out=np.zeros(cm.shape, dtype=float), where=totals > 0)
    size = min(14.0, max(5.0, 0.22 * n + 3))
    fig, ax = plt.subplots(figsize=(size + 1.2, size), dpi=120)
    im = ax.imshow(recall, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    fontsize = 9 if n <= 20 else 6
    ax.set_xticks(range(n), names, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(n), names, fontsize=fontsize)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    overall = np.trace(cm) / max(1, cm.sum())
    ax.set_title(f"{title} (accuracy {overall:.4f}, rows sum to 1)")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                            color="black" if recall[i, j] > 0.6 else "white")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    fig.tight_layout()
    suffix = os.path.splitext(str(path))[1] or ".png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=suffix.lstrip("."))
    plt.close(fig)
