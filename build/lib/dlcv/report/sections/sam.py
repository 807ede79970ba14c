"""Segment Anything: the overlays of the chosen images (a ``dlcv sam masks`` folder: ``summary.json``
and ``figure.png``) and, when measured, the mIoU before and after ``dlcv sam refine`` (``refine.json``)."""

from __future__ import annotations

from pathlib import Path

from dlcv.data.masks import CLASS_NAMES, SCORED_CLASSES
from dlcv.report.blocks import ReportContext
from dlcv.report.discovery import find_outputs
from dlcv.report.document import Figure, Heading, Section, Table, Text
from dlcv.runs import RunFolder, read_json

MASKS_SUMMARY = "summary.json"
REFINE_FILE = "refine.json"
OTHER_OUTPUTS = (REFINE_FILE, "figure.png")  # what makes a folder of runs worth a report without any run


def masks_folders(root: Path) -> list[Path]:
    """``dlcv sam masks`` outputs: a summary.json naming a SAM model type and its figure."""
    found = []
    for folder in find_outputs(root, MASKS_SUMMARY):
        summary = read_json(folder / MASKS_SUMMARY)
        if "model_type" in summary and (folder / str(summary.get("figure", "figure.png"))).is_file():
            found.append(folder)
    return found


def masks_blocks(folder: Path, ctx: ReportContext) -> list:
    """A ``dlcv sam masks`` output: its settings, speed and overlay figure."""
    summary = read_json(folder / MASKS_SUMMARY)
    figure = ctx.copy_figure(folder / str(summary.get("figure", "figure.png")), folder, "sam_masks")
    chosen = ", ".join(map(str, summary.get("figure_images", []))) or "the chosen images"
    rows = [["SAM model", summary.get("model_type")], ["device", summary.get("device")],
            ["images", summary.get("images")], ["masks per image", summary.get("masks_per_image")],
            ["seconds per image", summary.get("seconds_per_image")],
            ["prompt pre-filter", summary.get("prefilter")]]
    generator = summary.get("generator") or {}
    if generator:
        rows.append(["generator", ", ".join(f"{k}={v}" for k, v in generator.items())])
    return [Heading(f"{folder.name}: SAM's automatic masks", 3),
            Figure(figure, f"SAM's masks on validation images {chosen}: each mask in its own colour, outlined."),
            Table(["", "value"], rows, digits=2, caption=f"From {folder.name}/{MASKS_SUMMARY}")]


def refine_blocks(folder: Path) -> list:
    """A ``dlcv sam refine`` output: what changed, and the per-class IoU before and after where it was scored."""
    result = read_json(folder / REFINE_FILE)
    blocks = [Heading(f"{folder.name}: predictions refined by SAM's regions", 3)]
    per_image = result.get("per_image") or {}
    changed = sum(int(v.get("pixels_changed", 0)) for v in per_image.values())
    used = sum(int(v.get("regions_used", 0)) for v in per_image.values())
    blocks.append(Text(f"{result.get('images', len(per_image))} images; {used} SAM regions used (predicted IoU >= "
                       f"{result.get('min_predicted_iou')}, area >= {result.get('min_area')}); {changed:,} pixels "
                       f"changed. Order: {result.get('order', 'as written')}.", note=True))
    if result.get("mean_iou_before") is None:
        blocks.append(Text("Not measured: refine ran without --labels.", note=True))
        return blocks
    before, after = result.get("iou_before") or [], result.get("iou_after") or []
    rows = [[name, before[i] if i < len(before) else None, after[i] if i < len(after) else None,
             (after[i] - before[i]) if i < min(len(before), len(after)) else None]
            for i, name in enumerate(CLASS_NAMES[:SCORED_CLASSES])]
    rows.append(["mIoU", result["mean_iou_before"], result["mean_iou_after"],
                 result["mean_iou_after"] - result["mean_iou_before"]])
    blocks.append(Table(["class", "IoU before", "IoU after", "change"], rows,
                        caption=f"mIoU before and after refinement (from {folder.name}/{REFINE_FILE})"))
    return blocks


def build(runs: list[RunFolder], ctx: ReportContext) -> Section | None:
    """The SAM section from the SAM outputs under the runs folder; None without any."""
    masks, refined = masks_folders(ctx.root), find_outputs(ctx.root, REFINE_FILE)
    if not masks and not refined:
        return None
    section = Section("Segment Anything", "sam")
    for folder in masks:
        ctx.say(f"  SAM: {folder.name}")
        section.blocks += masks_blocks(folder, ctx)
    for folder in refined:
        section.blocks += refine_blocks(folder)
    return section
