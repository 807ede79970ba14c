"""``dlcv demo``: the whole homework at small scale on synthesised default data, everything in one folder.

It trains with small recipes, predicts, evaluates and builds the report (``OUTPUT/report/index.html``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from dlcv import classify, segment
from dlcv.config import dump_recipe
from dlcv.data.synth import synth_p1, synth_p2, synth_ssl
from dlcv.files import atomic_write
from dlcv.io import FolderLock, check_output_folder, make_output_folder
from dlcv.records import SettingsTable
from dlcv.report import build_report
from dlcv.runs import RunFolder
from dlcv.viz.snapshots import plot_snapshots

# Problem 1 at demo scale: a narrow dlcv_net, quick on two CPU cores.
P1_DEMO_RECIPE = {
    "name": "p1_demo",
    "data": {"batch_size": 128},
    "model": {"name": "dlcv_net", "args": {"widths": [32, 96, 128]}},
    "optim": {"lr": 0.05, "weight_decay": 5e-4},
    "schedule": {"name": "onecycle", "pct_start": 0.25},
    "train": {"epochs": 12},
}

# Problem 2 at demo scale: a small U-Net from scratch on 128-pixel crops of the 512-pixel tiles.
P2_DEMO_RECIPE = {
    "name": "p2_demo",
    "data": {"batch_size": 8, "eval_batch_size": 8, "train_size": 128, "eval_size": 128},
    "model": {"name": "unet_small", "args": {"width": 16, "depth": 3}},
    "optim": {"name": "adamw", "lr": 0.005, "weight_decay": 1e-4},
    "schedule": {"name": "onecycle", "pct_start": 0.2},
    "train": {"epochs": 12, "tta": "flip"},
    "progress": {"images": ["0000", "0001", "0002"]},
}

# The self-supervised problem at demo scale: BYOL (ResNet18) on the unlabelled textures, B and D's supervised
# backbone on Problem 1's shapes (another domain, as ImageNet is for Office-Home), then A-E (docs/results.md).
SSL_DEMO_BYOL = {
    "name": "byol_demo",
    "data": {"image_size": 16, "batch_size": 64, "eval_batch_size": 128},
    "views": {"size": 16, "min_scale": 0.2},
    "model": {"arch": "resnet18"},
    "byol": {"hidden_dim": 256, "output_dim": 64, "momentum": 0.9},
    "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5.0e-4},
    "schedule": {"name": "cosine", "warmup_epochs": 0},
    "train": {"epochs": 8},
    "monitor": {"k": 5},
}
SSL_DEMO_SUPERVISED = {
    "name": "supervised_demo",
    "data": {"holdout": 0.1, "batch_size": 128, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    "model": {"name": "resnet_transfer", "args": {"arch": "resnet18", "head": "linear"}},
    "optim": {"name": "sgd", "lr": 0.05, "weight_decay": 5.0e-4},
    "schedule": {"name": "onecycle"},
    "train": {"epochs": 3},
    "embed": {"epochs": ""},
}
SSL_DEMO_FINETUNE = {
    "name": "finetune_demo",
    "data": {"image_size": 16, "crop_padding": 2, "batch_size": 32, "eval_batch_size": 128, "holdout": 0.2,
             "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    "model": {"name": "resnet_transfer", "args": {"arch": "resnet18", "head": "linear"}},
    "optim": {"name": "adam", "lr": 1.0e-3, "weight_decay": 1.0e-4},
    "train": {"epochs": 4},
    "embed": {"epochs": "first,last", "train_subset": 60},
}


def _write_recipe(folder: Path, recipe: dict) -> Path:
    """Write ``recipe`` as ``folder/NAME.yaml``, NAME being its ``name``; return the file's path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{recipe['name']}.yaml"
    with atomic_write(path) as handle:
        handle.write(dump_recipe(recipe))
    return path


def ssl_table(recipes: Path, data: Path, runs: Path, name: str = "ssl_table_demo", settings: str = "ABCDE",
              byol: dict = SSL_DEMO_BYOL, supervised: dict = SSL_DEMO_SUPERVISED,
              finetune: dict = SSL_DEMO_FINETUNE) -> Path:
    """Run the A-E table on the synthetic self-supervised data, from the demo's recipes or variants of them.

    Args:
        recipes: the folder the table's recipes are written into.
        data: the synthetic ``p2_data`` folder (``mini/``, ``office/``), with ``p1_data`` beside it.
        runs: the folder of run folders.
        name: the table's folder name.
        settings: the settings to run, e.g. ``"ABCDE"``.
        byol: the BYOL recipe.
        supervised: the recipe of the supervised backbone, trained on Problem 1's images.
        finetune: the fine-tuning recipe the settings share.

    Returns:
        the table's folder.
    """
    from dlcv import ssl_table

    table = _write_recipe(recipes, {
        "name": name,
        "settings": list(settings),
        "pretrain": _write_recipe(recipes, byol).name,
        "supervised": _write_recipe(recipes, supervised).name,
        "finetune": _write_recipe(recipes, finetune).name,
        # the supervised backbone learns Problem 1's labelled images (the course's is ImageNet's)
        "data": {"mini": "mini/train", "office": "office", "supervised": "../p1_data"},
    })
    return ssl_table.table(table, data, runs_dir=runs)


STEPS = 10  # the demo's numbered steps, as its lines count them


def _step(number: int, what: str) -> None:
    """Print the demo's step line ``[number/STEPS] what``."""
    print(f"[{number}/{STEPS}] {what}", flush=True)


def _fit_and_predict(task, recipe: dict, data: Path, images: Path, written: Path, output: Path, runs: Path,
                     steps: tuple[tuple[int, str], tuple[int, str]]) -> Path:
    """Fit ``recipe`` with ``task`` on ``data``, predict ``images`` into ``written``, and return the run folder.

    ``task`` is the module ``classify`` or ``segment``; the prediction uses the run's best checkpoint, and ``steps``
    are the two lines announcing the fit and the prediction.
    """
    _step(*steps[0])
    run_dir = task.fit(_write_recipe(output / "recipes", recipe), data, runs_dir=runs, overwrite=True)
    _step(*steps[1])
    task.predict(RunFolder(run_dir).best, images, written, overwrite=True)
    return run_dir


def _problem1(output: Path, p1: Path, runs: Path) -> dict:
    """Model A on the synthetic Problem 1 set: fit, predict, evaluate, embeddings (steps 2-5)."""
    predictions = output / "p1_predictions.csv"
    run_dir = _fit_and_predict(classify, P1_DEMO_RECIPE, p1, p1 / "val_50", predictions, output, runs,
                               ((2, "Problem 1: training dlcv_net from scratch"),
                                (3, "Problem 1: predicting the validation images")))
    _step(4, "Problem 1: evaluating")
    result = classify.evaluate(predictions, p1 / "val_gt.csv", overwrite=True)
    _step(5, "Problem 1: PCA and t-SNE of the second-last layer at the first, middle and last epoch")
    embedding = plot_snapshots([run_dir], methods="pca,tsne")
    for row in embedding["rows"]:
        print(f"  {row['snapshot']}: 10-NN accuracy {row['knn_acc']:.3f}, silhouette {row['silhouette']:.3f}")
    return {"run": run_dir, "predictions": predictions, "result": result, "embedding": embedding}


def _problem2(output: Path, p2: Path, runs: Path) -> dict:
    """The small U-Net on the synthetic Problem 2 tiles: fit, predict, evaluate, masks in training (steps 6-8)."""
    masks = output / "p2_pred_masks"
    seg_run = _fit_and_predict(segment, P2_DEMO_RECIPE, p2, p2 / "validation", masks, output, runs,
                               ((6, "Problem 2: training a small U-Net on the satellite-like tiles"),
                                (7, "Problem 2: predicting and evaluating the validation masks")))
    result = segment.evaluate(masks, p2 / "validation")
    _step(8, "Problem 2: masks through training")
    return {"run": seg_run, "masks": masks, "result": result, "grid": segment.progress(seg_run)}


def run_demo(output: str | os.PathLike, overwrite: bool = False) -> Path:
    """Run every problem of the homework on synthetic data in the folder ``output``.

    The closing lines end with the A-E table's accuracies, the mIoU and the accuracy.

    Args:
        output: the demo's folder: new, empty, or an earlier demo's.
        overwrite: write over an earlier demo's folder (a folder of other files never).

    Returns:
        the demo's folder.

    Raises:
        DlcvError: if another dlcv process is writing the folder, or the folder may not be written.
    """
    with FolderLock(output, what="demo", option="--output") as lock:  # one demo writes a folder at a time
        lock.take(create=True)
        # An earlier demo's folder is written over with --overwrite; a folder of other files never.
        output = check_output_folder(output, "demo", overwrite, need_parent=False)
        return _run_demo(Path(output))


def _run_demo(output: Path) -> Path:
    """``run_demo`` in its checked and locked folder."""
    start = time.perf_counter()
    make_output_folder(output, "demo")
    _step(1, f"synthesising the default data into {output / 'data'}")
    p1 = synth_p1(output / "data", overwrite=True)
    p2 = synth_p2(output / "data", overwrite=True)
    synth_ssl(output / "data", arch="resnet18", overwrite=True)
    runs = output / "runs"
    one, two = _problem1(output, p1, runs), _problem2(output, p2, runs)
    _step(9, "self-supervised: BYOL, a supervised backbone, and fine-tuning settings A-E")
    table_dir = ssl_table(output / "recipes", p2, runs)
    _step(10, "building the report of every run")
    report = build_report(runs, output / "report", print_line=lambda *a, **k: None)
    print(f"demo finished in {time.perf_counter() - start:.0f} s; everything is in {output}")
    _closing_lines(one, two, table_dir, report)
    return output


def _closing_lines(one: dict, two: dict, table_dir: Path, report: dict) -> None:
    """Print where everything is, then the figures: the A-E table, the mIoU, the accuracy."""
    byol = RunFolder(table_dir / "byol").read_summary()
    print(f"  Problem 1 run:      {one['run']}")
    print(f"  predictions:        {one['predictions']}")
    print(f"  confusion matrix:   {one['result']['confusion_figure']}")
    print(f"  embedding figures:  {one['embedding']['output']}")
    print(f"  Problem 2 run:      {two['run']}")
    print(f"  predicted masks:    {two['masks']}")
    print(f"  masks in training:  {two['grid'][0]}")
    print(f"  BYOL kNN monitor:   {byol.knn_acc_at_init:.3f} untrained -> {byol.final_knn_acc:.3f} after "
          f"{len(byol.knn_acc)} epochs ({byol.knn_figure})")
    print(f"  A-E table:          {table_dir / 'table.md'}")
    pdf = f"; PDF: {report['pdf']}" if report["pdf"] else ""
    print(f"  report:             {report['index']} (open it in a browser; Markdown: {report['markdown']}{pdf})")
    print("  Segment Anything needs a SAM checkpoint (none can be downloaded here): see the README's "
          "`dlcv sam masks`")
    rows = SettingsTable.read(table_dir / "table.json").rows
    print("ssl: " + "  ".join(f"{r.setting} {r.accuracy:.3f}" for r in rows))
    print(f"mean_iou: {two['result']['mean_iou']:.6f}")
    print(f"accuracy: {one['result']['accuracy']:.4f}")
