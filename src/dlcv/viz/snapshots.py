"""Figures of embedding snapshots (``dlcv embed plot``, the report): PCA and t-SNE panels across epochs.

Each panel gives its snapshot's kNN accuracy and silhouette. Imports NumPy, scikit-learn, openTSNE and Matplotlib,
never torch.
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import numpy as np

from dlcv.data.features import FeatureSet, load_features, load_run_snapshots
from dlcv.errors import DlcvError
from dlcv.files import atomic_write
from dlcv.io import figures_folder
from dlcv.metrics.embedding import knn_accuracy, silhouette
from dlcv.viz.embedding import plot_metric_curves, plot_panels, plot_single
from dlcv.viz.layouts import TSNEOptions, has_spread, pca_series, tsne_perplexity, tsne_series

METHODS = ("pca", "tsne")
METHOD_NAMES = {"pca": "PCA", "tsne": "t-SNE"}


def parse_methods(spec: str) -> list[str]:
    """Parse a comma-separated list of layout methods (``pca``, ``tsne``).

    Raises:
        DlcvError: if the list is empty or names another method.
    """
    methods = [m.strip().lower() for m in spec.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise DlcvError(f"--method {spec!r}: choose from {', '.join(METHODS)} (comma-separated)")
    return methods


def load_sources(sources: list[str | os.PathLike], training_subset: bool) -> tuple[list[FeatureSet], Path]:
    """Load the feature sets to plot and choose the default output folder.

    Args:
        sources: one run folder (its snapshots), or feature files (``.npz``).
        training_subset: from a run folder, load the training subset's snapshots, not the validation images'.

    Returns:
        ``(feature sets, default output folder)``: the run's ``figures/``, or ``figures/`` beside the first file.

    Raises:
        DlcvError: if a folder is given among others, or a source cannot be read.
    """
    paths = [Path(s) for s in sources]
    if len(paths) == 1 and paths[0].is_dir():
        return load_run_snapshots(paths[0], training_subset), paths[0] / "figures"
    for path in paths:
        if path.is_dir():
            raise DlcvError(f"{path}: give one run folder, or feature files (.npz), not both")
    return [load_features(p) for p in paths], paths[0].parent / "figures"


def same_points(sets: list[FeatureSet]) -> bool:
    """Whether every set holds the same points: equal labels and, where both sets have them, equal file names."""
    first = sets[0]
    return all(np.array_equal(s.labels, first.labels)
               and (s.filenames is None or first.filenames is None or s.filenames == first.filenames)
               for s in sets[1:])


def layout_note(fs: FeatureSet, method: str, perplexity: float) -> str:
    """Say in a few words what a ``method`` layout of ``fs`` cannot show ("" when it shows everything)."""
    points = len(fs.labels)
    if not has_spread(fs.features):
        return f"all {points} points equal: drawn at the origin"
    used = tsne_perplexity(perplexity, points)
    if method == "tsne" and used != perplexity:
        return f"t-SNE perplexity {perplexity:g} lowered to {used:.3g} for {points} points"
    return ""


def layout_series(sets: list[FeatureSet], chosen: list[str], aligned: bool, perplexity: float) -> tuple:
    """Lay out every snapshot by each chosen method.

    Args:
        sets: the feature sets.
        chosen: the methods (``pca``, ``tsne``).
        aligned: the sets hold the same points, so each layout follows the one before.
        perplexity: t-SNE's perplexity.

    Returns:
        ``(layouts, notes, seconds)`` by method: every snapshot's (N, 2) layout, the figure's note on how they
        relate, and the seconds they took.

    Raises:
        DlcvError: naming a snapshot whose layout is not all finite numbers.
    """
    seconds, layouts, notes, features = {}, {}, {}, [fs.features for fs in sets]
    for method in chosen:
        start = time.perf_counter()
        if method == "pca":
            layouts[method] = pca_series(features) if aligned else [pca_series([f])[0] for f in features]
            notes[method] = ("Each panel's own PCA, rotated to match the last (orthogonal Procrustes)."
                             if aligned and len(sets) > 1 else "Each panel's own PCA.")
        else:
            options = TSNEOptions(perplexity=perplexity)
            layouts[method] = (tsne_series(features, options) if aligned
                               else [tsne_series([f], options)[0] for f in features])
            notes[method] = ("Each layout starts from the previous one and is rotated to match it."
                             if aligned and len(sets) > 1 else "Independent layouts.")
        for fs, layout in zip(sets, layouts[method]):
            if not np.isfinite(layout).all():
                raise DlcvError(f"{fs.source}: its {METHOD_NAMES[method]} layout came out as NaN or infinite "
                                "values; no figure written")
        seconds[method] = time.perf_counter() - start
    return layouts, notes, seconds


def plot_snapshots(sources: list[str | os.PathLike], methods: str = "pca,tsne", output: str | os.PathLike | None = None,
         k: int = 10, perplexity: float = 30.0, training_subset: bool = False) -> dict:
    """Write the snapshots' figures: panels, single figures, the metrics CSV and its curves.

    Args:
        sources: one run folder, or feature files (``.npz``).
        methods: comma-separated layout methods (``pca``, ``tsne``).
        output: the figures folder; None: the sources' default (``load_sources``).
        k: neighbours of the kNN accuracy.
        perplexity: t-SNE's perplexity.
        training_subset: from a run folder, plot the training subset's snapshots.

    Returns:
        ``rows`` (each snapshot's metrics), ``written`` (the files), ``output``, ``seconds`` (per method),
        ``aligned``, and ``notes``: what a layout could not show (identical points, a perplexity lowered), also
        said in the figures.

    Raises:
        DlcvError: for an unknown method, a source that cannot be read, an output folder holding others' files, or
            a layout that is not finite.
    """
    chosen = parse_methods(methods)
    sets, default_output = load_sources(sources, training_subset)
    output = figures_folder(output if output is not None else default_output)
    aligned = same_points(sets)
    rows = [{"snapshot": fs.title(), "epoch": "" if fs.epoch is None else fs.epoch, "points": len(fs.labels),
             "dims": fs.features.shape[1], "knn_acc": knn_accuracy(fs.features, fs.labels, k=k),
             "silhouette": silhouette(fs.features, fs.labels)} for fs in sets]
    # every layout before any file: a failure leaves the figures folder as it was
    layouts, notes, seconds = layout_series(sets, chosen, aligned, perplexity)
    with atomic_write(output / "embedding_metrics.csv", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    written = [output / "embedding_metrics.csv"]
    epochs = [fs.epoch for fs in sets]
    if len(sets) > 1 and all(e is not None for e in epochs):
        written += plot_metric_curves(epochs, [r["knn_acc"] for r in rows], [r["silhouette"] for r in rows], k,
                                      output / "embedding_metrics")
    said = {m: [layout_note(fs, m, perplexity) for fs in sets] for m in chosen}
    for method in chosen:
        name = METHOD_NAMES[method]
        titles = [f"{fs.title()}: {k}-NN acc {r['knn_acc']:.3f}, silhouette {r['silhouette']:.3f}"
                  + (f"\n({note})" if note else "") for fs, r, note in zip(sets, rows, said[method])]
        if aligned:
            written += plot_panels(layouts[method], sets[0].labels, titles, name, notes[method],
                                   output / f"{method}_panels")
        for fs, layout, title in zip(sets, layouts[method], titles):
            tag = f"epoch_{fs.epoch:03d}" if fs.epoch is not None else Path(fs.source).stem
            written += plot_single(layout, fs.labels, f"{name}, {title}", output / f"{method}_{tag}")
    lines = [f"{fs.title()}: {note}" for m in chosen for fs, note in zip(sets, said[m]) if note]
    return {"rows": rows, "written": written, "output": output, "seconds": seconds, "aligned": aligned,
            "notes": list(dict.fromkeys(lines))}
