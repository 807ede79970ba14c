"""Segment Anything (Kirillov et al., 2023) on the satellite images: ``sam masks`` and ``sam refine``.

``masks`` writes SAM's records per image (``NNNN.json``: COCO RLE ``segmentation``, ``bbox`` XYWH, ``predicted_iou``,
...), overlays, a figure and ``summary.json``; ``refine`` makes a model's ``NNNN_mask.png`` follow SAM's regions
(``refine_classes``) and writes ``refine.json``.
"""

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
    """The SAM recipe: defaults, then the recipe file, then ``--set``, then ``--model``.

    Raises:
        DlcvError: a value is not valid, naming its key and where it came from.
    """
    return load_recipe(SamRecipe, config, (*overrides, *([f"model.type={model_type}"] if model_type else [])))


class SamRunner:
    """A loaded SAM and its automatic mask generator (segment-anything's ``SamAutomaticMaskGenerator``).

    Args:
        checkpoint: a SAM checkpoint of the recipe's model type.
        recipe: the SAM recipe (model type, generator settings, ``prefilter``).
        device: the device to run on; None: the first GPU where there is one, else the CPU.

    Raises:
        DlcvError: the model type is unknown, or the checkpoint is missing or not of that type.
    """

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
        """SAM's mask records for one uint8 (H, W, 3) RGB image, and the seconds it took.

        On a CPU a progress bar, labelled with ``name``, follows the batches of point prompts.
        """
        start = time.perf_counter()
        with tqdm(total=self.point_batches(image.shape[:2]), desc=f"SAM {name}", unit="batch", leave=False,
                  file=sys.stderr, disable=self.device != "cpu") as bar:
            self.generator.predictor.on_batch = lambda: bar.update(1)
            records = self.generator.generate(image)
        return records, time.perf_counter() - start


# --- masks -------------------------------------------------------------------------------------------
def figure_images(figure, ids: list[str], images) -> list[str]:
    """The ids the figure shows: those of ``figure.images`` that the folder ``images`` holds.

    With the default ids (the reports'), those the folder lacks are left out, and its first three ``ids`` shown
    where it has none of them; an id a recipe names must be there.

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
    """Run SAM's automatic mask generator on every ``NNNN_sat.jpg`` of ``images``, and return the summary.

    The output folder gets, per image, ``NNNN.json`` (SAM's records) and ``NNNN_overlay.png``; then ``figure.png`` and
    ``figure.pdf``, ``summary.json`` and ``recipe.yaml``.

    Args:
        checkpoint: a SAM checkpoint.
        images: the folder of satellite images.
        output: the folder to write, replaced whole.
        model_type: the SAM model type (``vit_b``...) in place of the recipe's.
        config: a SAM recipe file, or None for the defaults.
        overrides: ``--set KEY=VALUE`` items.
        overwrite: replace an earlier set of SAM masks (``--overwrite``).
        device: the device to run on; None: the first GPU where there is one, else the CPU.
        only: the ids to run on; empty: all.

    Returns:
        ``summary.json``'s data: model, device and generator settings, and the images' count, seconds and masks.

    Raises:
        DlcvError: an invalid recipe, the output refused, no satellite images, an id of ``only`` or of the figure
            missing, or an unreadable checkpoint or image.
    """
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
    """``(mask, predicted IoU)`` of every record of a ``sam masks`` JSON file, each mask bool (H, W).

    Args:
        path: the ``NNNN.json`` file.
        size: the (height, width) in pixels every mask must have.

    Raises:
        DlcvError: the file is unreadable or not a list, or a record is not a SAM record with a COCO RLE of ``size``
            (naming the file and the record).
    """
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
    """Set each SAM region that passes the thresholds to its majority class in ``classes``.

    Regions are applied largest first, so the smallest region covering a pixel decides it; the majority is counted in
    the original ``classes``, and a tie goes to the lower class index.

    Args:
        classes: uint8 (H, W) class map.
        regions: ``(mask, predicted IoU)`` pairs, each mask bool (H, W).
        min_predicted_iou: the lowest predicted IoU of a region used.
        min_area: the fewest pixels a region used may have (at least 1).

    Returns:
        ``(refined, used)``: a refined copy of ``classes``, and the number of regions used.
    """
    refined = classes.copy()
    used = [(mask, int(mask.sum())) for mask, score in regions
            if score >= min_predicted_iou and mask.sum() >= max(1, min_area)]
    for mask, _ in sorted(used, key=lambda item: -item[1]):
        refined[mask] = np.bincount(classes[mask], minlength=NUM_CLASSES).argmax()
    return refined, len(used)


def _sam_sources(predictions, ids: list[str], images, sam_masks) -> dict[str, Path]:
    """Each predicted mask's SAM input: its ``NNNN.json`` in ``sam_masks``, else its satellite image.

    One error names every mask without one.
    """
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
    """SAM's (region, predicted IoU) pairs for image ``name``: ``runner`` run on ``source``, else read from it.

    Without a runner ``source`` is a ``sam masks`` JSON file; an image not of ``shape`` is reported against ``mask``.
    """
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
    """Refine every predicted ``NNNN_mask.png`` by SAM's regions; return ``refine.json``'s data.

    SAM's regions come from a checkpoint run on ``images``, or from the ``NNNN.json`` files of an earlier ``sam masks``
    (``sam_masks``); each mask follows them by ``refine_classes``. With ``labels``, the IoU before and after too.

    Args:
        predictions: the folder of predicted masks.
        output: the folder of refined masks to write, replaced whole.
        checkpoint: a SAM checkpoint to run; give it or ``sam_masks``.
        images: the satellite images SAM runs on, with ``checkpoint``.
        sam_masks: the output folder of an earlier ``sam masks``.
        labels: the ground-truth masks; None: no IoU.
        model_type: the SAM model type in place of the recipe's.
        config: a SAM recipe file, or None for the defaults.
        overrides: ``--set KEY=VALUE`` items.
        overwrite: replace an earlier set of refined masks (``--overwrite``).
        device: the device SAM runs on; None: the first GPU where there is one, else the CPU.

    Raises:
        DlcvError: neither or both of ``checkpoint`` and ``sam_masks``; ``checkpoint`` without ``images``; an invalid
            recipe; the output refused; a predicted mask without its SAM input; masks not paired with ``labels``; or
            an unreadable file.
    """
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
