"""The report's segmentation section: mask colours, mIoU beside the course's, runs, and masks through training."""

from __future__ import annotations

from pathlib import Path

from dlcv.data.masks import CLASS_COLOURS, CLASS_NAMES, SCORED_CLASSES
from dlcv.report.blocks import ReportContext, run_blocks
from dlcv.report.document import Figure, Section, Swatch, Table, Text, about
from dlcv.report.published import comparison_table, group, range_text
from dlcv.runs import RunFolder
from dlcv.viz.curves import CurvePanel
from dlcv.viz.segmentation import plot_progress

SCORED = CLASS_NAMES[:SCORED_CLASSES]
IOU_COLUMNS = tuple(f"val_iou_{name.lower()}" for name in SCORED)

PANELS = [
    CurvePanel("loss", "loss", (("train_loss", "train"), ("val_loss", "validation"))),
    CurvePanel("mIoU and pixel accuracy", "score", (("val_miou", "validation mIoU"),
                                                    ("train_pixel_acc", "train pixel accuracy"),
                                                    ("val_pixel_acc", "validation pixel accuracy")),
               unit_range=True, colours=("tab:red", "tab:blue", "tab:orange")),
    CurvePanel("per-class IoU (validation)", "IoU", tuple(zip(IOU_COLUMNS, SCORED)), unit_range=True,
               colours=tuple(tuple(c / 255) for c in CLASS_COLOURS[:SCORED_CLASSES]), dark=True),
]


def role(run: RunFolder) -> str:
    """Return ``fcn32s`` for the course's model A, ``improved`` for any other network."""
    return "fcn32s" if run.model_name == "fcn32s" else "improved"


def validation_scores(run: RunFolder) -> tuple[float | None, list, str]:
    """Return the run's validation mIoU, the IoU of each scored class, and where they come from.

    Returns:
        ``(mIoU, six IoUs, source)``; None for each number the run lacks.
    """
    final = run.summary.final_validation
    if final is not None and final.mean_iou is not None:
        iou = list(final.iou or [])[:SCORED_CLASSES]
        return (final.mean_iou, iou + [None] * (SCORED_CLASSES - len(iou)),
                f"{Path(final.folder).name}, full size, scored once at the end")
    best = run.best_row("val_miou")
    if best is None:
        return None, [None] * SCORED_CLASSES, ""
    where = run.summary.selected_on or "validation"
    return best["val_miou"], [best.get(c) for c in IOU_COLUMNS], f"{where}, best epoch"


def colour_table() -> Table:
    """Return the table of the course's mask colours, and which classes the mIoU counts."""
    rows = [[i, name, Swatch(tuple(int(v) for v in colour)), "yes" if i < SCORED_CLASSES else "no"]
            for i, (name, colour) in enumerate(zip(CLASS_NAMES, CLASS_COLOURS))]
    return Table(["class", "name", "mask colour", "in mIoU"], rows,
                 caption="The course's mask colours, used in every figure of this section")


def progress_blocks(run: RunFolder, ctx: ReportContext) -> list:
    """Return the run's predicted masks through training as one grid figure (none when it kept none)."""
    if not (run.progress / "ground_truth").is_dir():
        return []
    epochs, rows = run.read_progress()
    written = plot_progress(rows, epochs, ctx.scratch / f"{run.name}_masks_through_training")
    png = next(p for p in written if p.suffix == ".png")
    return [Figure(ctx.copy_figure(png, run, "masks_through_training"),
                   f"Predicted masks of {run.name} for the chosen validation images at the first, middle and "
                   "last epoch, beside the ground truth (mask colours as in the table above).")]


def build(runs: list[RunFolder], ctx: ReportContext) -> Section | None:
    """Build the segmentation section from every segmentation run (FCN32s first); None without one."""
    mine = [r for r in runs if r.task == "segment"]
    if not mine:
        return None
    mine.sort(key=lambda r: (role(r) != "fcn32s", r.name))
    section = Section("Semantic segmentation", "segmentation")
    rows = []
    for run in mine:
        miou, iou, source = validation_scores(run)
        rows.append([run.name, group("segmentation", role(run))["title"], run.model_name,
                     run.summary.epochs or run.metrics[-1]["epoch"], miou, *iou, source,
                     "not comparable (synthetic data)" if run.synthetic else range_text("segmentation", role(run))])
    section.blocks += about("accuracy", [
        colour_table(),
        Table(["run", "role", "model", "epochs", "mIoU", *SCORED, "measured on", "course reports (range)"], rows,
              caption="mIoU (classes 0-5 from one pooled confusion matrix, as the course grades it) and per-class IoU"),
        Text("The course's numbers are on its 257 validation tiles; a run on synthetic data (such as the "
             "demo's) is never set beside them.", note=True),
    ])
    course = comparison_table("segmentation", ("fcn32s", "improved"), [r for r in mine if not r.synthetic], role,
                              lambda run: validation_scores(run)[0], "mIoU", "Beside the course's reports (mIoU)")
    section.blocks += about("accuracy", [course])
    for run in mine:
        ctx.print_line(f"  segmentation: {run.name}")
        section.blocks += run_blocks(run, ctx, group("segmentation", role(run))["title"], PANELS, "val_miou",
                                     "loss (training blue, validation orange), mIoU and pixel accuracy, and each "
                                     "class's validation IoU in its mask colour", role(run))
        section.blocks += about("masks", progress_blocks(run, ctx))
    return section
