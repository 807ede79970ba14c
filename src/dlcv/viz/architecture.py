"""A network as a block diagram: its main blocks in call order, each with its type and output shape."""

from __future__ import annotations

from pathlib import Path

from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from dlcv.viz.embedding import _pyplot, save_figure

# Box colours by what a block does, so that a reader sees the structure at a glance.
BLOCK_COLOURS = (
    (("linear", "fc", "classifier", "score"), "#fff2cc"),
    (("up", "decoder", "transpose", "aspp", "head"), "#d9ead3"),
    (("pool",), "#fce5cd"),
    (("norm", "bn"), "#ead1dc"),
    (("conv", "stem", "features", "encoder", "block", "group", "down", "backbone"), "#cfe2f3"),
)
DEFAULT_COLOUR = "#eeeeee"


def block_colour(name: str, type_name: str) -> str:
    """Pick a block's box colour by the words in its name and type."""
    text = f"{name} {type_name}".lower()
    return next((colour for words, colour in BLOCK_COLOURS if any(w in text for w in words)), DEFAULT_COLOUR)


def short_name(name: str, width: int) -> str:
    """Shorten a dotted module name to its last parts within ``width`` characters (``…backbone.layer2``)."""
    shown = name
    while len(shown) > width - 1 and "." in shown:
        shown = shown.split(".", 1)[1]
    if len(shown) > width - 1:
        shown = shown[-(width - 1):]
    return shown if shown == name else "…" + shown


def plot_block_diagram(blocks: list[tuple[str, str, str, int]], title: str, stem: Path,
                       max_per_row: int = 6) -> list[Path]:
    """Draw ``blocks`` as boxes joined by arrows, left to right in balanced rows; write ``stem.png``.

    Args:
        blocks: (name, type, output shape, parameter count) of each block, in call order.
        title: the figure's title.
        stem: the output path without its suffix.
        max_per_row: boxes per row at most.

    Returns:
        The files written.
    """
    plt = _pyplot()
    rows = -(-len(blocks) // max_per_row)
    per_row = -(-len(blocks) // rows)  # at most len(blocks)
    box_w, box_h, gap_x, gap_y = 2.1, 1.3, 0.45, 0.6
    width = per_row * box_w + (per_row - 1) * gap_x
    height = rows * box_h + (rows - 1) * gap_y
    fig, ax = plt.subplots(figsize=(max(6.0, width + 0.3), height + 0.8))
    centres = []
    for i, (name, type_name, shape, params) in enumerate(blocks):
        r, c = divmod(i, per_row)
        x = c * (box_w + gap_x)
        y = height - (r + 1) * box_h - r * gap_y
        ax.add_patch(FancyBboxPatch((x, y), box_w, box_h, boxstyle="round,pad=0.02,rounding_size=0.12",
                                    facecolor=block_colour(name, type_name), edgecolor="0.35", linewidth=1))
        shown_name = short_name(name, 18)
        shown_type = type_name if len(type_name) <= 20 else type_name[:19] + "…"
        ax.text(x + box_w / 2, y + box_h * 0.76, shown_name, ha="center", va="center", fontsize=11.5, weight="bold")
        ax.text(x + box_w / 2, y + box_h * 0.50, shown_type, ha="center", va="center", fontsize=10.5, color="0.25")
        ax.text(x + box_w / 2, y + box_h * 0.24, f"{shape}\n{params:,} params" if params else shape,
                ha="center", va="center", fontsize=9.5, color="0.15", family="monospace")
        centres.append((x, y))
    for (x0, y0), (x1, y1) in zip(centres, centres[1:]):
        if y0 == y1:  # same row: straight right
            start, end = (x0 + box_w, y0 + box_h / 2), (x1, y1 + box_h / 2)
        else:  # next row: from the bottom of the last box to the top of the first
            start, end = (x0 + box_w / 2, y0), (x1 + box_w / 2, y1 + box_h)
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=11, color="0.3", linewidth=1,
                                     connectionstyle="arc3,rad=0.0" if y0 == y1 else "angle3,angleA=-90,angleB=0"))
    ax.set(xlim=(-0.1, width + 0.1), ylim=(-0.1, height + 0.1), aspect="equal")
    ax.axis("off")
    ax.set_title(title, fontsize=12)
    fig.tight_layout()
    return save_figure(fig, stem, formats=("png",))
