"""Report blocks that several sections share: a run's recipe table, its architecture and its training curves.

Each returns report blocks and writes its figures into the report's ``figures/``.
"""

from __future__ import annotations

import csv
import re
import shutil
from collections.abc import Callable
from dataclasses import astuple, dataclass, field, replace
from pathlib import Path

from dlcv.errors import DlcvError
from dlcv.recipes import number_text
from dlcv.report.architecture import build_for_run
from dlcv.report.document import Figure, Heading, Table, Text, about
from dlcv.runs import RunFolder
from dlcv.viz.architecture import plot_block_diagram
from dlcv.viz.curves import available_panels, plot_curves
from dlcv.viz.snapshots import plot_snapshots

LAYER_TABLE_ROWS = 40  # the deepest view of a model that fits in this many rows
DIAGRAM_BLOCKS = 18  # the deepest view that fits in this many boxes (three rows of six)


@dataclass
class ReportContext:
    """What every section builder gets: where figures go, a scratch folder, and a progress printer."""

    figures: Path
    scratch: Path
    root: Path  # the folder of runs, for sections that read outputs other than runs
    print_line: Callable[..., None] = print
    drawn: dict = field(default_factory=dict)  # figures already made (architecture per model), by key
    labels: dict = field(default_factory=dict)  # run folder -> the name its figures carry, one per folder

    def figure_path(self, run: RunFolder | Path, what: str) -> Path:
        """Return the path of the run's figure ``what`` in the report: ``figures/LABEL_WHAT.png``."""
        return self.figures / f"{self.label(run)}_{_slug(what)}.png"

    def label(self, run: RunFolder | Path) -> str:
        """Return the run's name in its figures' file names, unique in the report.

        It is the folder's name, or, where another run of that name came first (``runs/a/x``, ``runs/b/x``), its path
        below the runs folder; ``-2``, ``-3``... are added while the name is still taken.
        """
        path = Path(getattr(run, "path", run)).resolve()
        if path not in self.labels:
            base = _slug(path.name)
            if base in self.labels.values():
                root = Path(self.root).resolve()
                base = _slug("_".join(path.relative_to(root).parts) if path.is_relative_to(root) else path.name)
            label, n = base, 1
            while label in self.labels.values():
                n += 1
                label = f"{base}-{n}"
            self.labels[path] = label
        return self.labels[path]

    def copy_figure(self, source: Path, run: RunFolder | Path, what: str) -> Path:
        """Copy the image ``source`` into the report as the run's figure ``what``; return its path there."""
        target = self.figure_path(run, what)
        shutil.copyfile(source, target)
        return target


def _slug(text: str) -> str:
    """``text`` as a piece of a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


OPTIMISER_NAMES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "lars": "LARS"}


def describe_optimiser(optim) -> str:
    """Describe the recipe's ``optim`` section in words (``SGD, lr 0.1, momentum 0.9 (Nesterov), ...``)."""
    parts = [f"{OPTIMISER_NAMES[optim.name]}, lr {number_text(optim.lr)}"]
    if optim.name in ("sgd", "lars"):
        parts.append(f"momentum {number_text(optim.momentum)}"
                     + (" (Nesterov)" if optim.nesterov and optim.name == "sgd" else ""))
    else:
        parts.append(f"betas {tuple(optim.betas)}")
    parts.append(f"weight decay {number_text(optim.weight_decay)}")
    return ", ".join(parts)


def describe_schedule(schedule) -> str:
    """Describe the recipe's ``schedule`` section in words."""
    name = schedule.name
    if name == "onecycle":
        text = (f"one-cycle: from lr/{number_text(schedule.div_factor)} up to lr over the first "
                f"{schedule.pct_start:.0%} of steps, then {schedule.anneal} down to "
                f"lr/{number_text(schedule.div_factor * schedule.final_div_factor)}")
    elif name == "multistep":
        marks = schedule.milestones
        where = "shares of the run" if marks and all(m < 1 for m in marks) else "epochs"
        text = f"multistep at {where} {marks}, gamma {number_text(schedule.gamma)}"
    elif name == "cosine_restarts":
        text = (f"cosine with warm restarts, first period {schedule.restart_epochs} epochs, "
                f"each next x{schedule.restart_mult}")
    elif name == "poly":
        text = f"poly, power {number_text(schedule.power)}"
    else:
        text = name
    if schedule.warmup_epochs and name != "onecycle":
        text += f", {number_text(schedule.warmup_epochs)} warm-up epochs"
    return text


def selection(run: RunFolder) -> str:
    """Say what the run's best checkpoint was chosen on."""
    if "knn_acc" in run.metrics[-1]:
        return "the kNN monitor's accuracy (knn_acc)"
    return run.summary.selected_on or run.recipe.unmonitored_selection()


def recipe_table(run: RunFolder) -> Table:
    """Return the run's resolved recipe as a table: model, optimiser, schedule, augmentation, epochs, stopping."""
    recipe = run.recipe
    train, patience = recipe.train, recipe.train.early_stopping_patience
    ran = run.summary.epochs or run.metrics[-1]["epoch"]
    rows = [
        ["model", recipe.model_words()],
        ["optimiser", describe_optimiser(recipe.optim)],
        ["schedule", describe_schedule(recipe.schedule)],
        ["loss", recipe.loss_words()],
        ["augmentation", recipe.augmentation_words()],
        ["batch size", str(recipe.data.batch_size)],
        ["epochs", f"{ran} trained in a budget of {train.budget} (planned from the measured speed)"
         if train.budget else f"{train.epochs} planned, {ran} trained"],
        ["early stopping", f"patience {patience} epochs" if patience else "none (best epoch kept)"],
        ["checkpoint selected on", selection(run)],
    ]
    if train.ema_decay > 0:
        rows.append(["weight averaging", f"EMA, decay {number_text(train.ema_decay)}"])
    tta = recipe.test_time_augmentation()
    if tta is not None:
        rows.append(["test-time augmentation", tta])
    rows.append(["precision", str(run.precision)])
    if run.summary.fit_seconds is not None:
        rows.append(["training time", f"{run.summary.fit_seconds / 60:.1f} min"])
    return Table(["recipe key", "value"], rows, caption=f"Recipe of {run.name} (from {run.path.name}/recipe.yaml)")


def architecture_blocks(run: RunFolder, ctx: ReportContext) -> list:
    """Return a heading, a block diagram and a layer table of the run's model, drawn once per model and arguments.

    A model drawn before gets a note naming the run it was drawn for; one that cannot be built, a note saying why.
    """
    recipe, name = run.recipe, run.model_name
    key = repr((recipe.task, recipe.model.model_dump(), run.num_classes, recipe.input_side()))
    heading = Heading(f"Architecture of {run.name}", 4)
    if key in ctx.drawn:
        return [heading, Text(f"The same network as {ctx.drawn[key]} above.", note=True)]
    try:
        model, described, trace = build_for_run(recipe, run.num_classes)
    except DlcvError as exc:
        return [heading, Text(f"Not drawn: {exc}", note=True)]
    ctx.drawn[key] = run.name
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    diagram = plot_block_diagram([astuple(b) for b in trace.view(DIAGRAM_BLOCKS) if b.output_shape != "-"],
                                 f"{name}: input {described}, output {trace.output}, {total:,} parameters",
                                 ctx.figure_path(run, "architecture").with_suffix(""))[0]
    rows = [list(astuple(layer)) for layer in trace.view(LAYER_TABLE_ROWS)]
    rows.append(["total", "", trace.output, total])
    caption = (f"Layers of {name} for one {described} input (output shape per sample; "
               f"{trainable:,} of {total:,} parameters trainable)")
    return [heading, Figure(diagram, f"Block diagram of {name}: its main blocks in call order, each with its output "
                                     "shape."),
            Table(["layer", "type", "output shape", "parameters"], rows, caption=caption)]


def split_labels(panels: list, run: RunFolder) -> list:
    """``panels`` with "validation" in their labels said as "holdout" where the run chose its checkpoint on one."""
    if not (run.summary.selected_on or "").startswith("holdout"):
        return panels
    return [replace(p, title=p.title.replace("validation", "holdout"),
                    columns=tuple((c, label.replace("validation", "holdout")) for c, label in p.columns))
            for p in panels]


def curves_figure(run: RunFolder, ctx: ReportContext, panels, monitor: str, caption: str) -> list:
    """Draw the run's training curves and return them as a figure block; none when no panel has data.

    Args:
        run: the run.
        ctx: the report's context.
        panels: the ``CurvePanel`` panels, each drawn when the run's metrics have any of its columns.
        monitor: the metric whose best epoch is marked.
        caption: what the curves show, for the figure's caption.
    """
    shown = split_labels(available_panels(run.metrics, panels), run)
    if not shown:
        return []
    best = run.best_row(monitor)
    path = plot_curves(run.metrics, shown, f"{run.name}: training curves",
                       ctx.figure_path(run, "curves").with_suffix(""), best_epoch=best["epoch"] if best else None)[0]
    return [Figure(path, f"{run.name} per epoch: {caption} (dotted: the epoch of the best checkpoint, by {monitor}).")]


def run_blocks(run: RunFolder, ctx: ReportContext, title: str, panels, monitor: str, caption: str,
               role: str = "") -> list:
    """Return what a problem's section shows first of each run: heading, recipe, unfinished note, architecture, curves.

    Args:
        run: the run.
        ctx: the report's context.
        title: the run's role (e.g. model A), shown in its heading.
        panels: the curves' panels, as ``curves_figure`` takes them.
        monitor: the metric whose best epoch the curves mark.
        caption: what the curves show.
        role: the run's role (``model_a``, ``fcn32s``...): its blocks show ``recipe:ROLE`` and
            ``architecture:ROLE`` (``document.about``).
    """
    blocks = [Heading(f"{run.name} ({title})", 3), recipe_table(run)]
    if not run.finished:
        blocks.append(Text("This run has no summary.json: it is unfinished or was interrupted.", note=True))
    return [*about(f"recipe:{role}", blocks), *about(f"architecture:{role}", architecture_blocks(run, ctx)),
            *about(f"recipe:{role}", [Heading(f"Training of {run.name}", 4),
                                      *curves_figure(run, ctx, panels, monitor, caption)])]


def embedding_figures(run: RunFolder, ctx: ReportContext, methods: str,
                      training_subset: bool = False) -> tuple[Path, list[dict]]:
    """Return the folder of the run's embedding figures and the rows of its ``embedding_metrics.csv``.

    The run's own ``figures/`` serves when ``dlcv embed plot`` drew them after its last snapshot; otherwise (always for
    the training subset) they are drawn into a scratch folder.

    Args:
        run: a run that kept embedding snapshots (the callers check that it did).
        ctx: the report's context.
        methods: ``pca``, ``tsne`` or both, comma-separated; each needs its ``{method}_panels.png``.
        training_subset: the snapshots of the training subset instead of the validation images'.

    Returns:
        ``(folder, rows)``: the folder holding ``embedding_metrics.csv`` and the panels, and the CSV's rows.
    """
    pattern = "train_epoch_*.npz" if training_subset else "epoch_*.npz"
    snapshots = list((run.path / "embeddings").glob(pattern))
    folder = run.path / "figures"
    newest = max(p.stat().st_mtime for p in snapshots)
    wanted = ["embedding_metrics.csv", *(f"{m}_panels.png" for m in methods.split(","))]
    if training_subset or not all((folder / f).is_file() and (folder / f).stat().st_mtime >= newest for f in wanted):
        ctx.print_line(f"  drawing {methods.replace(',', ' and ')} of {run.name}'s {len(snapshots)} snapshots")
        folder = ctx.scratch / f"{run.name}_{'train_' if training_subset else ''}embedding"
        plot_snapshots([run.path], methods=methods, output=folder, training_subset=training_subset)
    with open(folder / "embedding_metrics.csv", newline="") as handle:
        return folder, list(csv.DictReader(handle))
