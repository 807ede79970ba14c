"""The report's self-supervised section: BYOL pre-training and the five fine-tuning settings A-E.

It shows the BYOL recipe and its kNN monitor curve (runs of ``dlcv ssl pretrain``), and each ``dlcv ssl table``'s
A-E table (``table.json``) beside the course's numbers, with the t-SNE of setting C at its first and last epoch.
"""

from __future__ import annotations

from pathlib import Path

from dlcv.records import SettingsTable
from dlcv.report.blocks import ReportContext, curves_figure, embedding_figures, recipe_table
from dlcv.report.document import Figure, Heading, Section, Table, Text, about
from dlcv.report.published import published
from dlcv.runs import RunFolder
from dlcv.viz.curves import CurvePanel

PRETRAIN_TASK = "ssl_pretrain"
TABLE_FILE = "table.json"  # written by dlcv ssl table beside its settings' run folders
TSNE_SETTING = "C"

PANELS = [
    CurvePanel("BYOL loss", "loss", (("train_loss", "train"),)),
    CurvePanel("kNN monitor", "accuracy", (("knn_acc", "kNN accuracy (monitor.k neighbours, validation)"),),
               unit_range=True),
]


def table_folder(run: RunFolder) -> Path | None:
    """Return the ``dlcv ssl table`` folder the run belongs to (its parent holds table.json), or None."""
    return run.path.parent if (run.path.parent / TABLE_FILE).is_file() else None


def settings_blocks(folder: Path) -> list:
    """Return a ``dlcv ssl table`` folder's A-E table, beside the course reports' unless trained on synthetic data."""
    table = SettingsTable.read(folder / TABLE_FILE)
    course = published()["ssl"]
    synthetic = any(RunFolder(folder / r.setting).synthetic for r in table.rows)
    if synthetic:  # never set beside the course's numbers
        course = {**course, "results": []}
    by_setting = {s: [r["values"][i] for r in course["results"]] for i, s in enumerate(course["settings"])}
    rows = [[row.setting, row.pretraining, row.finetuning, row.accuracy, row.selection_accuracy, row.epochs,
             None if row.fit_seconds is None else round(row.fit_seconds),
             *by_setting.get(row.setting, [None] * len(course["results"])), row.notes] for row in table.rows]
    blocks = [Heading(f"{table.name or folder.name}: the five settings ({table.arch or '?'})", 3),
              Table(["setting", "pre-training", "fine-tuning", "accuracy", "selection accuracy", "epochs", "seconds",
                     *(f"course {r['report']}" for r in course["results"]), "notes"], rows,
                    caption=f"Accuracy of each setting's best checkpoint (from {folder.name}/{TABLE_FILE})" +
                            (" on synthetic data, not comparable with the course's reports" if synthetic else
                             f" beside the course's reports ({course['title']}; ours on this run's data)"))]
    if table.note:
        blocks.append(Text(table.note, note=True))
    return blocks


def tsne_blocks(folder: Path, ctx: ReportContext, runs: list[RunFolder]) -> list:
    """Return the t-SNE of setting C's trunk at its snapshots: of its training subset if kept, else of validation."""
    run = next((r for r in runs if r.path == folder / TSNE_SETTING), None)
    if run is None:
        return []
    training = any((run.path / "embeddings").glob("train_epoch_*.npz"))
    if not training and not any((run.path / "embeddings").glob("epoch_*.npz")):
        return []
    ctx.print_line(f"  t-SNE of setting {TSNE_SETTING} in {folder.name}")
    target, metrics = embedding_figures(run, ctx, "tsne", training_subset=training)
    which = "training-set sample" if training else "validation images"
    figure = ctx.copy_figure(target / "tsne_panels.png", run, f"{folder.name}_tsne")
    rows = [[r["snapshot"], int(r["points"]), float(r["knn_acc"]), float(r["silhouette"])] for r in metrics]
    return [Figure(figure, f"t-SNE of setting {TSNE_SETTING}'s trunk features ({which}) at the snapshot epochs "
                           "(colour = class)."),
            Table(["snapshot", "images", "10-NN accuracy", "silhouette"], rows,
                  caption=f"Setting {TSNE_SETTING}'s features at the same snapshots")]


def build(runs: list[RunFolder], ctx: ReportContext) -> Section | None:
    """Build the self-supervised section: BYOL runs, their curves, the A-E tables and setting C's t-SNE (or None)."""
    pretraining = [r for r in runs if r.task == PRETRAIN_TASK]
    tables = sorted({f for f in (table_folder(r) for r in runs) if f is not None})
    if not pretraining and not tables:
        return None
    section = Section("Self-supervised pre-training and settings A-E", "ssl")
    for run in pretraining:
        ctx.print_line(f"  self-supervised: {run.name}")
        section.blocks += about("recipe:byol", [
            Heading(f"{run.name}: BYOL pre-training", 3), recipe_table(run),
            *curves_figure(run, ctx, PANELS, "knn_acc", "BYOL loss and the kNN monitor's accuracy")])
    for folder in tables:
        section.blocks += about("table", settings_blocks(folder))
        section.blocks += about("tsne", tsne_blocks(folder, ctx, runs))
    return section
