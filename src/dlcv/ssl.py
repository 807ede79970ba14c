"""Self-supervised pre-training (BYOL) and the transfer settings A-E, as the command line runs them.

``pretrain`` runs BYOL and exports the trunk as a torchvision ResNet state_dict like ``pretrain_model_SL.pt``;
``finetune`` trains a setting A-E on Office-Home; ``predict`` labels an Office-Home CSV. ``dlcv.ssl_table`` runs them
all from one recipe.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dlcv import fitting
from dlcv.classify import fit, load_classifier, predict_scores
from dlcv.config import load_recipe
from dlcv.data.images import load_resized_stack
from dlcv.errors import DlcvError
from dlcv.io import check_output_file, record_output_file
from dlcv.recipes import SSL_SETTINGS, ByolRecipe, FinetuneRecipe
from dlcv.runs import RunFolder


# --- pre-training -----------------------------------------------------------------------------------------
def pretrain(config: str | os.PathLike | None, data: str | os.PathLike, monitor: str | os.PathLike | None = None,
             runs_dir: str | os.PathLike = "runs", name: str | None = None, overrides: tuple[str, ...] = (),
             overwrite: bool = False, resume: bool = False) -> Path:
    """Pre-train a ResNet trunk on ``data`` with BYOL (Grill et al., 2020); return the run folder.

    The run folder gets ``recipe.yaml``, ``metrics.csv``, ``last.ckpt`` / ``best.ckpt``, ``backbone.pt`` (the last
    epoch's online trunk), ``knn_at_init.json``, ``knn_curve.{png,pdf}`` and ``summary.json``.

    Args:
        config: a BYOL recipe file, or None for the defaults.
        data: the folder of unlabelled images.
        monitor: a labelled folder (Office-Home or p1 layout) for the kNN accuracy per epoch; None: no monitor.
        runs_dir: the folder that holds the runs.
        name: the run's name, in place of the recipe's.
        overrides: ``--set KEY=VALUE`` items.
        overwrite: replace an earlier run of that name (``--overwrite``).
        resume: continue the run of that name from its last checkpoint.

    Raises:
        DlcvError: no such ``monitor`` folder, or the recipe, the data or the run folder is refused.
    """
    if monitor is not None and not Path(monitor).is_dir():
        raise DlcvError(f"{monitor}: no such folder for the kNN monitor")
    unmonitored = {"limit_val_batches": 0}  # no validation loop at all
    with fitting.run(ByolRecipe, config, data, runs_dir, name, overrides, overwrite, resume, inputs=(monitor,)) as run:
        from dlcv.data.unlabelled import UnlabelledImages  # torch and Lightning: their import is budgeted
        from dlcv.tasks.byol import BYOLTask, KnnAtInit

        recipe = run.recipe
        datamodule = run.prepared(UnlabelledImages(data, recipe.data, recipe.views, recipe.seed, monitor,
                                                   recipe.monitor.max_bank, run.plan))
        task = BYOLTask.from_recipe(recipe, run.plan, monitored=datamodule.monitor is not None)
        callbacks = [KnnAtInit(RunFolder(run.dir).knn_at_init, datamodule)]
        return run.fit(datamodule, task, callbacks, **({} if monitor is not None else unmonitored))


# --- fine-tuning ------------------------------------------------------------------------------------------
SETTING_KEYS = ("model.args.backbone_weights", "model.args.freeze")  # all that differs between the settings


def setting_recipe(recipe, setting: str, backbone: str | os.PathLike | None):
    """A copy of ``recipe`` for setting ``setting`` (A-E): its backbone file and frozen trunk or not.

    Raises:
        DlcvError: an unknown setting; a backbone given to setting A (random weights) or missing for another; or no
            such backbone file.
    """
    if setting not in SSL_SETTINGS:
        raise DlcvError(f"--setting {setting!r}: choose one of {', '.join(SSL_SETTINGS)}")
    pretraining, tuning = SSL_SETTINGS[setting]
    if pretraining == "none" and backbone is not None:
        raise DlcvError(f"setting {setting} trains from random weights; give no --backbone")
    if pretraining != "none":
        if backbone is None:
            raise DlcvError(f"setting {setting} starts from a {pretraining.replace('_', '-')} backbone: "
                            "give --backbone FILE")
        if not Path(backbone).is_file():
            raise DlcvError(f"{backbone}: no such backbone file")
    recipe = recipe.model_copy(deep=True)
    recipe.model.args = {**recipe.model.args,
                         "backbone_weights": None if backbone is None else str(Path(backbone).resolve()),
                         "freeze": tuning == "frozen"}
    return recipe


def finetune(setting: str, data: str | os.PathLike, backbone: str | os.PathLike | None = None,
             config=None, runs_dir: str | os.PathLike = "runs", name: str | None = None,
             overrides: tuple[str, ...] = (), overwrite: bool = False, resume: bool = False) -> Path:
    """Fine-tune setting A-E on the Office-Home folder ``data``; return its classification run folder.

    Args:
        setting: the setting, A-E in any case.
        data: the Office-Home folder.
        backbone: the pre-trained trunk's file; None for setting A (random weights).
        config: a recipe file, a ``FinetuneRecipe`` already built (``ssl table``'s), or None for the defaults.
        runs_dir: the folder that holds the runs.
        name: the run's name; None: the recipe's, or ``finetune_<setting>`` with the defaults.
        overrides: ``--set KEY=VALUE`` items.
        overwrite: replace an earlier run of that name (``--overwrite``).
        resume: continue the run of that name from its last checkpoint.

    Raises:
        DlcvError: as ``setting_recipe``; a backbone of another architecture; or as ``classify.fit``.
    """
    from dlcv.models.transfer import load_backbone, transfer_arch

    setting = setting.upper()
    base = config if isinstance(config, FinetuneRecipe) else load_recipe(FinetuneRecipe, config, overrides)
    recipe = setting_recipe(base, setting, backbone)
    if name is None and config is None:
        name = f"finetune_{setting}"
    if backbone is not None and not resume:  # a file of another architecture fails before any work
        load_backbone(backbone, transfer_arch(recipe.model))
    return fit(recipe, data, runs_dir=runs_dir, name=name, overrides=overrides, overwrite=overwrite, resume=resume,
               recipe_type=FinetuneRecipe, caller_keys=SETTING_KEYS)


def export(checkpoint: str | os.PathLike, output: str | os.PathLike, overwrite: bool = False) -> Path:
    """``dlcv ssl export``: ``export_trunk`` into a named file (``overwrite``: replace one dlcv did not write)."""
    written = export_trunk(checkpoint, check_output_file(output, overwrite, inputs=(checkpoint,)))
    record_output_file(written)
    return written


def export_trunk(checkpoint: str | os.PathLike, output: Path) -> Path:
    """Write a ``resnet_transfer`` checkpoint's trunk to ``output`` as a torchvision state_dict; return it.

    Raises:
        DlcvError: the checkpoint is unreadable, or its model is not a ``resnet_transfer``.
    """
    from dlcv.models.transfer import TransferResNet, export_backbone

    model, recipe = load_classifier(checkpoint)
    if not isinstance(model, TransferResNet):
        raise DlcvError(f"{checkpoint}: a {recipe.model.name!r} model; only resnet_transfer checkpoints "
                        "hold a torchvision ResNet trunk to export")
    return export_backbone(model.backbone, model.arch, output, seed=recipe.seed)


# --- prediction -------------------------------------------------------------------------------------------
def predict(checkpoint: str | os.PathLike, csv_path: str | os.PathLike, images: str | os.PathLike,
            output: str | os.PathLike, tta: str | None = None, overwrite: bool = False, autocast: bool = False) -> int:
    """Write ``id,filename,label`` for every row of an Office-Home CSV, in its order; return the row count.

    Args:
        checkpoint: a dlcv classification checkpoint (a fine-tuned setting).
        csv_path: the Office-Home CSV (``id,filename[,label]``; its labels may be empty).
        images: the folder of the images it names.
        output: the CSV file to write.
        tta: test-time augmentation in place of the recipe's.
        overwrite: replace an output file that dlcv did not write (``--overwrite``).
        autocast: predict under the autocast of the model's training precision (``inference_batches``); else
            float32.

    Raises:
        DlcvError: the output is refused, the CSV or an image it names is unreadable or outside ``images``, or the
            checkpoint is unreadable.
    """
    from dlcv.data.office import read_office_csv, write_office_csv

    output = check_output_file(output, overwrite, inputs=(csv_path, images, checkpoint))
    rows = read_office_csv(csv_path, images)
    model, recipe = load_classifier(checkpoint)
    array = np.asarray(load_resized_stack(rows.files, recipe.data.image_size, use_cache=False))
    labels = predict_scores(model, array, recipe, tta=tta, where=str(images), autocast=autocast).argmax(1).numpy()
    write_office_csv(output, zip(rows.ids, rows.filenames, (int(v) for v in labels)))
    record_output_file(output)
    return len(rows.ids)
