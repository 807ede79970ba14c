"""Training curves from a run's ``metrics.csv``: one panel per quantity, train and validation together."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlcv.viz.embedding import _pyplot, save_figure

SPLIT_STYLES = {"train": {"color": "tab:blue", "linestyle": "-"}, "val": {"color": "tab:orange", "linestyle": "-"}}


@dataclass(frozen=True)
class CurvePanel:
    """One panel: ``columns`` of metrics.csv drawn against the epoch, with their legend labels."""

    title: str
    ylabel: str
    columns: tuple[tuple[str, str], ...]  # (column, label)
    unit_range: bool = False  # accuracies and IoUs: the y axis spans 0..1
    colours: tuple = ()  # one colour per column (e.g. the mask colours); default: train blue, val orange
    dark: bool = False  # a dark background, where the colours include white and yellow


def _series(rows: list[dict], column: str) -> np.ndarray:
    points = [(r["epoch"], r[column]) for r in rows if r.get(column) is not None]
    return np.array(points, dtype=float).reshape(-1, 2).T  # rows: the epochs, the values (none: two empty rows)


def available_panels(rows: list[dict], panels: list[CurvePanel]) -> list[CurvePanel]:
    """Return the panels with at least one of their columns present in ``rows``."""
    present = {k for r in rows for k, v in r.items() if v is not None}
    return [p for p in panels if any(c in present for c, _ in p.columns)]


def plot_curves(rows: list[dict], panels: list[CurvePanel], title: str, stem: Path,
                best_epoch: int | None = None) -> list[Path]:
    """Draw ``panels`` side by side from the rows of metrics.csv; write ``stem.png``.

    Args:
        rows: one dict per epoch: ``epoch`` and each column's number, or None.
        panels: the panels, left to right.
        title: the figure's title.
        stem: the output path without its suffix.
        best_epoch: marked by a dotted line in every panel; None: no line.

    Returns:
        The files written.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel.dark:
            ax.set_facecolor("#3a3a3a")
        for i, (column, label) in enumerate(panel.columns):
            epochs, values = _series(rows, column)
            if not len(epochs):
                continue
            style = ({"color": panel.colours[i], "linestyle": "-"} if panel.colours
                     else SPLIT_STYLES["val" if column.startswith("val") else "train"])
            ax.plot(epochs, values, marker="o" if len(epochs) <= 30 else None, markersize=3, linewidth=1.6,
                    label=label, **style)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="0.6" if panel.dark else "0.45", linestyle=":", linewidth=1,
                       label=f"best epoch ({best_epoch})")
        if panel.unit_range:
            ax.set_ylim(0, 1)
        ax.set_title(panel.title, fontsize=10)
        ax.set(xlabel="epoch", ylabel=panel.ylabel)
        ax.grid(alpha=0.25)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if len(panel.columns) > 3:  # many series: the legend goes under the panel, off the lines
            dark = ({"facecolor": "#3a3a3a", "labelcolor": "white", "framealpha": 1} if panel.dark
                    else {"frameon": False})
            ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=3, **dark)
        else:
            ax.legend(fontsize=8, loc="best", framealpha=0.85)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save_figure(fig, stem, formats=("png",))


def monitor_label(folder: Path) -> str:
    """Name the kNN monitor's query set in ``folder``, for the curve's axis."""
    return "Office-Home val" if (folder / "train.csv").is_file() else f"{folder.name}/val_50"


def plot_knn_curve(values: list[float], stem: Path, title: str, at_init: float | None = None,
                   queries: str = "Office-Home val") -> Path:
    """Draw the kNN monitor's accuracy over the pre-training epochs; write ``stem.png`` and ``stem.pdf``.

    Args:
        values: the accuracy after each epoch, from epoch 1.
        stem: the output path without its suffix.
        title: the run's name, which starts the title.
        at_init: the untrained trunk's accuracy, drawn at epoch 0; None: not drawn.
        queries: the query set's name, for the y axis.

    Returns:
        The PNG's path.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    epochs, points = list(range(1, len(values) + 1)), list(values)
    if at_init is not None:
        epochs, points = [0, *epochs], [at_init, *points]
    ax.plot(epochs, points, marker="o", ms=3)
    ax.set(xlabel="pre-training epoch", ylabel=f"kNN accuracy ({queries})", title=f"{title}: kNN monitor")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, stem)[0]
