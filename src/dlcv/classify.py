"""Problem 1, image classification: ``fit``, ``predict`` and ``evaluate`` as the command line runs them.

torch and Lightning are imported inside ``fit`` and ``predict`` so that ``evaluate`` (NumPy, Matplotlib) starts fast.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from dlcv import fitting
from dlcv.checkpoints import load_predictor
from dlcv.data.images import load_image_stack
from dlcv.data.kinds import check_kind
from dlcv.data.p1 import label_from_filename, parse_label, read_csv_rows
from dlcv.errors import DlcvError, exception_line, listed
from dlcv.files import atomic_write, list_images
from dlcv.io import check_output_file, record_output_file
from dlcv.metrics.classification import accuracy, confusion_matrix, per_class_accuracy
from dlcv.recipes import ClassifyRecipe
from dlcv.runs import RunFolder
from dlcv.viz.confusion import plot_confusion


# --- fit -------------------------------------------------------------------------------------------
def data_module(folder: str | os.PathLike, recipe, plan=None):
    """The data a classification run of ``recipe`` trains and validates on, from ``folder``."""
    from dlcv.data.batches import ClassificationData

    return ClassificationData(folder, recipe.data, recipe.seed, plan)


def _snapshots(recipe, data, run_dir: Path, plan) -> list:
    """Embedding snapshots at ``embed.epochs`` (none when the recipe asks for none)."""
    from dlcv.data.augment import prepare_batch
    from dlcv.tasks.snapshots import EmbeddingSnapshots

    epochs = recipe.snapshots()
    if not epochs:
        return []
    sets = data.embedding_sets(recipe.embed.train_subset)
    return [EmbeddingSnapshots(run_dir, epochs, sets, lambda x: prepare_batch(x, recipe.data),
                               batch_size=recipe.data.eval_batch_size, plan=plan)]


def fit(config: str | os.PathLike | None, data: str | os.PathLike, runs_dir: str | os.PathLike = "runs",
        name: str | None = None, overrides: tuple[str, ...] = (), overwrite: bool = False,
        resume: bool = False, recipe_type: type | None = None, caller_keys: tuple[str, ...] = ()) -> Path:
    """Train a classifier and return its run folder.

    Args:
        config: a recipe file, a built recipe, or None for the defaults.
        data: the folder of training images.
        runs_dir: the folder that holds the runs.
        name: the run's name, in place of the recipe's.
        overrides: ``--set KEY=VALUE`` items.
        overwrite: replace an earlier run of that name (``--overwrite``).
        resume: continue the run of that name from its last checkpoint.
        recipe_type: the recipe's class, whose defaults ``config`` goes over; None: ``ClassifyRecipe``.
        caller_keys: keys the caller set on a built recipe, which a resume must find unchanged.

    Raises:
        DlcvError: the recipe, the data or the run folder is refused, or the run cannot be resumed.
    """
    with fitting.run(recipe_type or ClassifyRecipe, config, data, runs_dir, name, overrides, overwrite, resume,
                     caller_keys) as run:
        from dlcv.tasks.classification import ClassificationTask  # torch and Lightning: their import is budgeted

        datamodule = run.prepared(data_module(data, run.recipe, run.plan))
        task = ClassificationTask.from_recipe(run.recipe, run.plan, num_classes=datamodule.num_classes)
        return run.fit(datamodule, task, _snapshots(run.recipe, datamodule, run.dir, run.plan))


# --- checkpoints and prediction ----------------------------------------------------------------------
PREDICT_BATCH = 500  # images per batch of every classifier's predict (the hand-in's scripts batch alike)


def load_classifier(path: str | os.PathLike):
    """``(model, recipe)`` from a dlcv classification checkpoint, loaded without running pickled code."""
    return load_predictor(path, "classify")


def predict_scores(model, images, recipe, batch_size: int = PREDICT_BATCH, tta: str | None = None,
                   where: str = "the images", autocast: bool = False):
    """Softmax probabilities, float32 (N, classes) on the CPU, of uint8 (N, H, W, 3) images.

    Args:
        model: the classifier (``load_classifier``).
        images: uint8 (N, H, W, 3) images.
        recipe: the model's recipe, which says how images are prepared.
        batch_size: images per batch.
        tta: test-time augmentation (``none``, ``flip``, ``flip_shift``); None: the recipe's.
        where: what the images are, for the message.
        autocast: predict under the autocast of the model's training precision (``inference_batches``); else
            float32.

    Raises:
        DlcvError: the model cannot take images of this size (too small for its pooling), naming ``where``.
        RuntimeError: any other failure of the model.
    """
    import torch

    from dlcv.data.augment import prepare_batch
    from dlcv.runtime import inference_batches
    from dlcv.tta import predict_logits

    tta, out = tta or recipe.train.tta, []
    for start, batch in inference_batches(model, torch.as_tensor(np.asarray(images)), recipe.train.precision,
                                          batch_size, autocast=autocast):
        x = prepare_batch(batch, recipe.data)
        try:
            logits = predict_logits(model, x, tta)
        except RuntimeError as exc:
            if start > 0 or _takes(model, x.shape[-2:], tta, x):
                raise  # not the images' size: a one-image batch of it passes
            raise _refused_size(model, x, tta, recipe, where, exc) from None
        out.append(logits.float().softmax(1).cpu())
    return torch.cat(out)


def handin_config(recipe) -> dict:
    """What the hand-in's ``predict.py`` needs to prepare a classifier's input as ``predict`` does."""
    return {"input_size": recipe.data.input_size, "image_size": recipe.data.image_size, "id_column": "filename",
            "predict_batch": PREDICT_BATCH}


def half_score(model, data, recipe) -> np.ndarray:
    """The labels ``model`` predicts for ``data``'s validation images (what ``dlcv handin --half`` compares)."""
    return predict_scores(model, data.val.x.numpy(), recipe).argmax(1).numpy()


def half_change(before: np.ndarray, after: np.ndarray, where: str) -> str | None:
    """How float16 weights changed the labels, in words; None when none changed."""
    moved = int((before != after).sum())
    return f"{moved:,} of the {where} change label in float16" if moved else None


def _takes(model, size: tuple[int, int], tta: str, like) -> bool:
    """Whether ``model`` takes one image of ``size`` (height, width) under ``tta``."""
    from dlcv.tta import predict_logits

    try:
        predict_logits(model, like.new_zeros(1, like.shape[1], *size), tta)
    except RuntimeError:
        return False
    return True


def _refused_size(model, x, tta: str, recipe, where: str, exc: Exception) -> DlcvError:
    """One line for images (or ``data.input_size``) the model cannot take, with a square size it takes."""
    side = 1
    while side <= 1024 and not _takes(model, (side, side), tta, x):  # the smallest power of two it takes
        side *= 2
    height, width = x.shape[-2:]
    what = (f"its input of {width}x{height} pixels (data.input_size)" if recipe.data.input_size
            else f"images of {width}x{height} pixels")
    takes = f"it takes {side}x{side}{f' with tta {tta}' if tta != 'none' else ''}"
    reason = takes if side <= 1024 and side > min(height, width) else exception_line(exc)
    return DlcvError(f"{where}: model {recipe.model.name!r} cannot take {what}: {reason}")


def ensemble_checkpoints(checkpoint: str | os.PathLike, count: int) -> list[Path]:
    """The ``count`` best checkpoints of ``checkpoint``'s run, best first (``top/``, ``train.save_top_k``).

    With ``count`` 1 or less it is ``checkpoint`` alone.

    Raises:
        DlcvError: the run's ``top/`` holds fewer than ``count`` checkpoints.
    """
    checkpoint = Path(checkpoint)
    if count <= 1:
        return [checkpoint]
    top = RunFolder(checkpoint.parent).top
    found = sorted(top.glob("*.ckpt")) if top.is_dir() else []
    if len(found) < count:
        raise DlcvError(f"--ensemble {count}: {top} holds {len(found)} checkpoint(s); train with "
                        f"train.save_top_k >= {count}")
    scores = {}
    for path in found:  # the names end with the monitored accuracy: higher is better
        try:
            scores[path] = float(path.stem.rsplit("-", 1)[-1])
        except ValueError:
            raise DlcvError(f"{path}: not a checkpoint dlcv kept (its name does not end with -SCORE); move it out "
                            f"of {top} for --ensemble") from None
    return sorted(found, key=scores.__getitem__, reverse=True)[:count]


def predict(checkpoint: str | os.PathLike, images: str | os.PathLike, output: str | os.PathLike,
            id_column: str = "filename", ensemble: int = 1, tta: str | None = None, overwrite: bool = False,
            autocast: bool = False) -> int:
    """Write ``filename,label`` (or ``image_id,label``) for every image of a folder, sorted by name.

    Args:
        checkpoint: a dlcv classification checkpoint.
        images: the folder of images.
        output: the CSV file to write.
        id_column: the first column's name, ``filename`` or ``image_id``.
        ensemble: average the probabilities of the run's ``ensemble`` best checkpoints (``top/``).
        tta: test-time augmentation (``none``, ``flip``, ``flip_shift``) in place of the recipe's.
        overwrite: replace an output file that dlcv did not write (``--overwrite``).
        autocast: predict under the autocast of the model's training precision (``inference_batches``); else
            float32.

    Returns:
        the number of images.

    Raises:
        DlcvError: a bad ``id_column`` or ``ensemble``, the output is refused, the folder holds no images or is of
            another kind, too few checkpoints for ``ensemble``, a checkpoint is unreadable, or the model cannot take
            the images.
    """
    if id_column not in ("filename", "image_id"):
        raise DlcvError(f"--id-column must be filename or image_id, got {id_column!r}")
    if ensemble < 1:
        raise DlcvError(f"--ensemble {ensemble}: give the number of best checkpoints to average, 1 or more")
    output = check_output_file(output, overwrite, inputs=(images, checkpoint))
    check_kind(Path(images), "p1_images")
    files = list_images(images)
    array = load_image_stack(files, use_cache=False)
    total = 0
    for path in ensemble_checkpoints(checkpoint, ensemble):
        model, recipe = load_classifier(path)
        total = total + predict_scores(model, array, recipe, tta=tta, where=str(images), autocast=autocast)
    labels = total.argmax(1).numpy()
    with atomic_write(output, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([id_column, "label"])
        writer.writerows((f.name, int(l)) for f, l in zip(files, labels))
    record_output_file(output)
    return len(files)


# --- evaluation ----------------------------------------------------------------------------------------
def _read_label_table(path: Path, role: str) -> dict[str, int]:
    """File name -> label, from a CSV (``filename`` or ``image_id``, ``label``) or a folder of images."""
    if path.is_dir():
        return {p.name: label_from_filename(p) for p in list_images(path)}
    rows = read_csv_rows(path, ("label",))
    if rows and "filename" not in rows[0] and "image_id" not in rows[0]:
        raise DlcvError(f"{path}: missing column filename (or image_id) in the {role} CSV")
    table: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        name = row.get("filename") or row.get("image_id") or ""
        if not name:
            raise DlcvError(f"{path}:{line}: empty file name")
        if name in table:
            raise DlcvError(f"{path}:{line}: file name {name!r} appears twice")
        table[name] = parse_label(row["label"], f"{path}:{line}")
    if not table:
        raise DlcvError(f"{path}: the {role} CSV has no rows")
    return table


FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg")  # what the confusion figure may be written as


def evaluate(predictions: str | os.PathLike, labels: str | os.PathLike,
             confusion: str | os.PathLike | None = None, overwrite: bool = False) -> dict:
    """Accuracy, per-class accuracy and a confusion-matrix figure of a predictions CSV against its labels.

    Args:
        predictions: the predictions CSV (``filename,label`` or ``image_id,label``).
        labels: the labels CSV, or a folder of images whose names give their labels (``LABEL_N.png``).
        confusion: the figure's file (.png, .pdf, .svg or .jpg); None: ``NAME_confusion.png`` beside
            ``predictions``, left unwritten (and said so) where it is refused or cannot be written.
        overwrite: replace a figure file that dlcv did not write (``--overwrite``).

    Returns:
        ``accuracy``, ``per_class`` accuracy (NaN for a class without images), ``support`` (images per class),
        ``images`` and ``confusion_figure`` (the figure's path, or why it was not written).

    Raises:
        DlcvError: a table is unreadable, empty or names an image twice; a labelled image has no prediction, or a
            prediction no label; a predicted class is beyond the labels' classes; or the chosen figure is refused.
    """
    predictions, labels = Path(predictions), Path(labels)
    chosen, problem = confusion is not None, None
    figure = Path(confusion) if chosen else predictions.with_name(predictions.stem + "_confusion.png")
    try:
        check_output_file(figure, overwrite, inputs=(predictions, labels))
    except DlcvError as exc:
        if chosen:
            raise
        problem = exc  # the default place beside the predictions is refused: the accuracy is still the answer
    if chosen and figure.suffix.lower() not in FIGURE_SUFFIXES:
        raise DlcvError(f"--confusion {figure}: give a figure file ending in {', '.join(FIGURE_SUFFIXES)}")
    predicted = _read_label_table(predictions, "predictions")
    truth = _read_label_table(labels, "labels")
    missing = [n for n in truth if n not in predicted]
    extra = [n for n in predicted if n not in truth]
    if missing:
        raise DlcvError(f"{predictions}: no prediction for {len(missing)} labelled image(s): "
                        f"{listed(sorted(missing))}")
    if extra:
        raise DlcvError(f"{predictions}: {len(extra)} prediction(s) for images not in {labels}: "
                        f"{listed(sorted(extra))}")
    names = sorted(truth)
    y_true = np.array([truth[n] for n in names])
    y_pred = np.array([predicted[n] for n in names])
    num_classes = int(y_true.max()) + 1  # labels are bounded (parse_label); predictions must fall among them
    stray = [n for n in names if predicted[n] >= num_classes]
    if stray:
        raise DlcvError(f"{predictions}: {stray[0]} is predicted as class {predicted[stray[0]]}, but the labels in "
                        f"{labels} are classes 0...{num_classes - 1}" + (f" ({len(stray)} such rows)" if len(stray) > 1
                                                                            else ""))
    cm = confusion_matrix(y_true, y_pred, num_classes)
    if problem is None:
        try:
            plot_confusion(cm, figure, title=f"{predictions.name} vs {labels.name}")
            record_output_file(figure)
        except DlcvError as exc:
            if chosen:
                raise
            problem = exc  # the default place cannot be written (a read-only folder): said, not fatal
    written = str(figure) if problem is None else f"not written: {problem} (give --confusion to write it elsewhere)"
    return {"accuracy": accuracy(y_true, y_pred), "per_class": per_class_accuracy(cm), "support": cm.sum(axis=1),
            "images": len(names), "confusion_figure": written}
