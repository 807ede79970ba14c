"""Segment Anything on the satellite images: ``masks`` writes SAM's records per image (``NNNN.json``: COCO RLE
``segmentation``, ``bbox`` XYWH, ``predicted_iou``, ...), overlays, a figure and ``summary.json``; ``refine`` makes a
model's ``NNNN_mask.png`` follow SAM's regions (``refine_classes``) and writes ``refine.json``."""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils
from segment_anything.utils.amg import generate_crop_boxes
from tqdm import tqdm

from dlcv.config import dump_recipe, load_recipe
from dlcv.data.masks import NUM_CLASSES, MaskCodec, mask_files, pair_masks, read_mask, write_mask, write_png
from dlcv.data.p2 import find_images
from dlcv.errors import DlcvError, mismatch_message
from dlcv.files import atomic_path, decode_image
from dlcv.io import staged_folder, write_json
from dlcv.models.sam import load_sam, mask_generator
from dlcv.recipes import SamRecipe
from dlcv.runtime import inference_device
from dlcv.segment import evaluate
from dlcv.viz.sam import masks_overlay, plot_sam_masks

FIGURE_STEM = "figure"


# --- recipe and model --------------------------------------------------------------------------------
def sam_recipe(config: str | os.PathLike | None, overrides: tuple[str, ...] = (), model_type: str | None = None):
    """Defaults, then the recipe file, then ``--set`` (values checked as loaded), then ``--model``."""
    return load_recipe(SamRecipe, config, (*overrides, *([f"model.type={model_type}"] if model_type else [])))


class SamRunner:
    """A loaded SAM and its mask generator; ``generate(name, image)`` -> (records, seconds)."""

    def __init__(self, checkpoint: str | os.PathLike, recipe, device: str | None = None):
        self.device = device or str(inference_device())
        self.model = load_sam(checkpoint, recipe.model.type).to(self.device)
        self.knobs = recipe.generator.model_dump()
        self.generator = mask_generator(self.model, self.knobs, prefilter=recipe.prefilter)

    def point_batches(self, size: tuple[int, int]) -> int:
        """How many batches of point prompts one image of ``size`` costs (every crop of every layer)."""
        _, layers = generate_crop_boxes(size, self.knobs["crop_n_layers"], self.knobs["crop_overlap_ratio"])
        per_batch = self.knobs["points_per_batch"]
        return sum(math.ceil(len(self.generator.point_grids[layer]) / per_batch) for layer in layers)

    def generate(self, name: str, image: np.ndarray) -> tuple[list[dict], float]:
        """SAM's mask records for one RGB uint8 image, and the seconds it took; a progress bar on CPU."""
        start = time.perf_counter()
        with tqdm(total=self.point_batches(image.shape[:2]), desc=f"SAM {name}", unit="batch", leave=False,
                  file=sys.stderr, disable=self.device != "cpu") as bar:
            self.generator.predictor.on_batch = lambda: bar.update(1)
            records = self.generator.generate(image)
        return records, time.perf_counter() - start


# --- masks -------------------------------------------------------------------------------------------
def figure_images(figure, ids: list[str], images) -> list[str]:
    """The ids the figure shows: ``figure.images`` where the folder ``images`` has them all; the default (the
    reports' ids) gives way to the first three where it lacks some, an id a recipe names is refused if missing.

    Raises:
        DlcvError: an id given in ``figure.images`` that the folder does not hold.
    """
    wanted = [str(i) for i in figure.images]
    missing = [i for i in wanted if i not in ids]
    if missing and wanted != type(figure)().images:  # a saved recipe holds the default too: compared, not "set"
        raise DlcvError(f"figure.images: {images} has no image of id {missing[0]!r}; give ids of that folder")
    return [i for i in wanted if i in ids] or ids[:3]


def masks(checkpoint: str | os.PathLike, images: str | os.PathLike, output: str | os.PathLike,
          model_type: str | None = None, config: str | os.PathLike | None = None, overrides: tuple[str, ...] = (),
          overwrite: bool = False, device: str | None = None, only: tuple[str, ...] = ()) -> dict:
    """SAM's automatic masks for every ``NNNN_sat.jpg`` of ``images`` (``only``: those ids alone); returns a summary."""
    recipe = sam_recipe(config, overrides, model_type)
    with staged_folder(output, overwrite, inputs=(images, checkpoint), kind="set of SAM masks") as staging:
        found = _only(find_images(images), only, images)
        runner = SamRunner(checkpoint, recipe, device)
        chosen = figure_images(recipe.figure, found.ids, images)
        seconds: dict[str, float] = {}
        counts: dict[str, int] = {}
        rows = []
        for name, path in zip(found.ids, found.images):
            image = decode_image(path)
            records, seconds[name] = runner.generate(name, image)
            counts[name] = len(records)
            write_json(staging / f"{name}.json", records, indent=None)
            overlay = masks_overlay(image, [decode_rle(r["segmentation"]) for r in records])
            write_png(staging / f"{name}_overlay.png", overlay)
            if name in chosen:
                rows.append((name, image, overlay, len(records)))
            print(f"{name}: {len(records)} masks in {seconds[name]:.1f} s", flush=True)
        plot_sam_masks(rows, staging / FIGURE_STEM)
        summary = {
            "model_type": recipe.model.type,
            "checkpoint": str(checkpoint),
            "device": runner.device,
            "prefilter": recipe.prefilter,
            "generator": runner.knobs,
            "images": len(found.ids),
            "seconds_per_image": sum(seconds.values()) / len(seconds),
            "masks_per_image": sum(counts.values()) / len(counts),
            "seconds": {k: round(v, 3) for k, v in seconds.items()},
            "masks": counts,
            "figure_images": [r[0] for r in rows],
            "figure": f"{FIGURE_STEM}.png",
        }
        write_json(staging / "summary.json", summary)
        with atomic_path(staging / "recipe.yaml") as tmp:
            tmp.write_text(dump_recipe(recipe), encoding="utf-8")
    return summary


def _only(found, only: tuple[str, ...], images):
    """``found`` (``find_images``'s) narrowed to the ids of ``only`` (all of them when empty)."""
    missing = [i for i in only if i not in found.ids]
    if missing:
        raise DlcvError(f"--only {','.join(only)}: {images} has no {missing[0]}_sat.jpg")
    return type(found)(list(only), [found.images[found.ids.index(i)] for i in only], None) if only else found


def decode_rle(segmentation: dict) -> np.ndarray:
    """A COCO RLE (``{"size": [h, w], "counts": str}``) as an (h, w) boolean mask."""
    counts = segmentation["counts"]
    rle = {"size": segmentation["size"], "counts": counts.encode() if isinstance(counts, str) else counts}
    with warnings.catch_warnings():  # pycocotools 2.0 under NumPy 2 warns about its own __array__ on every call
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


def read_sam_records(path: Path, size: tuple[int, int]) -> list[tuple[np.ndarray, float]]:
    """(mask, predicted IoU) of every record of a ``sam masks`` JSON file; errors name the file."""
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DlcvError(f"{path}: not a readable SAM masks file ({exc})") from None
    if not isinstance(records, list):
        raise DlcvError(f"{path}: a SAM masks file holds a list of records, got {type(records).__name__}")
    regions = []
    for index, record in enumerate(records):
        try:
            segmentation, score = record["segmentation"], float(record["predicted_iou"])
            if list(segmentation["size"]) != list(size):
                raise DlcvError(f"{path}: record {index} is {segmentation['size'][1]}x{segmentation['size'][0]}, "
                                f"but its mask is {size[1]}x{size[0]}")
            mask = decode_rle(segmentation)
        except (KeyError, TypeError, ValueError) as exc:
            raise DlcvError(f"{path}: record {index} is not a SAM mask record with a COCO RLE segmentation "
                            f"and predicted_iou ({type(exc).__name__}: {exc})") from None
        regions.append((mask, score))
    return regions


# --- refine ------------------------------------------------------------------------------------------
def refine_classes(classes: np.ndarray, regions: list[tuple[np.ndarray, float]], min_predicted_iou: float,
                   min_area: int = 0) -> tuple[np.ndarray, int]:
    """``classes`` with every SAM region (mask, predicted IoU) passing the thresholds set to its majority class in
    the original ``classes`` (ties to the lower index), largest first so the smallest covering region wins; returns
    the refined classes and the number of regions used."""
    refined = classes.copy()
    used = [(mask, int(mask.sum())) for mask, score in regions
            if score >= min_predicted_iou and mask.sum() >= max(1, min_area)]
    for mask, _ in sorted(used, key=lambda item: -item[1]):
        refined[mask] = np.bincount(classes[mask], minlength=NUM_CLASSES).argmax()
    return refined, len(used)


def _sam_sources(predictions, ids: list[str], images, sam_masks) -> dict[str, Path]:
    """Each predicted mask's SAM input: an earlier run's ``NNNN.json`` (``sam_masks``) or its satellite
    image (``images``); one error names every mask without one."""
    if sam_masks is not None:
        folder = Path(sam_masks)
        if not folder.is_dir():
            raise DlcvError(f"{folder}: no such folder (SAM masks)")
        sources = {i: folder / f"{i}.json" for i in ids}
        missing = [p.name for p in sources.values() if not p.is_file()]
    else:
        found = find_images(images)
        sources = dict(zip(found.ids, found.images))
        missing = [f"{i}_sat.jpg" for i in ids if i not in sources]
    problem = mismatch_message(f"{predictions}", [("predicted mask(s) have no SAM input", missing)])
    if problem:
        raise DlcvError(problem)
    return sources


def _regions(runner, name: str, source: Path, mask: Path, shape: tuple[int, int]) -> list:
    """SAM's (region, predicted IoU) pairs for image ``name``: ``runner`` run on ``source``, or without one read from
    ``source`` as a ``sam masks`` JSON file; an image not of ``shape`` is reported against ``mask``."""
    if runner is None:
        return read_sam_records(source, shape)
    image = decode_image(source)
    if image.shape[:2] != shape:
        raise DlcvError(f"{mask}: mask is {shape[1]}x{shape[0]} but the image "
                        f"{source.name} is {image.shape[1]}x{image.shape[0]}")
    records, _ = runner.generate(name, image)
    return [(decode_rle(r["segmentation"]), float(r["predicted_iou"])) for r in records]


def refine(predictions: str | os.PathLike, output: str | os.PathLike, checkpoint: str | os.PathLike | None = None,
           images: str | os.PathLike | None = None, sam_masks: str | os.PathLike | None = None,
           labels: str | os.PathLike | None = None, model_type: str | None = None,
           config: str | os.PathLike | None = None, overrides: tuple[str, ...] = (), overwrite: bool = False,
           device: str | None = None) -> dict:
    """Refine every predicted ``NNNN_mask.png`` by SAM's regions, from a checkpoint run on ``images``
    or from the ``NNNN.json`` files of an earlier ``sam masks`` (``sam_masks``); returns refine.json's data."""
    if (checkpoint is None) == (sam_masks is None):
        raise DlcvError("give either --checkpoint (with --images) to run SAM, "
                        "or --sam-masks FOLDER from `dlcv sam masks`")
    if checkpoint is not None and images is None:
        raise DlcvError("--checkpoint needs --images: the satellite images SAM runs on")
    recipe = sam_recipe(config, overrides, model_type)
    inputs = (predictions, checkpoint, images, sam_masks, labels)
    with staged_folder(output, overwrite, inputs=inputs, kind="set of refined masks") as staging:
        files = mask_files(Path(predictions), "predictions")
        predicted = {name[: -len("_mask.png")]: path for name, path in files.items()}
        ids = sorted(predicted)
        sources = _sam_sources(predictions, ids, images, sam_masks)
        if labels is not None:
            pair_masks(Path(predictions), Path(labels))  # unmatched files fail before any work
        runner = SamRunner(checkpoint, recipe, device) if checkpoint is not None else None
        settings = recipe.refine
        codec = MaskCodec()
        per_image = {}
        for name in ids:
            classes = read_mask(predicted[name], codec)
            regions = _regions(runner, name, sources[name], predicted[name], classes.shape)
            refined, used = refine_classes(classes, regions, settings.min_predicted_iou, settings.min_area)
            write_mask(staging / f"{name}_mask.png", refined)
            per_image[name] = {"regions": len(regions), "regions_used": used,
                               "pixels_changed": int((refined != classes).sum())}
        result = {"predictions": str(predictions), "sam": str(checkpoint if checkpoint is not None else sam_masks),
                  "model_type": recipe.model.type if checkpoint is not None else None,
                  "min_predicted_iou": settings.min_predicted_iou, "min_area": settings.min_area,
                  "order": "largest region first; smaller regions overwrite larger ones",
                  "images": len(ids), "per_image": per_image}
        if labels is not None:
            before, after = evaluate(predictions, labels), evaluate(staging, labels)
            result["labels"] = str(labels)
            result["mean_iou_before"], result["mean_iou_after"] = before["mean_iou"], after["mean_iou"]
            result["iou_before"] = [float(v) for v in before["iou"]]
            result["iou_after"] = [float(v) for v in after["iou"]]
        write_json(staging / "refine.json", result)
    return result
