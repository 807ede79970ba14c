"""Embedding benchmarks (issue 4), side by side in one run:

  1. t-SNE of one snapshot (e.g. 20,000 x 512): scikit-learn's TSNE (defaults, PCA init) against
     dlcv's (openTSNE after a 50-component PCA), timed, each layout scored by the exact KL divergence
     under one common P (exact neighbours in the full feature space, perplexity 30), so the two
     tools are judged by the same objective rather than by their own approximations;
  2. a series of three snapshots of the same points: three independent scikit-learn runs against
     dlcv's series (each snapshot started from the previous layout);
  3. `dlcv embed plot` as a whole process on a run's validation snapshots (optional).

The feature files come from a run with training-subset snapshots, e.g.
  dlcv classify fit --config configs/p1/model_a_cpu.yaml --data P1 --name embed_bench \
      --set train.epochs=3 --set data.holdout=0 --set embed.train_subset=20000 \
      --set "model.args.widths=[64,256,512]"
Usage: python benchmarks/embeddings.py runs/embed_bench/embeddings/train_epoch_00{1,2,3}.npz \
           [--plot runs/embed_bench/embeddings/epoch_003.npz runs/embed_bench]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from machine import header


def common_p(x: np.ndarray, perplexity: float = 30.0):
    from openTSNE import affinity

    return affinity.PerplexityBasedNN(x, perplexity=perplexity, method="exact", n_jobs=os.cpu_count(),
                                      verbose=False).P.tocoo()


def exact_kl(p, y: np.ndarray, chunk: int = 2000) -> float:
    """KL(P || Q) with Q the exact Student-t similarities of layout ``y`` (all pairs)."""
    y = y.astype(np.float64)
    sq = (y**2).sum(1)
    z = 0.0
    for start in range(0, len(y), chunk):
        d = sq[start : start + chunk, None] + sq[None, :] - 2 * y[start : start + chunk] @ y.T
        w = 1.0 / (1.0 + np.maximum(d, 0))
        z += w.sum() - np.sum(1.0 / (1.0 + np.maximum(d[np.arange(len(d)), np.arange(start, start + len(d))], 0)))
    diff = y[p.row] - y[p.col]
    log_w = -np.log1p((diff**2).sum(1))
    pv = p.data / p.data.sum()
    return float(np.sum(pv * (np.log(pv) - log_w)) + np.log(z))


def sklearn_tsne(x: np.ndarray) -> tuple[np.ndarray, float]:
    from sklearn.manifold import TSNE

    start = time.perf_counter()
    y = TSNE(n_components=2, perplexity=30.0, init="pca", random_state=0, n_jobs=os.cpu_count()).fit_transform(x)
    return y, time.perf_counter() - start


def main():
    header()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("features", nargs="+", help="feature files of snapshots of the same points, in order")
    parser.add_argument("--plot", nargs="+", default=[], metavar="RUN_OR_NPZ",
                        help="also time `dlcv embed plot X --method tsne` as a whole process, for each X")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each --plot timing (median reported)")
    args = parser.parse_args()
    from dlcv.data.features import load_features
    from dlcv.viz.layouts import tsne_series

    sets = [load_features(f) for f in args.features]
    n, d = sets[0].features.shape
    print(f"{len(sets)} snapshots of {n} points x {d} dims; {os.cpu_count()} cores")

    start = time.perf_counter()
    tsne_series([sets[0].features])  # one snapshot alone, as a user plotting one epoch runs it
    first_time = time.perf_counter() - start
    start = time.perf_counter()
    series = tsne_series([s.features for s in sets])  # each snapshot started from the previous layout
    series_time = time.perf_counter() - start

    sk_layouts, sk_times = [], []
    for s in sets:
        y, t = sklearn_tsne(s.features)
        sk_layouts.append(y)
        sk_times.append(t)

    for i, s in enumerate(sets):
        p = common_p(s.features)
        kl_ours, kl_sk = exact_kl(p, series[i]), exact_kl(p, sk_layouts[i])
        print(f"snapshot {i + 1}: KL (exact, common P): dlcv {kl_ours:.4f}  scikit-learn {kl_sk:.4f}  "
              f"ratio {kl_ours / kl_sk:.3f} (target <= 1.05)")
    print(f"one snapshot: dlcv {first_time:.1f} s  scikit-learn {sk_times[0]:.1f} s  "
          f"speed-up {sk_times[0] / first_time:.2f}x (target >= 2x)")
    print(f"series of {len(sets)}: dlcv {series_time:.1f} s  scikit-learn {sum(sk_times):.1f} s  "
          f"speed-up {sum(sk_times) / series_time:.2f}x (target >= 3x)")

    for source in args.plot:
        seconds = []
        for _ in range(args.repeats):
            output = tempfile.mkdtemp(prefix="dlcv-bench-figures-")
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "dlcv", "embed", "plot", source, "--method", "tsne",
                                   "--output", output], capture_output=True, text=True, check=False)
            seconds.append(time.perf_counter() - start)
            if done.returncode:
                sys.exit(f"`dlcv embed plot {source}` failed: {done.stderr.strip()}")
        shown = ", ".join(f"{s:.1f}" for s in seconds)
        print(f"`dlcv embed plot {source} --method tsne` as a whole process: median {np.median(seconds):.1f} s "
              f"of {args.repeats} runs ({shown}; target <= 15 s)")


if __name__ == "__main__":
    main()
