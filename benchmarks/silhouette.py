"""dlcv's silhouette score against scikit-learn's ``silhouette_score(metric="cosine")`` at the sizes the report
scores (the p1 validation set's 2,500 features; 10,000, dlcv's sampling cap): the value and the seconds of each.

Usage: python benchmarks/silhouette.py [--repeats 3]
"""

from __future__ import annotations

import argparse

import numpy as np
from machine import best_of, header
from sklearn.metrics import silhouette_score

from dlcv.metrics.embedding import silhouette


def main() -> None:
    header()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for n, dim, classes in ((2500, 256, 50), (2500, 1280, 50), (10_000, 256, 50)):
        labels = rng.integers(0, classes, n)
        centres = rng.normal(size=(classes, dim)).astype(np.float32)
        features = centres[labels] + 2.0 * rng.normal(size=(n, dim)).astype(np.float32)
        ours, ours_s = best_of(args.repeats, lambda: silhouette(features, labels))
        theirs, theirs_s = best_of(args.repeats, lambda: float(silhouette_score(features, labels, metric="cosine")))
        print(f"n={n} dim={dim}: dlcv {ours:.6f} in {ours_s:.3f} s; scikit-learn {theirs:.6f} in {theirs_s:.3f} s "
              f"(difference {abs(ours - theirs):.1e}; scikit-learn takes {theirs_s / ours_s:.1f}x the time)")


if __name__ == "__main__":
    main()
