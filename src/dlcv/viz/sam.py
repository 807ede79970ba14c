"""Pictures of SAM's masks: every mask in its own colour with its outline, over the image."""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np

from dlcv.viz.embedding import _pyplot, save_figure


def distinct_colours(count: int) -> np.ndarray:
    """Return (count, 3) uint8 RGB colours spread around the hue circle by the golden angle (neighbours differ)."""
    hues = (np.arange(count) * 0.618033988749895) % 1.0
    values = (0.95, 0.75)
    return np.array([[round(255 * c) for c in colorsys.hsv_to_rgb(h, 0.85, values[i % 2])]
                     for i, h in enumerate(hues)], dtype=np.uint8).reshape(count, 3)


def mask_outline(mask: np.ndarray) -> np.ndarray:
    """Return the pixels of boolean (H, W) ``mask`` with a 4-neighbour outside it (or on the image border)."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def masks_overlay(image: np.ndarray, masks: list[np.ndarray], alpha: float = 0.5) -> np.ndarray:
    """Blend each boolean mask over ``image`` in its own colour, largest first (small on top), outlined in white.

    Args:
        image: (H, W, 3) uint8.
        masks: (H, W) boolean masks.
        alpha: each colour's share in the blend.

    Returns:
        (H, W, 3) uint8.
    """
    out = image.astype(np.float32)
    order = sorted(range(len(masks)), key=lambda i: -int(masks[i].sum()))
    colours = distinct_colours(len(masks)).astype(np.float32)
    for rank, i in enumerate(order):
        out[masks[i]] = (1 - alpha) * out[masks[i]] + alpha * colours[rank]
    for i in order:
        out[mask_outline(masks[i])] = 255.0
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def plot_sam_masks(rows: list[tuple[str, np.ndarray, np.ndarray, int]], stem: Path) -> list[Path]:
    """Draw each image above its SAM-mask overlay; write ``stem.png`` and ``stem.pdf``.

    Args:
        rows: (id, image, overlay, mask count), one per column; image and overlay (H, W, 3) uint8.
        stem: the output path without its suffix.

    Returns:
        The files written.
    """
    plt = _pyplot()
    side = 3.0
    fig, axes = plt.subplots(2, len(rows), figsize=(side * len(rows), 2 * side + 0.3), squeeze=False)
    for c, (name, image, overlay, count) in enumerate(rows):
        label = f"{name}: {count} SAM mask{'s' if count != 1 else ''}"
        for r, (panel, title) in enumerate(((image, name), (overlay, label))):
            ax = axes[r][c]
            ax.imshow(panel, interpolation="nearest")
            ax.set(xticks=[], yticks=[])
            ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, stem)
