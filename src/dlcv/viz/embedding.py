"""Figures of embedding layouts: panels side by side, one large figure per panel, metric curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlcv.files import atomic_path


def class_palette(num_classes: int) -> np.ndarray:
    """Return (num_classes, 3) RGB colours a person can tell apart: tab10 or tab20, else the three tab20 maps."""
    import matplotlib

    if num_classes <= 10:
        colours = matplotlib.colormaps["tab10"].colors
    elif num_classes <= 20:
        colours = matplotlib.colormaps["tab20"].colors
    else:
        # Interleave the three 20-colour maps so that neighbouring class numbers differ most.
        maps = [matplotlib.colormaps[m].colors for m in ("tab20", "tab20b", "tab20c")]
        colours = [maps[i % 3][(i // 3 * 7) % 20] for i in range(60)]
        colours = list(dict.fromkeys(colours))  # keep order, drop repeats
    return np.array([colours[i % len(colours)] for i in range(num_classes)])


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, stem: Path, formats: tuple[str, ...] = ("png", "pdf")) -> list[Path]:
    """Write ``fig`` atomically as ``stem.png`` and a vector ``stem.pdf`` (``formats``); close it, return the paths."""
    written = []
    for fmt in formats:
        path = stem.with_suffix("." + fmt)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150 if fmt == "png" else None, bbox_inches="tight")
        written.append(path)
    _pyplot().close(fig)
    return written


def _scatter(ax, layout: np.ndarray, labels: np.ndarray, palette: np.ndarray, size: float) -> None:
    order = np.random.default_rng(0).permutation(len(labels))  # no class drawn wholly on top
    ax.scatter(layout[order, 0], layout[order, 1], c=palette[labels[order]], s=size, linewidths=0, alpha=0.85)
    ax.set(xticks=[], yticks=[])


def _legend(fig, classes: np.ndarray, palette: np.ndarray, anchor) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", linestyle="", markersize=6, color=palette[c],
                      label=str(int(c))) for c in classes]
    columns = 1 if len(classes) <= 20 else (2 if len(classes) <= 40 else 3)
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=anchor, ncol=columns, fontsize=7,
               title="class", title_fontsize=8, frameon=False, handletextpad=0.1, columnspacing=0.6)


def plot_panels(layouts: list[np.ndarray], labels: np.ndarray, titles: list[str], method: str, note: str,
                output_stem: Path) -> list[Path]:
    """Draw every snapshot's layout side by side with one shared class legend; write PNG and PDF.

    Args:
        layouts: (N, 2) layouts of the same N points, one per snapshot.
        labels: (N,) non-negative integer classes.
        titles: one per panel.
        method: the layout method's name (``PCA``, ``t-SNE``), for the title.
        note: how the layouts relate, for the title.
        output_stem: the output path without its suffix.

    Returns:
        The files written.
    """
    plt = _pyplot()
    classes = np.unique(labels)
    palette = class_palette(int(labels.max()) + 1)
    n = len(layouts)
    panels = 4.2 * n  # inches of panels; the legend takes 2.6 more
    width = panels + 2.6
    fig, axes = plt.subplots(1, n, figsize=(width, 4.6), squeeze=False)
    size = max(2.0, min(12.0, 9000 / len(labels)))
    for ax, layout, title in zip(axes[0], layouts, titles):
        _scatter(ax, layout, labels, palette, size)
        ax.set_title(title, fontsize=10)
    fig.suptitle(f"{method} of the second-last layer ({len(labels)} images). {note}", fontsize=10)
    fig.tight_layout(rect=(0, 0, panels / width, 0.95))
    _legend(fig, classes, palette, anchor=(panels / width, 0.5))
    return save_figure(fig, output_stem)


def plot_single(layout: np.ndarray, labels: np.ndarray, title: str, output_stem: Path) -> list[Path]:
    """Draw one snapshot's (N, 2) layout as a large figure with its class legend; return the files written."""
    plt = _pyplot()
    palette = class_palette(int(labels.max()) + 1)
    fig, ax = plt.subplots(figsize=(10.5, 8))
    _scatter(ax, layout, labels, palette, max(4.0, min(20.0, 20000 / len(labels))))
    ax.set_title(title, fontsize=12)
    fig.tight_layout(rect=(0, 0, 0.78, 1))
    _legend(fig, np.unique(labels), palette, anchor=(0.78, 0.5))
    return save_figure(fig, output_stem)


def plot_metric_curves(epochs: list[int], knn: list[float], silhouette: list[float], k: int,
                       output_stem: Path) -> list[Path]:
    """Draw the kNN accuracy and the silhouette over the snapshot epochs; return the files written."""
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    ax1.plot(epochs, knn, marker="o", color="tab:blue")
    ax1.set_title(f"{k}-NN accuracy (leave-one-out, cosine)", fontsize=10)
    ax1.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1))
    ax2.plot(epochs, silhouette, marker="o", color="tab:orange")
    ax2.set_title("silhouette (cosine)", fontsize=10)
    ax2.set(xlabel="epoch", ylabel="mean silhouette")
    for ax in (ax1, ax2):
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, output_stem)
