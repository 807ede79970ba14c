"""``dlcv demo``: the whole homework at small scale on the embedded default data.

It synthesises the data, trains with small recipes, predicts and evaluates, leaving everything in
one folder. Each problem joins this as it lands in the package.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from dlcv.config import dump_recipe
from dlcv.errors import DlcvError
from dlcv.io import atomic_write

# Problem 1 at demo scale: a narrow dlcv_net, seconds per epoch on two CPU cores.
P1_DEMO_RECIPE = {
    "name": "p1_demo",
    "data": {"batch_size": 128},
    "model": {"name": "dlcv_net", "args": {"widths": [32, 96, 128]}},
    "optim": {"lr": 0.05, "weight_decay": 5e-4},
    "schedule": {"name": "onecycle", "pct_start": 0.25},
    "train": {"epochs": 12},
}


def run_demo(output: str | os.PathLike, overwrite: bool = False) -> Path:
    from dlcv.classify import evaluate, fit, predict
    from dlcv.data.synth import synth_p1
    from dlcv.embed import plot

    output = Path(output)
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise DlcvError(f"{output}: already holds files; pass --overwrite to replace the demo there")
    start = time.perf_counter()
    output.mkdir(parents=True, exist_ok=True)
    print(f"[1/5] synthesising the default data into {output / 'data'}", flush=True)
    p1 = synth_p1(output / "data", overwrite=True)
    recipes = output / "recipes"
    recipes.mkdir(exist_ok=True)
    recipe_path = recipes / "p1_demo.yaml"
    with atomic_write(recipe_path) as handle:
        handle.write(dump_recipe(P1_DEMO_RECIPE))
    print("[2/5] Problem 1: training dlcv_net from scratch", flush=True)
    run_dir = fit(recipe_path, p1, runs_dir=output / "runs", overwrite=True)
    print("[3/5] Problem 1: predicting the validation images", flush=True)
    predictions = output / "p1_predictions.csv"
    predict(run_dir / "best.ckpt", p1 / "val_50", predictions)
    print("[4/5] Problem 1: evaluating", flush=True)
    result = evaluate(predictions, p1 / "val_gt.csv")
    print("[5/5] Problem 1: PCA and t-SNE of the second-last layer at the first, middle and last epoch", flush=True)
    embedding = plot([run_dir], methods="pca,tsne")
    for row in embedding["rows"]:
        print(f"  {row['snapshot']}: 10-NN accuracy {row['knn_acc']:.3f}, silhouette {row['silhouette']:.3f}")
    print(f"demo finished in {time.perf_counter() - start:.0f} s; everything is in {output}")
    print(f"  run folder:        {run_dir}")
    print(f"  predictions:       {predictions}")
    print(f"  confusion matrix:  {result['confusion_figure']}")
    print(f"  embedding figures: {embedding['output']}")
    print(f"accuracy: {result['accuracy']:.4f}")
    return output
