"""The kNN monitor of BYOL (dlcv's majority vote of the k most cosine-similar bank points,
``dlcv.metrics.embedding.knn_accuracy_against``) against lightly's ``knn_predict`` (similarity-weighted votes,
temperature 0.1), on feature files a run kept: accuracy and seconds of each.

Usage: python benchmarks/knn_monitor.py BANK.npz QUERY.npz [--k 20]   (bank and query of one run's embeddings/),
       python benchmarks/knn_monitor.py FEATURES.npz [--k 20]          (one file: even rows the bank, odd the query)
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from lightly.utils.benchmarking import knn_predict
from machine import best_of, header

from dlcv.data.features import load_features
from dlcv.metrics.embedding import knn_accuracy_against


def lightly_accuracy(bank, bank_y, query, query_y, k: int, t: float = 0.1) -> float:
    """lightly's kNN accuracy of ``query`` against ``bank`` (features normalised, as lightly advises)."""
    classes, y = np.unique(bank_y, return_inverse=True)
    b = F.normalize(torch.as_tensor(bank, dtype=torch.float32), dim=1)
    q = F.normalize(torch.as_tensor(query, dtype=torch.float32), dim=1)
    predicted = knn_predict(q, b.T.contiguous(), torch.as_tensor(y), len(classes), knn_k=k, knn_t=t)[:, 0]
    return float((classes[predicted.numpy()] == query_y).mean())


def main() -> None:
    header()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="BANK.npz QUERY.npz, or one FEATURES.npz split in two")
    parser.add_argument("--k", type=int, default=20, help="neighbours (dlcv's BYOL monitor: 20)")
    args = parser.parse_args()
    sets = [load_features(f) for f in args.files]
    if len(sets) == 1:
        x, y = sets[0].features, sets[0].labels
        bank, bank_y, query, query_y = x[::2], y[::2], x[1::2], y[1::2]
    else:
        (bank, bank_y), (query, query_y) = [(s.features, s.labels) for s in sets[:2]]
    print(f"bank {bank.shape[0]} x {bank.shape[1]}, query {query.shape[0]}, {len(np.unique(bank_y))} classes")
    ours, ours_s = best_of(3, lambda: knn_accuracy_against(bank, bank_y, query, query_y, k=args.k))
    print(f"dlcv majority vote, k={args.k}: accuracy {ours:.4f} in {ours_s * 1000:.1f} ms")
    for k in (args.k, 200):
        theirs, theirs_s = best_of(3, lambda: lightly_accuracy(bank, bank_y, query, query_y, min(k, len(bank))))
        print(f"lightly knn_predict, k={k}, t=0.1: accuracy {theirs:.4f} in {theirs_s * 1000:.1f} ms")


if __name__ == "__main__":
    main()
