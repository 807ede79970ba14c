"""``dlcv sam``: Segment Anything on the satellite images."""

from __future__ import annotations

from dlcv.cli import options
from dlcv.errors import DlcvError
from dlcv.rules import SAM_TYPES


def add(commands) -> None:
    """Add ``dlcv sam`` (Segment Anything on the satellite images) to ``commands``."""
    sam = options.group(commands, "sam", "Segment Anything on the satellite images")
    sam_masks = options.command(sam, "masks", masks,
                                "SAM's automatic masks: COCO RLE JSON and an overlay per image, a figure")
    sam_masks.add_argument("--checkpoint", required=True,
                           help="SAM checkpoint: a file, e.g. sam_vit_b_01ec64.pth, or its http(s) address "
                                "(downloaded once into torch's hub cache)")
    sam_masks.add_argument("--images", required=True, help="folder of NNNN_sat.jpg images")
    sam_masks.add_argument("--output", required=True, help="folder for the masks (new or empty)")
    sam_masks.add_argument("--only", metavar="ID,ID,...", help="these images of --images alone, e.g. the report's "
                           "three: 0013,0062,0104 (minutes each on a CPU)")
    sam_refine = options.command(sam, "refine", refine, "set each SAM region of predicted masks to its majority class")
    sam_refine.add_argument("--predictions", required=True, help="folder of predicted NNNN_mask.png")
    sam_refine.add_argument("--output", required=True, help="folder for the refined masks (new or empty)")
    sam_refine.add_argument("--checkpoint", help="SAM checkpoint (a file or its http(s) address) to run on --images")
    sam_refine.add_argument("--images", help="folder of the NNNN_sat.jpg images the predictions are of")
    sam_refine.add_argument("--sam-masks", help="instead of --checkpoint: the output folder of `dlcv sam masks`")
    sam_refine.add_argument("--labels", help="folder of ground-truth NNNN_mask.png: print the mIoU before and after")
    for command in (sam_masks, sam_refine):
        command.add_argument("--model", choices=SAM_TYPES, help="SAM model type: vit_h (default), vit_l, vit_b (or "
                             "vit_tiny)")
        command.add_argument("--config", help="recipe YAML, e.g. configs/sam/fast.yaml (default: the official knobs)")
        command.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                             help="override a recipe key, e.g. --set generator.points_per_side=16 (repeatable)")
        command.add_argument("--overwrite", action="store_true", help="replace a folder that already holds files")


def masks(args) -> None:
    """``dlcv sam masks``: check ``--only``, run SAM's automatic masks and say what was written."""
    from dlcv.sam import masks

    only = () if args.only is None else tuple(i.strip() for i in args.only.split(","))
    if "" in only:
        raise DlcvError(f"--only {args.only!r}: an empty image id; give ID,ID,... (leave --only out for every image)")
    summary = masks(args.checkpoint, args.images, args.output, model_type=args.model, config=args.config,
                    overrides=tuple(args.set), overwrite=args.overwrite, only=only)
    print(f"{summary['images']} images, {summary['masks_per_image']:.1f} masks and "
          f"{summary['seconds_per_image']:.1f} s per image on {summary['device']} ({summary['model_type']})")
    print(f"wrote {args.output} (NNNN.json, NNNN_overlay.png, figure.png, summary.json)")


def refine(args) -> None:
    from dlcv.sam import refine

    result = refine(args.predictions, args.output, checkpoint=args.checkpoint, images=args.images,
                    sam_masks=args.sam_masks, labels=args.labels, model_type=args.model, config=args.config,
                    overrides=tuple(args.set), overwrite=args.overwrite)
    changed = sum(v["pixels_changed"] for v in result["per_image"].values())
    print(f"refined {result['images']} masks ({changed} pixels changed) into {args.output}")
    if "mean_iou_before" in result:
        print(f"mean_iou before: {result['mean_iou_before']:.6f}")
        print(f"mean_iou after:  {result['mean_iou_after']:.6f}")
