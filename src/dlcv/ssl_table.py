"""``ssl table``: run the pre-training and settings A-E from one recipe, and tabulate their accuracies.

The runs are run (or reused) in one folder, which also gets the table: ``table.md``, ``table.csv`` and ``table.json``.
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

from dlcv.classify import fit
from dlcv.config import load_recipe
from dlcv.errors import DlcvError
from dlcv.files import atomic_write
from dlcv.fitting import rank_zero_print
from dlcv.io import FolderLock, check_output_folder, make_output_folder, write_json
from dlcv.models.transfer import transfer_arch
from dlcv.recipes import (
    SSL_SETTINGS,
    ByolRecipe,
    ClassifyRecipe,
    FinetuneRecipe,
    TableRecipe,
    format_duration,
    parse_duration,
)
from dlcv.runs import RunFolder
from dlcv.runtime import barrier, is_primary_process
from dlcv.ssl import export_trunk, finetune, pretrain

TABLE_KIND = "table of settings A-E"  # the manifest kind of a table's folder (dlcv.io)
TABLE_NOTES = {
    "full": "whole model trained",
    "frozen": ("trunk frozen: no gradient, and its batch norm stays in evaluation mode, so the pre-training "
               "running statistics normalise the new images; only the head learns"),
}
FROZEN_NOTE = (
    "Frozen settings (D, E) use the trunk exactly as pre-training left it: parameters get no gradient and "
    "batch-norm layers are kept in evaluation mode, so their running statistics are never updated by the new "
    "data. A frozen trunk whose batch norm is left in training mode instead normalises each fine-tuning batch "
    "by its own statistics and, through the momentum, drifts the running statistics towards them, while "
    "evaluation uses the drifted ones: features at training and at test time differ, which is a likely "
    "cause of a report's unexplained low D. Here D and E measure the pre-trained features as they are.")


def _relative(base: Path, value: str | None) -> Path | None:
    """``value`` below ``base``, or as it is when absolute (pathlib's join keeps an absolute right side)."""
    return None if value is None else base / value


def table(config: str | os.PathLike, data: str | os.PathLike | None, runs_dir: str | os.PathLike = "runs",
          name: str | None = None, overrides: tuple[str, ...] = ()) -> Path:
    """Run (or reuse) the pre-training and each setting's fine-tuning, then write the table of accuracies.

    The table goes into ``runs_dir/NAME/`` as ``table.md``, ``table.csv`` and ``table.json``. Settings differ only in
    backbone and freezing; a run folder with a ``summary.json`` is reused, one with a ``last.ckpt`` resumed, anything
    else started afresh.

    Args:
        config: the table's recipe file, whose ``pretrain``, ``supervised`` and ``finetune`` recipes are read
            relative to it.
        data: the folder the recipe's data folders lie in; None: its ``data.root``.
        runs_dir: the folder that holds the table's folder.
        name: the table's name, in place of the recipe's.
        overrides: ``--set KEY=VALUE`` items.

    Returns:
        the table's folder.

    Raises:
        DlcvError: no such settings file or data folder; a recipe that is invalid or trains another architecture; a
            table folder refused or being written by another process; or as the runs' commands (``pretrain``,
            ``classify.fit``, ``finetune``).
    """
    start = time.perf_counter()
    recipe, config, data = _table_recipe(config, data, name, overrides)
    pretrain_recipe, supervised_recipe, finetune_recipe = (_relative(config.parent, getattr(recipe, key))
                                                           for key in ("pretrain", "supervised", "finetune"))
    office = data / recipe.data.office
    tuning = _tuning_recipe(finetune_recipe, pretrain_recipe, supervised_recipe)
    table_dir = Path(runs_dir) / str(recipe.name)
    with FolderLock(table_dir, what="table") as lock:  # one process fills a table folder at a time
        lock.take()
        # An earlier table's folder is filled on (its runs reused or resumed); any other folder of files is refused.
        if is_primary_process():  # in a multi-process run only the first process writes (the others read after)
            check_output_folder(table_dir, TABLE_KIND, inputs=(data, config), need_parent=False,
                                replaces_same_kind=True)
            lock.take(create=True)
            make_output_folder(table_dir, TABLE_KIND)
            RunFolder(table_dir).write_recipe(recipe)
        needs = {SSL_SETTINGS[s][0] for s in recipe.settings}
        clock = TableClock(recipe, needs, start)

        backbones: dict[str, Path | None] = {"none": None}
        if "self_supervised" in needs:
            monitor = data / recipe.data.monitor if recipe.data.monitor else office
            backbones["self_supervised"] = _relative(data, recipe.backbones.self_supervised) or \
                _byol_backbone(table_dir, pretrain_recipe, data / recipe.data.mini, monitor, clock)
        if "supervised" in needs:
            backbones["supervised"] = _relative(data, recipe.backbones.supervised) or \
                _supervised_backbone(table_dir, supervised_recipe, data / recipe.data.supervised, clock)
        rows = [_setting(setting, table_dir, office, backbones, tuning, clock) for setting in recipe.settings]
        result = {"name": recipe.name, "arch": tuning.model.args["arch"], "rows": rows, "note": FROZEN_NOTE,
                  "seconds": round(time.perf_counter() - start, 1)}
        if is_primary_process():
            write_table(table_dir, result)
        barrier()
        return table_dir


def _setting(setting: str, table_dir: Path, office: Path, backbones: dict, base, clock: TableClock) -> dict:
    """Fine-tune ``setting`` from its backbone with recipe ``base`` (or reuse its finished run); return its row."""
    pretraining, tuning = SSL_SETTINGS[setting]
    run_dir = table_dir / setting
    if RunFolder(run_dir).finished:
        clock.skip(setting)
        rank_zero_print(f"setting {setting}: reusing {run_dir}")
    else:
        rank_zero_print(f"setting {setting}: {pretraining.replace('_', '-')} pre-training, {tuning} fine-tuning")
        finetune(setting, office, backbones[pretraining], base, runs_dir=table_dir, name=setting,
                 overrides=clock.budget(setting), **_resume_or_restart(run_dir))
    return _table_row(setting, pretraining, tuning, run_dir, backbones[pretraining])


def _table_recipe(config: str | os.PathLike | None, data: str | os.PathLike | None, name: str | None,
                  overrides: tuple[str, ...]) -> tuple:
    """``(recipe, settings file, data folder)`` of a table, checked."""
    if config is None or not Path(config).is_file():
        raise DlcvError(f"{config}: no such settings file")
    config = Path(config)
    recipe = load_recipe(TableRecipe, config, overrides)
    if name:
        recipe.name = name
    if data is None and recipe.data.root is None:
        raise DlcvError(f"{config}: no data folder: give --data or set data.root")
    data = Path(data if data is not None else recipe.data.root)
    if not data.is_dir():
        raise DlcvError(f"{data}: no such data folder")
    return recipe, config, data


def _table_row(setting: str, pretraining: str, tuning: str, run_dir: Path, backbone: Path | None) -> dict:
    """The table's row of a finished setting, from its run's ``summary.json``."""
    summary = RunFolder(run_dir).read_summary()
    final = summary.final_validation
    return {
        "setting": setting,
        "pretraining": pretraining.replace("_", "-"),
        "finetuning": tuning,
        "accuracy": final.accuracy if final else summary.selection_score,
        "scored_on": final.folder if final else summary.selected_on,
        "selection_accuracy": summary.selection_score,
        "selected_on": summary.selected_on,
        "epochs": summary.epochs,
        "fit_seconds": summary.fit_seconds,
        "backbone": str(backbone) if backbone is not None else None,
        "run": str(run_dir),
        "notes": TABLE_NOTES[tuning],
    }


def _tuning_recipe(finetune_recipe: Path | None, pretrain_recipe: Path | None, supervised_recipe: Path | None):
    """The fine-tuning recipe every setting starts from, with ``model.args.arch`` made explicit.

    The pre-training recipes must train that architecture, or their backbones could not be loaded.
    """
    tuning = load_recipe(FinetuneRecipe, finetune_recipe)
    arch = transfer_arch(tuning.model)
    if pretrain_recipe is not None:
        other = load_recipe(ByolRecipe, pretrain_recipe).model.arch
        if other != arch:
            raise DlcvError(f"{pretrain_recipe}: pre-trains a {other} but {finetune_recipe} fine-tunes a {arch}")
    if supervised_recipe is not None:
        model = load_recipe(ClassifyRecipe, supervised_recipe).model
        other = transfer_arch(model)
        if model.name != "resnet_transfer" or other != arch:
            raise DlcvError(f"{supervised_recipe}: the supervised backbone must be a resnet_transfer {arch}, "
                            f"got {model.name} {other}")
    tuning.model.args = {**tuning.model.args, "arch": arch}  # the default made explicit, as the runs record it
    return tuning


class TableClock:
    """How ``ssl table`` shares its time ``budget`` among its runs.

    Each run gets, as it starts, its share of the time left over the shares still to train (BYOL's, the supervised
    backbone's, the settings' split evenly); reused runs and backbones given as files take none.

    Args:
        recipe: the table's recipe (its ``budget``, ``shares``, ``settings`` and ``backbones``).
        needs: the pre-trainings the settings need (``none``, ``supervised``, ``self_supervised``).
        start: when the command started, in ``time.perf_counter`` seconds.
    """

    TAIL = 2.0  # seconds for writing the table after the last run

    def __init__(self, recipe, needs: set[str], start: float):
        self.deadline = start + parse_duration(recipe.budget) - self.TAIL if recipe.budget else None
        self.shares: dict[str, float] = {}
        for part, pretraining in (("byol", "self_supervised"), ("supervised", "supervised")):
            if pretraining in needs and not getattr(recipe.backbones, pretraining):
                self.shares[part] = getattr(recipe.shares, part)
        self.shares.update(dict.fromkeys(recipe.settings, recipe.shares.settings / len(recipe.settings)))

    def skip(self, part: str) -> None:
        """Take run ``part`` out of the sharing: it is reused and trains no more."""
        self.shares.pop(part, None)

    def budget(self, part: str) -> tuple[str, ...]:
        """The override giving run ``part`` its budget (none when the table has no budget)."""
        share = self.shares.pop(part, 0.0)
        if self.deadline is None:
            return ()
        rest = share + sum(self.shares.values())
        seconds = (self.deadline - time.perf_counter()) * (share / rest if rest > 0 else 1.0)
        return (f"train.budget={format_duration(max(1.0, seconds))}",)


def _byol_backbone(table_dir: Path, pretrain_recipe: Path | None, mini: Path, monitor: Path,
                   clock: TableClock) -> Path:
    """The trunk file of the table's ``byol`` run, pre-trained (or resumed) unless it finished."""
    if pretrain_recipe is None:
        raise DlcvError("the settings need a self-supervised backbone: set pretrain (a BYOL recipe) or "
                        "backbones.self_supervised (a file)")
    run_dir = table_dir / "byol"
    run = RunFolder(run_dir)
    backbone = run.backbone
    if run.finished and backbone.is_file():
        clock.skip("byol")
        rank_zero_print(f"self-supervised backbone: reusing {backbone}")
    else:
        pretrain(pretrain_recipe, mini, monitor=monitor, runs_dir=table_dir, name="byol",
                 overrides=clock.budget("byol"), **_resume_or_restart(run_dir))
    return backbone


def _resume_or_restart(run_dir: Path) -> dict:
    """How a table (re)runs one of its unfinished runs: resumed from its last checkpoint, else started afresh."""
    resumable = RunFolder(run_dir).resumable
    return {"overwrite": not resumable, "resume": resumable}


def _supervised_backbone(table_dir: Path, supervised_recipe: Path | None, folder: Path, clock: TableClock) -> Path:
    """The trunk file of the table's ``supervised`` run, trained (or resumed) unless it finished."""
    if supervised_recipe is None:
        raise DlcvError("the settings need a supervised backbone: set supervised (a classify recipe) or "
                        "backbones.supervised (a file such as pretrain_model_SL.pt)")
    run_dir = table_dir / "supervised"
    run = RunFolder(run_dir)
    target = run.backbone
    if not run.finished:
        fit(supervised_recipe, folder, runs_dir=table_dir, name="supervised", overrides=clock.budget("supervised"),
            **_resume_or_restart(run_dir))
    else:
        clock.skip("supervised")
        if target.is_file():
            rank_zero_print(f"supervised backbone: reusing {target}")
            return target
    if is_primary_process():
        export_trunk(run.best, target)  # into the table's own run
    barrier()  # the other processes fine-tune from it next
    return target


def write_table(table_dir: Path, result: dict) -> None:
    """``table.json`` (everything), ``table.csv`` (one row per setting) and ``table.md`` (for reading)."""
    write_json(table_dir / "table.json", result)
    with atomic_write(table_dir / "table.csv", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(result["rows"][0]))  # _table_row's keys, in order
        writer.writeheader()
        writer.writerows(result["rows"])
    lines = [f"# {result['name']}: pre-training and fine-tuning settings ({result['arch']})", "",
             "| setting | pre-training | fine-tuning | accuracy | selection accuracy | epochs | minutes | run |",
             "|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        accuracy = "-" if row["accuracy"] is None else f"{row['accuracy']:.4f}"
        selection = "-" if row["selection_accuracy"] is None else f"{row['selection_accuracy']:.4f}"
        minutes = "-" if row["fit_seconds"] is None else f"{row['fit_seconds'] / 60:.1f}"
        lines.append(f"| {row['setting']} | {row['pretraining']} | {row['finetuning']} | {accuracy} | {selection} "
                     f"| {row['epochs']} | {minutes} | `{row['run']}` |")
    scored = {r["scored_on"] for r in result["rows"]}
    selected = {r["selected_on"] for r in result["rows"]}
    how = (f"Accuracy: of the checkpoint selected on {', '.join(map(str, selected))}, scored once on "
           f"{', '.join(map(str, scored))}. Selection accuracy: on the selection split.")
    lines += ["", how, "", f"Notes: {result['note']}", ""]
    with atomic_write(table_dir / "table.md") as handle:
        handle.write("\n".join(lines))
