"""The report's Problem 1 section: image classification by model A and model B.

It shows the accuracies beside the course's, recipes, architectures, curves, confusion matrices, and PCA / t-SNE of
the second-last layer through training.
"""

from __future__ import annotations

from pathlib import Path

from dlcv.models.registry import WEIGHT_ARGS
from dlcv.report.blocks import ReportContext, embedding_figures, run_blocks
from dlcv.report.document import Figure, Heading, Section, Table, about
from dlcv.report.published import comparison_table, group, range_text
from dlcv.report.sections.ssl import table_folder
from dlcv.runs import RunFolder
from dlcv.viz.confusion import plot_confusion
from dlcv.viz.curves import CurvePanel

COURSE_CLASSES = 50  # the course's numbers are on its 50-class validation set

PANELS = [
    CurvePanel("loss", "cross-entropy", (("train_loss", "train"), ("val_loss", "validation"))),
    CurvePanel("accuracy", "accuracy", (("train_acc", "train"), ("val_acc", "validation")), unit_range=True),
]


def role(run: RunFolder) -> str:
    """Return ``model_b`` for a network starting from pretrained weights, ``model_a`` for one from scratch."""
    args = run.recipe.model.args
    return "model_b" if any(args.get(k) for k in WEIGHT_ARGS) else "model_a"


def validation_accuracy(run: RunFolder) -> tuple[float | None, str]:
    """Return the run's accuracy on the validation folder and where it comes from; ``(None, "")`` without one."""
    final, summary = run.summary.final_validation, run.summary
    if final is not None and final.accuracy is not None:
        return final.accuracy, f"{Path(final.folder).name}, scored once at the end"
    if summary.selection_score is not None:
        return summary.selection_score, f"{summary.selected_on or 'validation'}, best epoch"
    best = run.best_row("val_acc")
    return (best["val_acc"], "metrics.csv, best epoch (run unfinished)") if best else (None, "")


def confusion_blocks(run: RunFolder, ctx: ReportContext) -> list:
    """Return the run's confusion matrix on its validation images as a figure block (none when it wrote none)."""
    matrix = run.read_confusion()
    if matrix is None:
        return []
    target = ctx.figure_path(run, "confusion")
    plot_confusion(matrix, target, title=f"{run.name}: confusion matrix")
    return [Figure(target, f"Confusion matrix of {run.name}'s best checkpoint on its validation images "
                           f"({int(matrix.sum())} images; rows are the true classes, normalised to recall).")]


def embedding_blocks(run: RunFolder, ctx: ReportContext) -> list:
    """Return PCA and t-SNE of the run's snapshots with their 10-NN accuracy and silhouette (none without)."""
    if not any((run.path / "embeddings").glob("epoch_*.npz")):
        return []
    folder, metrics = embedding_figures(run, ctx, "pca,tsne")
    rows = [[m["snapshot"], int(m["epoch"]) if m["epoch"] else None, int(m["points"]), int(m["dims"]),
             float(m["knn_acc"]), float(m["silhouette"])] for m in metrics]
    blocks = [Heading(f"Learned representation of {run.name}", 4, topic="pca"),
              Table(["snapshot", "epoch", "images", "dimensions", "10-NN accuracy", "silhouette"], rows,
                    caption="The second-last layer's features on the validation images: leave-one-out 10-NN "
                            "accuracy and silhouette score (both cosine), in the original feature space",
                    topic="pca")]
    for name, what in (("pca_panels.png", "PCA"), ("tsne_panels.png", "t-SNE")):
        blocks.append(Figure(ctx.copy_figure(folder / name, run, name[:-4]),
                             f"{what} of {run.name}'s second-last layer at the first, middle and last epoch "
                             "(colour = class; panels aligned so that they can be compared).", topic=name[:4]))
    if (folder / "embedding_metrics.png").is_file():
        blocks.append(Figure(ctx.copy_figure(folder / "embedding_metrics.png", run, "embedding_metrics"),
                             "10-NN accuracy and silhouette over the snapshot epochs.", topic="pca"))
    return blocks


def comparable(run: RunFolder) -> bool:
    """Whether the run may stand beside the course's numbers: 50 classes, and not synthetic data."""
    return run.num_classes == COURSE_CLASSES and not run.synthetic


def _accuracy_rows(runs: list[RunFolder]) -> list[list]:
    rows = []
    for run in runs:
        accuracy, source = validation_accuracy(run)
        final = run.summary.final_validation
        rows.append([run.name, group("classification", role(run))["title"], run.model_name,
                     run.summary.epochs or run.metrics[-1]["epoch"], run.summary.selection_score,
                     accuracy, final.top5_accuracy if final is not None else None, source,
                     range_text("classification", role(run)) if comparable(run)
                     else "not comparable (synthetic data)" if run.synthetic
                     else f"not comparable ({run.num_classes} classes, not the course's {COURSE_CLASSES})"])
    return rows


def build(runs: list[RunFolder], ctx: ReportContext) -> Section | None:
    """Build Problem 1's section from every classification run but an A-E table's; None without one."""
    # The fine-tuning runs of a dlcv ssl table belong to the self-supervised section.
    mine = [r for r in runs if r.task == "classify" and table_folder(r) is None]
    if not mine:
        return None
    mine.sort(key=lambda r: (role(r), r.name))
    section = Section("Problem 1: image classification", "classification")
    section.blocks += about("accuracy", [
        Table(["run", "role", "model", "epochs", "selection accuracy", "validation accuracy", "validation top-5",
               "measured on", "course reports (range)"], _accuracy_rows(mine),
              caption="Accuracy of each run's best checkpoint: selection accuracy on the split it was chosen on "
                      "(a holdout of train_50, or the validation folder), validation accuracy on the validation "
                      "folder; the course's numbers are on its 50-class validation set"),
    ])
    course = comparison_table("classification", ("model_a", "model_b"), [r for r in mine if comparable(r)], role,
                              lambda run: validation_accuracy(run)[0], "accuracy",
                              "Beside the course's reports (validation accuracy, 50 classes)")
    if course.marked:
        section.blocks += about("accuracy", [course])
    for run in mine:
        ctx.print_line(f"  Problem 1: {run.name}")
        section.blocks += run_blocks(run, ctx, group("classification", role(run))["title"], PANELS, "val_acc",
                                     "loss and accuracy, training (blue) and validation (orange)", role(run))
        section.blocks += about("accuracy", confusion_blocks(run, ctx))
        section.blocks += embedding_blocks(run, ctx)
    return section
