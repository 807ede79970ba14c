"""2-D layouts of a series of feature snapshots that a person can compare panel to panel.

PCA: each snapshot's own, turned onto the last one's by orthogonal Procrustes, so a class keeps its place. t-SNE
(openTSNE): the first starts from its PCA, each later one from the previous layout with a shorter exaggeration phase.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlcv.runtime import usable_cpus


def align_to(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Turn (N, 2) ``source`` onto ``target`` by orthogonal Procrustes: rotated or reflected, distances unchanged.

    The result is ``(source - mean) R + target's mean``, R the orthogonal 2x2 matrix minimising
    ||(source - mean) R - (target - mean)||.
    """
    a = source - source.mean(0)
    u, _, vt = np.linalg.svd(a.T @ (target - target.mean(0)))
    return a @ (u @ vt) + target.mean(0)


def has_spread(features: np.ndarray) -> bool:
    """Whether the points differ at all: identical points have no layout but one point (every layout's origin)."""
    return bool(np.ptp(features, axis=0).max() > 0)


def tsne_perplexity(perplexity: float, points: int) -> float:
    """Return the perplexity openTSNE uses for ``points`` points.

    That is the one asked, else a third of the ``points - 1`` neighbours each point has (openTSNE's rule when the
    perplexity asks for more).
    """
    neighbours = min(points - 1, int(3 * perplexity))
    return perplexity if perplexity <= neighbours else neighbours / 3


def pca_2d(features: np.ndarray) -> np.ndarray:
    """Project (N, D) features onto their first two principal components: (N, 2) float32, zeros without spread."""
    if not has_spread(features):
        return np.zeros((len(features), 2), dtype=np.float32)
    x = np.asarray(features, dtype=np.float64)
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return (x @ vt[:2].T).astype(np.float32)


def pca_series(feature_list: list[np.ndarray]) -> list[np.ndarray]:
    """Per-snapshot PCA, each rotated onto the last snapshot's layout."""
    *earlier, last = [pca_2d(f) for f in feature_list]
    return [*(align_to(layout, last) for layout in earlier), last]


@dataclass(frozen=True)
class Phases:
    """Iterations of one t-SNE run: early exaggeration, then the normal phase on a coarse grid and a fine one.

    The fine grid is openTSNE's default; the grid exists only for FFT gradients, so Barnes-Hut ignores it.
    """

    exaggeration: int
    coarse: int
    fine: int


@dataclass
class TSNEOptions:
    """t-SNE settings for openTSNE: perplexity, gradient method, and each run's ``Phases``.

    A later snapshot starts from the previous layout (rescaled to openTSNE's initial spread), so its phases are
    shorter (no exaggeration with Barnes-Hut).
    """

    perplexity: float = 30.0
    pca_components: int = 50  # reduce the features first (0: no reduction)
    fft_from: int = 10_000  # FFT-interpolated gradients from this many points, Barnes-Hut below
    fft_first: Phases = Phases(exaggeration=250, coarse=250, fine=250)
    fft_continued: Phases = Phases(exaggeration=100, coarse=150, fine=250)
    bh_first: Phases = Phases(exaggeration=250, coarse=0, fine=400)
    bh_continued: Phases = Phases(exaggeration=0, coarse=0, fine=200)
    coarse_ints_in_interval: int = 2  # the coarse phase's FFT grid: cheaper than openTSNE's default (1)
    theta: float = 0.5  # Barnes-Hut's accuracy/speed trade-off (openTSNE's default 0.5)
    exact_neighbours_below: int = 5000  # exact nearest neighbours up to this many points, Annoy above
    learning_rate: str | float = "auto"
    threads: int = 0  # 0: every core
    seed: int = 0


def _reduce(features: np.ndarray, components: int) -> np.ndarray:
    """The first ``components`` principal components (eigenvectors of the D x D covariance)."""
    x = np.asarray(features, dtype=np.float32)
    if not components or x.shape[1] <= components:
        return x
    x = x - x.mean(0)
    cov = (x.T @ x).astype(np.float64)
    _, vectors = np.linalg.eigh(cov)  # ascending eigenvalues
    top = vectors[:, ::-1][:, :components].astype(np.float32)
    return np.ascontiguousarray(x @ top)


def tsne_series(feature_list: list[np.ndarray], options: TSNEOptions | None = None) -> list[np.ndarray]:
    """Lay out snapshots of the same points by t-SNE (openTSNE), each from the one before, turned onto it.

    Identical points get one point at the origin (no t-SNE), and the snapshot after them starts afresh from PCA.

    Args:
        feature_list: (N, D) features of each snapshot, the same N points in the same order.
        options: the t-SNE settings; None: ``TSNEOptions()``.

    Returns:
        (N, 2) float32 layouts, one per snapshot.
    """
    import logging

    from openTSNE import TSNEEmbedding, affinity, initialization

    logging.getLogger("openTSNE").setLevel(logging.ERROR)  # its advice to rescale a continued layout
    opt = options or TSNEOptions()
    threads = opt.threads or usable_cpus()
    layouts: list[np.ndarray] = []
    previous = None  # the layout the next snapshot starts from
    for features in feature_list:
        if not has_spread(features):
            layouts.append(np.zeros((len(features), 2), dtype=np.float32))
            previous = None
            continue
        x = _reduce(features, opt.pca_components)
        # Exact neighbours cost O(N^2) but beat Annoy's index build below a few thousand points.
        method = "exact" if len(x) <= opt.exact_neighbours_below else "annoy"
        affinities = affinity.PerplexityBasedNN(x, perplexity=opt.perplexity, method=method, n_jobs=threads,
                                                random_state=opt.seed, verbose=False)
        first = previous is None
        init = initialization.pca(x, random_state=opt.seed) if first else initialization.rescale(previous)
        fft = len(x) >= opt.fft_from
        if fft:
            phases = opt.fft_first if first else opt.fft_continued
        else:
            phases = opt.bh_first if first else opt.bh_continued
        embedding = TSNEEmbedding(init, affinities, negative_gradient_method="fft" if fft else "bh", n_jobs=threads,
                                  learning_rate=opt.learning_rate, random_state=opt.seed, verbose=False)
        coarse = {"ints_in_interval": opt.coarse_ints_in_interval, "theta": opt.theta}
        if phases.exaggeration:
            embedding = embedding.optimize(n_iter=phases.exaggeration, exaggeration=12, momentum=0.5, **coarse)
        if phases.coarse:
            embedding = embedding.optimize(n_iter=phases.coarse, momentum=0.8, **coarse)
        if phases.fine:
            embedding = embedding.optimize(n_iter=phases.fine, momentum=0.8, ints_in_interval=1, theta=opt.theta)
        layout = np.asarray(embedding, dtype=np.float32)
        previous = layout if first else align_to(layout, previous)
        layouts.append(previous)
    return layouts
