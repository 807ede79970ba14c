"""Segment Anything: ``dlcv sam masks``' overlay figure and, when measured, the mIoU before and after ``sam refine``."""

from __future__ import annotations

from pathlib import Path

from dlcv.data.masks import CLASS_NAMES, SCORED_CLASSES
from dlcv.records import Refinement, SamMasks
from dlcv.report.blocks import ReportContext
from dlcv.report.discovery import find_outputs
from dlcv.report.document import Figure, Heading, Section, Table, Text, about
from dlcv.runs import RunFolder, read_json

MASKS_SUMMARY = "summary.json"
REFINE_FILE = "refine.json"
OTHER_OUTPUTS = (REFINE_FILE, "figure.png")  # what makes a folder of runs worth a report without any run


def masks_outputs(root: Path) -> list[tuple[Path, SamMasks]]:
    """Find the ``dlcv sam masks`` outputs under ``root``: a summary.json naming a SAM model, and its figure.

    Returns:
        ``(folder, summary)`` pairs, in folder order.
    """
    found = []
    for folder in find_outputs(root, MASKS_SUMMARY):
        data = read_json(folder / MASKS_SUMMARY)
        if "model_type" in data:  # not a training run's summary.json
            summary = SamMasks.of(data, folder / MASKS_SUMMARY)
            if (folder / summary.figure).is_file():
                found.append((folder, summary))
    return found


def masks_blocks(folder: Path, summary: SamMasks, ctx: ReportContext) -> list:
    """Return the blocks of a ``dlcv sam masks`` output: its overlay figure, then its settings and speed."""
    figure = ctx.copy_figure(folder / summary.figure, folder, "sam_masks")
    chosen = ", ".join(summary.figure_images) or "the chosen images"
    rows = [["SAM model", summary.model_type], ["device", summary.device], ["images", summary.images],
            ["masks per image", summary.masks_per_image], ["seconds per image", summary.seconds_per_image],
            ["prompt pre-filter", summary.prefilter]]
    if summary.generator:
        rows.append(["generator", ", ".join(f"{k}={v}" for k, v in summary.generator.items())])
    return [Heading(f"{folder.name}: SAM's automatic masks", 3),
            Figure(figure, f"SAM's masks on validation images {chosen}: each mask in its own colour, outlined."),
            Table(["", "value"], rows, digits=2, caption=f"From {folder.name}/{MASKS_SUMMARY}")]


def refine_blocks(folder: Path) -> list:
    """Return the blocks of a ``dlcv sam refine`` output: what changed, and each class's IoU before and after."""
    result = Refinement.read(folder / REFINE_FILE)
    blocks = [Heading(f"{folder.name}: predictions refined by SAM's regions", 3)]
    changed = sum(v.pixels_changed for v in result.per_image.values())
    used = sum(v.regions_used for v in result.per_image.values())
    images = result.images if result.images is not None else len(result.per_image)
    blocks.append(Text(f"{images} images; {used} SAM regions used (predicted IoU >= {result.min_predicted_iou}, "
                       f"area >= {result.min_area}); {changed:,} pixels changed. Order: {result.order}.", note=True))
    if result.mean_iou_before is None or result.mean_iou_after is None:
        blocks.append(Text("Not measured: refine ran without --labels.", note=True))
        return blocks
    before, after = result.iou_before, result.iou_after
    rows = [[name, before[i] if i < len(before) else None, after[i] if i < len(after) else None,
             (after[i] - before[i]) if i < min(len(before), len(after)) else None]
            for i, name in enumerate(CLASS_NAMES[:SCORED_CLASSES])]
    rows.append(["mIoU", result.mean_iou_before, result.mean_iou_after,
                 result.mean_iou_after - result.mean_iou_before])
    blocks.append(Table(["class", "IoU before", "IoU after", "change"], rows,
                        caption=f"mIoU before and after refinement (from {folder.name}/{REFINE_FILE})"))
    return blocks


def build(runs: list[RunFolder], ctx: ReportContext) -> Section | None:
    """Build the SAM section from the SAM outputs under the runs folder; None without any."""
    masks, refined = masks_outputs(ctx.root), find_outputs(ctx.root, REFINE_FILE)
    if not masks and not refined:
        return None
    section = Section("Segment Anything", "sam")
    for folder, summary in masks:
        ctx.print_line(f"  SAM: {folder.name}")
        section.blocks += about("sam", masks_blocks(folder, summary, ctx))
    for folder in refined:
        section.blocks += about("sam", refine_blocks(folder))
    return section
