"""Figures of land-cover masks in the course's exact colours."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlcv.data.masks import CLASS_COLOURS, CLASS_NAMES, MaskCodec
from dlcv.viz.embedding import _pyplot, save_figure


def class_legend(fig) -> None:
    """Add a legend of the seven classes in their mask colours (edged, since Barren is white) to ``fig``."""
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=np.array(c) / 255, edgecolor="0.3", linewidth=0.6, label=f"{i} {n}")
               for i, (n, c) in enumerate(zip(CLASS_NAMES, CLASS_COLOURS))]
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=len(handles), fontsize=9,
               frameon=False, handlelength=1.2, columnspacing=1.0)


def plot_progress(rows: list[tuple[str, np.ndarray, list[np.ndarray], np.ndarray]], epochs: list[int],
                  stem: Path) -> list[Path]:
    """Draw predicted masks through training; write ``stem.png`` and ``stem.pdf``.

    One row per image; its columns: the image, each epoch's prediction, the ground truth.

    Args:
        rows: (id, image, predicted masks per epoch, ground truth) per image; the image (H, W, 3) uint8, the masks
            (H, W) class indices.
        epochs: the predictions' epochs, for the column titles.
        stem: the output path without its suffix.

    Returns:
        The files written.
    """
    plt = _pyplot()
    columns = 2 + len(epochs)
    side = 2.3
    fig, axes = plt.subplots(len(rows), columns, figsize=(side * columns, side * len(rows) + 0.7), squeeze=False)
    titles = ["image", *[f"epoch {e}" for e in epochs], "ground truth"]
    for r, (name, image, masks, truth) in enumerate(rows):
        panels = [image, *[MaskCodec.encode(m) for m in masks], MaskCodec.encode(truth)]
        for c, (ax, panel) in enumerate(zip(axes[r], panels)):
            ax.imshow(panel, interpolation="nearest")
            ax.set(xticks=[], yticks=[])
            if r == 0:
                ax.set_title(titles[c], fontsize=10)
            if c == 0:
                ax.set_ylabel(name, fontsize=10)
    fig.suptitle("Predicted masks through training (validation images)", fontsize=11)
    fig.tight_layout(rect=(0, 0.6 / (side * len(rows) + 0.7), 1, 0.97))
    class_legend(fig)
    return save_figure(fig, stem)


def overlay_image(image: np.ndarray, classes: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend the class colours over ``image`` and draw the class boundaries in black.

    Args:
        image: (H, W, 3) uint8.
        classes: (H, W) class indices.
        alpha: the colours' share in the blend.

    Returns:
        (H, W, 3) uint8.
    """
    colours = MaskCodec.encode(classes).astype(np.float32)
    blended = (1 - alpha) * image.astype(np.float32) + alpha * colours
    edge = np.zeros(classes.shape, dtype=bool)
    edge[:-1, :] |= classes[:-1, :] != classes[1:, :]
    edge[:, :-1] |= classes[:, :-1] != classes[:, 1:]
    blended[edge] = 0
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)
