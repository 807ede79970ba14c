"""``dlcv segment``: Problem 2, semantic segmentation of satellite images."""

from __future__ import annotations

import math

from dlcv.cli import options
from dlcv.recipes import SEG_TTA_MODES


def add(commands) -> None:
    """Add ``dlcv segment`` (Problem 2) to ``commands``."""
    segment = options.group(commands, "segment", "Problem 2: semantic segmentation of satellite images")
    options.fit_command(segment, fit, "train a segmentation model from a recipe", "configs/seg/cpu.yaml",
                        "folder holding train/ and validation/ (p2_data)")

    seg_predict = options.command(segment, "predict", predict,
                                  "write NNNN_mask.png for every NNNN_sat.jpg of a folder")
    seg_predict.add_argument("--checkpoint", required=True)
    seg_predict.add_argument("--images", required=True, help="folder of NNNN_sat.jpg images")
    seg_predict.add_argument("--output", required=True, help="folder for the masks (new or empty)")
    options.tta_option(seg_predict, SEG_TTA_MODES)
    options.autocast_option(seg_predict)
    seg_predict.add_argument("--overwrite", action="store_true", help="replace a folder that already holds files")

    seg_eval = options.command(segment, "evaluate", evaluate, "mIoU of predicted masks, as the course grades it")
    seg_eval.add_argument("--predictions", required=True, help="folder of predicted NNNN_mask.png")
    seg_eval.add_argument("--labels", required=True, help="folder of ground-truth NNNN_mask.png")
    seg_eval.add_argument("--unmapped", choices=("unknown", "error"), default="unknown",
                          help="colours in no class (red): count as Unknown (default) or refuse the mask")
    seg_eval.add_argument("--breakdown", help="CSV to write with each image's per-class IoU")
    options.file_overwrite(seg_eval)

    seg_overlay = options.command(segment, "overlay", overlay, "draw a mask over its satellite image")
    seg_overlay.add_argument("--image", required=True)
    seg_overlay.add_argument("--mask", required=True)
    seg_overlay.add_argument("--output", required=True, help="PNG to write")
    seg_overlay.add_argument("--alpha", type=float, default=0.45, help="opacity of the mask colours (0..1)")
    options.file_overwrite(seg_overlay)

    seg_progress = options.command(segment, "progress", progress,
                                   "grid of a run's predicted masks through training")
    seg_progress.add_argument("run", help="run folder")
    seg_progress.add_argument("--output",
                              help="figure path without suffix (default: RUN/figures/masks_through_training)")
    options.file_overwrite(seg_progress)


def fit(args) -> None:
    from dlcv.segment import fit

    fit(args.config, args.data, **options.run_kwargs(args))


def predict(args) -> None:
    from dlcv.segment import predict

    count = predict(args.checkpoint, args.images, args.output, tta=args.tta, overwrite=args.overwrite,
                    autocast=args.autocast)
    print(f"wrote {count} masks to {args.output}")


def evaluate(args) -> None:
    from dlcv.data.masks import CLASS_NAMES
    from dlcv.segment import evaluate

    result = evaluate(args.predictions, args.labels, unmapped=args.unmapped, breakdown=args.breakdown,
                      overwrite=args.overwrite)
    for path, count in sorted(result["unmapped"].items()):
        print(f"note: {path}: {count} pixel(s) of a colour in no class (red), counted as Unknown")
    for i, iou in enumerate(result["iou"]):
        shown = "nan" if math.isnan(iou) else f"{iou:1.5f}"
        print(f"class #{i} : {shown}  ({CLASS_NAMES[i]})")
    if result["breakdown"] is not None:
        print(f"per-image breakdown: {result['breakdown']}")
    print(f"images: {result['images']}")
    print(f"mean_iou: {result['mean_iou']:.6f}")


def overlay(args) -> None:
    from dlcv.segment import overlay

    print(f"wrote {overlay(args.image, args.mask, args.output, alpha=args.alpha, overwrite=args.overwrite)}")


def progress(args) -> None:
    from dlcv.segment import progress

    written = progress(args.run, args.output, overwrite=args.overwrite)
    print("wrote " + ", ".join(str(p) for p in written))
