"""2-D layouts of a series of feature snapshots that a person can compare panel to panel.

PCA: each snapshot gets its own 2-component PCA, then is rotated (or reflected) onto the last
snapshot's layout by orthogonal Procrustes, so that a class sits in the same place in every panel.
t-SNE (openTSNE): the first snapshot starts from its PCA; every later one starts from the previous
layout with a shorter exaggeration phase, which both keeps the panels aligned and costs less than
a fresh run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def procrustes_rotation(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The orthogonal 2x2 matrix R minimising ||(source - mean) R - (target - mean)||."""
    a = source - source.mean(0)
    b = target - target.mean(0)
    u, _, vt = np.linalg.svd(a.T @ b)
    return u @ vt


def align_to(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``source`` centred and rotated/reflected onto ``target`` (distances unchanged)."""
    return (source - source.mean(0)) @ procrustes_rotation(source, target) + target.mean(0)


def pca_2d(features: np.ndarray) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return (x @ vt[:2].T).astype(np.float32)


def pca_series(feature_list: list[np.ndarray]) -> list[np.ndarray]:
    """Per-snapshot PCA, each rotated onto the last snapshot's layout."""
    layouts = [pca_2d(f) for f in feature_list]
    last = layouts[-1]
    return [align_to(lay, last) if i < len(layouts) - 1 else lay for i, lay in enumerate(layouts)]


@dataclass
class TSNEOptions:
    """t-SNE settings: openTSNE's gradient descent in phases, most of them on a coarser grid.

    Above 10,000 points openTSNE interpolates the repulsive forces on a grid (FFT); the grid's cost
    grows with the layout's spread, and twice as coarse a grid (``coarse_ints_in_interval=2``) makes
    an iteration about 4x cheaper. So the early-exaggeration and most of the normal phase run
    coarse, and a last ``polish_iterations`` run on openTSNE's default grid to settle the fine
    structure. A later snapshot starts from the previous layout (rescaled to openTSNE's initial
    spread) with a shorter exaggeration phase.
    """

    perplexity: float = 30.0
    pca_components: int = 50  # reduce the features first (0: no reduction)
    exaggeration_iter: int = 250  # first snapshot: early exaggeration (coarse grid)
    iterations: int = 250  # first snapshot: normal phase on the coarse grid
    continued_exaggeration_iter: int = 100  # later snapshots, started from the previous layout
    continued_iterations: int = 150
    polish_iterations: int = 250  # every snapshot: last iterations on the default grid
    coarse_ints_in_interval: int = 2
    learning_rate: str | float = "auto"
    threads: int = 0  # 0: every core
    seed: int = 0


def _reduce(features: np.ndarray, components: int, seed: int) -> np.ndarray:
    x = np.asarray(features, dtype=np.float32)
    if components and x.shape[1] > components:
        from sklearn.decomposition import PCA

        x = PCA(n_components=components, random_state=seed, svd_solver="randomized").fit_transform(x)
    return x.astype(np.float32)


def tsne_series(feature_list: list[np.ndarray], options: TSNEOptions | None = None) -> list[np.ndarray]:
    """t-SNE layouts of snapshots of the same points, each initialised from the one before."""
    import logging
    import os

    from openTSNE import TSNEEmbedding, affinity, initialization

    logging.getLogger("openTSNE").setLevel(logging.ERROR)  # its advice to rescale a continued layout
    opt = options or TSNEOptions()
    threads = opt.threads or os.cpu_count() or 1
    layouts: list[np.ndarray] = []
    previous = None
    for features in feature_list:
        x = _reduce(features, opt.pca_components, opt.seed)
        affinities = affinity.PerplexityBasedNN(x, perplexity=opt.perplexity, method="annoy", n_jobs=threads,
                                                random_state=opt.seed, verbose=False)
        first = previous is None
        init = initialization.pca(x, random_state=opt.seed) if first else initialization.rescale(previous)
        # "auto": Barnes-Hut below 10,000 points, FFT interpolation above (each is faster there).
        embedding = TSNEEmbedding(init, affinities, negative_gradient_method="auto", n_jobs=threads,
                                  learning_rate=opt.learning_rate, random_state=opt.seed, verbose=False)
        coarse = {"ints_in_interval": opt.coarse_ints_in_interval}
        exaggeration_iter = opt.exaggeration_iter if first else opt.continued_exaggeration_iter
        if exaggeration_iter:
            embedding = embedding.optimize(n_iter=exaggeration_iter, exaggeration=12, momentum=0.5, **coarse)
        normal_iter = opt.iterations if first else opt.continued_iterations
        if normal_iter:
            embedding = embedding.optimize(n_iter=normal_iter, momentum=0.8, **coarse)
        if opt.polish_iterations:
            embedding = embedding.optimize(n_iter=opt.polish_iterations, momentum=0.8, ints_in_interval=1)
        layout = np.asarray(embedding, dtype=np.float32)
        if previous is not None:
            layout = align_to(layout, previous)
        layouts.append(layout)
        previous = layout
    return layouts
