"""Problem 2, semantic segmentation: ``evaluate``, ``overlay``, ``predict``, ``fit`` and ``progress``.

``evaluate`` and ``overlay`` need only NumPy and Pillow; torch and Lightning are imported where a model runs.
"""

from __future__ import annotations

import csv
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from dlcv import fitting
from dlcv.checkpoints import load_predictor
from dlcv.data.images import decode_images
from dlcv.data.masks import (
    CLASS_NAMES,
    CODE_TO_CLASS,
    NUM_CLASSES,
    SCORED_CLASSES,
    MaskCodec,
    pair_masks,
    read_mask,
    unmapped_error,
    write_mask,
    write_png,
)
from dlcv.data.p2 import find_images
from dlcv.errors import DlcvError
from dlcv.files import atomic_write, check_one_size, decode_image
from dlcv.io import check_output_file, figures_folder, record_output_file, staged_folder
from dlcv.metrics.segmentation import class_iou, code_confusion, codes_to_classes, confusion, mean_iou
from dlcv.recipes import SegmentRecipe
from dlcv.runs import RunFolder
from dlcv.runtime import retain_freed_memory, usable_cpus
from dlcv.viz.segmentation import overlay_image, plot_progress


# --- evaluate ----------------------------------------------------------------------------------------
def evaluate(predictions: str | os.PathLike, labels: str | os.PathLike, unmapped: str = "unknown",
             breakdown: str | os.PathLike | None = None, overwrite: bool = False) -> dict:
    """Pooled confusion matrix, per-class IoU and mIoU of a folder of predicted masks against ground truth.

    Args:
        predictions: the folder of predicted ``NNNN_mask.png``.
        labels: the folder of ground-truth masks, paired with the predictions by name.
        unmapped: the policy for colours in no class (red), in predictions and ground truth alike.
        breakdown: a CSV file for ``write_breakdown``'s rows, one per image; None: none.
        overwrite: replace a breakdown file that dlcv did not write (``--overwrite``).

    Returns:
        ``images``, ``confusion`` (pooled class counts), ``iou`` per class, ``mean_iou``, ``unmapped`` (pixels in no
        class, per file) and ``breakdown`` (its path, or None).

    Raises:
        DlcvError: the breakdown file is refused or not a .csv; the masks do not pair; a mask is unreadable, not RGB
            or not of its pair's size; ``unmapped`` is no policy; or a pixel is in no class under ``error``.
    """
    if breakdown is not None:
        check_output_file(breakdown, overwrite, inputs=(predictions, labels))
        if Path(breakdown).suffix.lower() != ".csv":
            raise DlcvError(f"--breakdown {breakdown}: give a CSV file name (ending in .csv)")
    pairs = pair_masks(Path(predictions), Path(labels))
    MaskCodec(unmapped)  # a bad policy fails before any work
    unmapped_codes = np.flatnonzero(CODE_TO_CLASS >= NUM_CLASSES)  # red
    unmapped_counts: dict[str, int] = {}

    def score(item):
        _, pred_path, gt_path = item
        gt, pred = (decode_image(p, rgb_only=True) for p in (gt_path, pred_path))  # masks stored as RGB
        if pred.shape != gt.shape:
            raise DlcvError(f"{pred_path}: prediction is {pred.shape[1]}x{pred.shape[0]} but its ground truth "
                            f"{gt_path.name} is {gt.shape[1]}x{gt.shape[0]}")
        codes = code_confusion(gt, pred)
        for path, count in ((gt_path, codes[unmapped_codes].sum()), (pred_path, codes[:, unmapped_codes].sum())):
            if count:
                if unmapped == "error":
                    raise unmapped_error(path, int(count))
                unmapped_counts[str(path)] = int(count)
        return codes_to_classes(codes)

    with ThreadPoolExecutor(max_workers=min(4, usable_cpus())) as pool:
        per_image = list(pool.map(score, pairs))
    total = np.sum(per_image, axis=0)
    result = {"images": len(pairs), "confusion": total, "iou": class_iou(total), "mean_iou": mean_iou(total),
              "unmapped": unmapped_counts, "breakdown": None}
    if breakdown is not None:
        result["breakdown"] = write_breakdown(Path(breakdown), [p[0] for p in pairs], per_image)
        record_output_file(breakdown)
    return result


def write_breakdown(path: Path, names: list[str], matrices: list[np.ndarray]) -> Path:
    """One row per image: each scored class's IoU (empty where absent from both) and pixel accuracy."""
    with atomic_write(path, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["mask", *[f"iou_{n.lower()}" for n in CLASS_NAMES[:SCORED_CLASSES]], "pixel_accuracy"])
        for name, matrix in zip(names, matrices):
            ious = class_iou(matrix)
            accuracy = np.trace(matrix) / max(1, matrix.sum())
            writer.writerow([name, *["" if np.isnan(v) else f"{v:.6f}" for v in ious], f"{accuracy:.6f}"])
    return path


# --- overlay -----------------------------------------------------------------------------------------
def overlay(image: str | os.PathLike, mask: str | os.PathLike, output: str | os.PathLike,
            alpha: float = 0.45, unmapped: str = "unknown", overwrite: bool = False) -> Path:
    """Write ``output``, a PNG of the image with its mask's colours over it, and return its path.

    Args:
        image: the satellite image.
        mask: its mask PNG.
        output: the PNG to write.
        alpha: the mask's opacity, 0 to 1.
        unmapped: the policy for colours in no class (red).
        overwrite: replace a file that dlcv did not write (``--overwrite``).

    Raises:
        DlcvError: ``alpha`` outside 0-1, a missing or unreadable file, the output refused, or a mask not of the
            image's size.
    """
    if not 0.0 <= alpha <= 1.0:
        raise DlcvError(f"--alpha must lie in 0..1, got {alpha}")
    image_path, mask_path = Path(image), Path(mask)
    for path in (image_path, mask_path):
        if not path.is_file():
            raise DlcvError(f"{path}: no such file")
    output = check_output_file(output, overwrite, inputs=(image_path, mask_path))
    rgb = decode_image(image_path)
    classes = read_mask(mask_path, MaskCodec(unmapped))
    if classes.shape != rgb.shape[:2]:
        raise DlcvError(f"{mask_path}: mask is {classes.shape[1]}x{classes.shape[0]} but the image "
                        f"{image_path.name} is {rgb.shape[1]}x{rgb.shape[0]}")
    write_png(output, overlay_image(rgb, classes, alpha))
    record_output_file(output)
    return output


# --- fit ---------------------------------------------------------------------------------------------
def data_module(folder: str | os.PathLike, recipe, plan=None):
    """The data a segmentation run of ``recipe`` trains and validates on, from ``folder``."""
    from dlcv.data.seg_batches import SegmentationData

    retain_freed_memory()  # the batches' and the kernels' buffers are reused, not faulted in afresh
    return SegmentationData(folder, recipe.data, recipe.seed, plan)


def _progress(recipe, data, run_dir: Path, plan) -> list:
    """Masks through training at ``progress.epochs`` (none when the recipe asks for none)."""
    from dlcv.data.augment import segment_input
    from dlcv.tasks.progress import MaskProgress

    epochs = recipe.snapshots()
    if not epochs:
        return []
    chosen = recipe.progress.images
    ids, images, masks = data.progress_images(chosen, strict=chosen != type(recipe.progress)().images)
    return [MaskProgress(run_dir, epochs, ids, images, masks, lambda x: segment_input(x, recipe.data),
                         recipe.train.val_tta, plan)]


def fit(config: str | os.PathLike | None, data: str | os.PathLike, runs_dir: str | os.PathLike = "runs",
        name: str | None = None, overrides: tuple[str, ...] = (), overwrite: bool = False,
        resume: bool = False) -> Path:
    """Train a segmentation model and return its run folder.

    Args:
        config: a recipe file, or None for the defaults.
        data: the folder of training tiles and masks.
        runs_dir: the folder that holds the runs.
        name: the run's name, in place of the recipe's.
        overrides: ``--set KEY=VALUE`` items.
        overwrite: replace an earlier run of that name (``--overwrite``).
        resume: continue the run of that name from its last checkpoint.

    Raises:
        DlcvError: the recipe, the data or the run folder is refused, or the run cannot be resumed.
    """
    with fitting.run(SegmentRecipe, config, data, runs_dir, name, overrides, overwrite, resume) as run:
        from dlcv.tasks.segmentation import SegmentationTask  # torch and Lightning: their import is budgeted

        datamodule = run.prepared(data_module(data, run.recipe, run.plan))
        task = SegmentationTask.from_recipe(run.recipe, run.plan)
        return run.fit(datamodule, task, _progress(run.recipe, datamodule, run.dir, run.plan))


# --- checkpoints and prediction ----------------------------------------------------------------------
def load_segmenter(path: str | os.PathLike):
    """``(model, recipe)`` from a dlcv segmentation checkpoint."""
    return load_predictor(path, "segment")


def predict_classes(model, images, recipe, tta: str | None = None, batch_size: int | None = None,
                    load=np.array, autocast: bool = False):
    """Yield ``(start, classes)`` batch by batch: the first image's index and uint8 (B, H, W) class maps.

    The class maps are at the images' own size.

    Args:
        model: the segmenter (``load_segmenter``).
        images: the images, in the form ``load`` takes a slice of.
        recipe: the model's recipe, which says how images are prepared.
        tta: test-time augmentation; None: the recipe's.
        batch_size: images per batch; None: the recipe's ``data.eval_batch_size``.
        load: turns a slice of ``images`` into a uint8 (B, H, W, 3) array.
        autocast: predict under the autocast of the model's training precision (``inference_batches``); else
            float32.
    """
    import torch

    from dlcv.data.augment import segment_input
    from dlcv.runtime import inference_batches
    from dlcv.tta import predict_probs

    tta = tta or recipe.train.tta
    batches = inference_batches(model, images, recipe.train.precision, batch_size or recipe.data.eval_batch_size, load,
                                autocast)
    for start, batch in batches:
        probs = predict_probs(model, segment_input(batch, recipe.data), tuple(batch.shape[1:3]), tta)
        yield start, probs.argmax(1).to(torch.uint8).cpu().numpy()


def handin_config(recipe) -> dict:
    """What the hand-in's ``predict.py`` needs to prepare a segmenter's input as ``predict`` does."""
    return {"eval_size": recipe.data.eval_size, "predict_batch": recipe.data.eval_batch_size}


def half_score(model, data, recipe) -> float:
    """The mIoU of ``model`` on ``data``'s validation images (what ``dlcv handin --half`` compares)."""
    matrix = sum(confusion(data.val.y[start:start + len(classes)].numpy(), classes)
                 for start, classes in predict_classes(model, data.val.x.numpy(), recipe))
    return mean_iou(matrix)


def half_change(before: float, after: float, where: str) -> str | None:
    """How float16 weights moved the mIoU, in words; None when by no more than 1e-4 (the scripts' own bar)."""
    moved = after - before
    return f"in float16 the mIoU of the {where} moves {moved:+.1e}" if abs(moved) > 1e-4 else None


def predict(checkpoint: str | os.PathLike, images: str | os.PathLike, output: str | os.PathLike,
            tta: str | None = None, overwrite: bool = False, autocast: bool = False) -> int:
    """Write ``NNNN_mask.png`` for every ``NNNN_sat.jpg`` of a folder whose images share one size.

    The masks are staged beside ``output`` and moved into place when all are done, so ``output`` never mixes old and
    new masks and an interrupted run leaves it as it was.

    Args:
        checkpoint: a dlcv segmentation checkpoint.
        images: the folder of satellite images.
        output: the folder of masks to write.
        tta: test-time augmentation in place of the recipe's.
        overwrite: replace an earlier set of masks (``--overwrite``).
        autocast: predict under the autocast of the model's training precision (``inference_batches``); else
            float32.

    Returns:
        the number of masks written.

    Raises:
        DlcvError: the output is refused, the folder holds no satellite images or images of more than one size, or
            the checkpoint is unreadable or not a segmenter's.
    """
    with staged_folder(output, overwrite, inputs=(images, checkpoint), kind="set of predicted masks") as staging:
        found = find_images(images)
        check_one_size(found.images)
        model, recipe = load_segmenter(checkpoint)
        for first, classes in predict_classes(model, found.images, recipe, tta, load=decode_images, autocast=autocast):
            for name, mask in zip(found.ids[first : first + len(classes)], classes):
                write_mask(staging / f"{name}_mask.png", mask)
    return len(found)


# --- progress grid -----------------------------------------------------------------------------------
def progress(run: str | os.PathLike, output: str | os.PathLike | None = None, overwrite: bool = False) -> list[Path]:
    """Draw the run's masks through training: a row per image; columns image, each epoch, ground truth.

    Args:
        run: the run folder.
        output: the figures' path, a .png or .pdf suffix dropped (both are written); None: the run's ``figures/``.
        overwrite: replace figure files that dlcv did not write (``--overwrite``).

    Returns:
        the figure files written.

    Raises:
        DlcvError: the run saved no masks through training, or a figure file is refused.
    """
    run = Path(run)
    epochs, rows = RunFolder(run).read_progress()
    if output is None:
        stem = figures_folder(run / "figures") / "masks_through_training"
    else:
        stem = Path(output).with_suffix("") if Path(output).suffix.lower() in (".png", ".pdf") else Path(output)
        for suffix in (".png", ".pdf"):
            check_output_file(stem.with_name(stem.name + suffix), overwrite, inputs=(run,))
    written = plot_progress(rows, epochs, stem)
    if output is not None:
        for path in written:
            record_output_file(path)
    return written
