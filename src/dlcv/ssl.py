"""Self-supervised pre-training and the five transfer settings, as the command line runs them.

``pretrain`` trains BYOL on an unlabelled folder and exports the online trunk as a plain torchvision
ResNet state_dict (``backbone.pt``, loadable like the course's ``pretrain_model_SL.pt``); ``finetune``
trains one setting A-E on Office-Home; ``predict`` writes ``id,filename,label`` in the input CSV's order.
``dlcv.ssl_table`` runs them all from one recipe.
"""

from __future__ import annotations

import os
from pathlib import Path

from dlcv.errors import DlcvError
from dlcv.fitting import Fit, budget_summary, trained_epochs
from dlcv.io import check_output_path
from dlcv.runs import RunFolder, read_json
from dlcv.runtime import is_primary_process

BACKBONE_FILE = "backbone.pt"
KNN_FIGURE = "knn_curve"
INIT_FILE = "knn_at_init.json"  # the kNN monitor before the first epoch


# --- pre-training -----------------------------------------------------------------------------------------
class PretrainFit(Fit):
    """``ssl pretrain``: BYOL on an unlabelled folder, with the kNN monitor on a labelled one."""

    def __init__(self, data: str | os.PathLike, monitor: str | os.PathLike | None):
        if monitor is not None and not Path(monitor).is_dir():
            raise DlcvError(f"{monitor}: no such folder for the kNN monitor")
        from dlcv.recipes import ByolRecipe

        super().__init__(data, inputs=(monitor,))
        self.monitor, self.recipe_type = monitor, ByolRecipe

    def make_data(self, recipe, plan):
        from dlcv.data.office import UnlabelledImages

        return UnlabelledImages(self.data, recipe.data, recipe.views, recipe.seed, self.monitor,
                                recipe.monitor.max_bank, plan)

    def make_task(self, recipe, data, plan):
        from dlcv.tasks.byol import BYOLTask

        return BYOLTask(recipe, monitored=self.monitor is not None, plan=plan)

    def trainer_options(self, task) -> dict:
        return {} if self.monitor is not None else {"limit_val_batches": 0}

    def before_fit(self, task, data, run_dir: Path, resumed: bool) -> None:
        from dlcv.io import write_json

        init = run_dir / INIT_FILE
        self.at_init = read_json(init).get("knn_acc") if init.is_file() else None
        if self.monitor is None or resumed or not is_primary_process():
            return
        # The monitor before any training, with batch-norm statistics of the pre-training images (see
        # BYOLTask.knn_untrained): the per-epoch curve is read against this value, not against chance.
        untrained = task.knn_untrained(data)
        self.at_init = untrained["knn_acc"]
        write_json(run_dir / INIT_FILE, untrained)
        print(f"kNN accuracy of the untrained trunk: {self.at_init:.4f} (batch-norm statistics of the pre-training "
              f"images; {untrained['knn_acc_unit_bn']:.4f} with none)", flush=True)

    def finish(self, recipe, trainer, task, data, run_dir: Path, fit_seconds: float) -> None:
        """The trunk as ``backbone.pt``, the kNN curve and ``summary.json``."""
        from dlcv.models.transfer import export_backbone
        from dlcv.viz.curves import monitor_label, plot_knn_curve

        arch = recipe.model.arch
        export_backbone(task.backbone, arch, run_dir / BACKBONE_FILE, seed=recipe.seed)
        run = RunFolder(run_dir)
        metrics = run.read_metrics()
        curve = [row["knn_acc"] for row in metrics if row.get("knn_acc") is not None]
        losses = [row["train_loss"] for row in metrics if row.get("train_loss") is not None]
        summary = {"name": recipe.name, "arch": arch, "epochs": trained_epochs(trainer, task),
                   "images": len(data.images), "fit_seconds": round(fit_seconds, 1),
                   **({"budget": budget_summary(trainer)} if recipe.train.budget else {}),
                   "final_train_loss": _last(losses),
                   "knn_acc_at_init": self.at_init, "knn_acc": curve, "final_knn_acc": _last(curve),
                   "knn_monitor": str(self.monitor) if self.monitor is not None else None,
                   "backbone": str(run_dir / BACKBONE_FILE)}
        if curve:
            summary["knn_figure"] = str(plot_knn_curve(curve, run_dir / KNN_FIGURE, recipe.name, self.at_init,
                                                       monitor_label(Path(self.monitor))))
        run.write_summary(summary)
        knn = f", kNN accuracy {summary['final_knn_acc']:.4f}" if curve else ""
        print(f"pre-training took {summary['fit_seconds'] / 60:.1f} min{knn}; backbone: {run_dir / BACKBONE_FILE}",
              flush=True)


def pretrain(config: str | os.PathLike | None, data: str | os.PathLike, monitor: str | os.PathLike | None = None,
             runs_dir: str | os.PathLike = "runs", name: str | None = None, overrides: tuple[str, ...] = (),
             overwrite: bool = False, resume: bool = False) -> Path:
    """BYOL on the images of ``data``; ``monitor`` a labelled folder (Office-Home or p1 layout,
    ``dlcv.data.office.monitor_sets``) for the per-epoch kNN accuracy.

    The run folder gets ``recipe.yaml``, ``metrics.csv`` (``train_loss``, ``momentum``, ``knn_acc``
    per epoch), ``last.ckpt`` / ``best.ckpt``, ``backbone.pt`` (the last epoch's online trunk),
    ``knn_at_init.json`` (the monitor before training), ``knn_curve.{png,pdf}`` and ``summary.json``.
    """
    return PretrainFit(data, monitor).run(config, runs_dir, name, overrides, overwrite, resume)


def _last(values: list[float]) -> float | None:
    return values[-1] if values else None


# --- fine-tuning ------------------------------------------------------------------------------------------
def setting_overrides(setting: str, backbone: str | os.PathLike | None) -> list[str]:
    """The recipe keys that make a fine-tuning recipe setting ``setting`` (A-E): which backbone file it
    starts from and whether the trunk is frozen. Nothing else differs between the settings."""
    from dlcv.recipes import SSL_SETTINGS

    if setting not in SSL_SETTINGS:
        raise DlcvError(f"--setting {setting!r}: choose one of {', '.join(SSL_SETTINGS)}")
    pretraining, tuning = SSL_SETTINGS[setting]
    if pretraining == "none" and backbone is not None:
        raise DlcvError(f"setting {setting} trains from random weights; give no --backbone")
    if pretraining != "none":
        if backbone is None:
            raise DlcvError(f"setting {setting} starts from a {pretraining.replace('_', '-')} backbone: give --backbone FILE")
        if not Path(backbone).is_file():
            raise DlcvError(f"{backbone}: no such backbone file")
    weights = "null" if backbone is None else str(Path(backbone).resolve())
    return [f"model.args.backbone_weights={weights}", f"model.args.freeze={'true' if tuning == 'frozen' else 'false'}"]


def finetune(setting: str, data: str | os.PathLike, backbone: str | os.PathLike | None = None,
             config: str | os.PathLike | None = None, runs_dir: str | os.PathLike = "runs", name: str | None = None,
             overrides: tuple[str, ...] = (), overwrite: bool = False, resume: bool = False) -> Path:
    """Fine-tune setting A-E on the Office-Home folder ``data``; a normal classification run folder."""
    from dlcv.classify import fit
    from dlcv.config import load_recipe
    from dlcv.models.transfer import load_backbone
    from dlcv.recipes import FinetuneRecipe

    setting = setting.upper()
    extra = setting_overrides(setting, backbone)
    if name is None and config is None:
        name = f"finetune_{setting}"
    if backbone is not None and not resume:  # a file of another architecture fails before any work
        arch = load_recipe(FinetuneRecipe, config, overrides).model.args.get("arch", "resnet50")
        load_backbone(backbone, arch)
    return fit(config, data, runs_dir=runs_dir, name=name, overrides=(*overrides, *extra), overwrite=overwrite,
               resume=resume, recipe_type=FinetuneRecipe)


def export(checkpoint: str | os.PathLike, output: str | os.PathLike) -> Path:
    """A fine-tuned or supervised ``resnet_transfer`` checkpoint's trunk as a plain torchvision state_dict."""
    from dlcv.classify import load_classifier
    from dlcv.models.transfer import TransferResNet, export_backbone

    output = check_output_path(output, inputs=(checkpoint,))
    model, recipe = load_classifier(checkpoint)
    if not isinstance(model, TransferResNet):
        raise DlcvError(f"{checkpoint}: a {recipe.model.name!r} model; only resnet_transfer checkpoints "
                        "hold a torchvision ResNet trunk to export")
    return export_backbone(model.backbone, recipe.model.args.get("arch", "resnet50"), output,
                           seed=recipe.seed)


# --- prediction -------------------------------------------------------------------------------------------
def predict(checkpoint: str | os.PathLike, csv_path: str | os.PathLike, images: str | os.PathLike,
            output: str | os.PathLike, tta: str | None = None) -> int:
    """Write ``id,filename,label`` for every row of an Office-Home CSV, in its order (labels may be empty)."""
    import numpy as np

    from dlcv.classify import load_classifier, predict_scores
    from dlcv.data.images import load_resized_stack
    from dlcv.data.office import read_office_csv, write_office_csv
    output = check_output_path(output, inputs=(csv_path, images, checkpoint))
    rows = read_office_csv(csv_path, images)
    model, recipe = load_classifier(checkpoint)
    array = np.asarray(load_resized_stack(rows.files, recipe.data.image_size, use_cache=False))
    labels = predict_scores(model, array, recipe, tta=tta, where=str(images)).argmax(1).numpy()
    write_office_csv(output, zip(rows.ids, rows.filenames, (int(v) for v in labels)))
    return len(rows.ids)
