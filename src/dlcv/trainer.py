"""The Lightning trainer of every run, set for the hardware, with the callbacks that write the run folder.

Devices and precision follow the machine; the callbacks write checkpoints, metrics.csv and TensorBoard logs;
batch-norm sync keeps timm's activations; GPUs that have TF32 use it.
"""

from __future__ import annotations

import csv
import logging
import os
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar, WeightAveraging
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins import TorchSyncBatchNorm
from lightning.pytorch.plugins.io import TorchCheckpointIO
from timm.layers import convert_sync_batchnorm
from torch.optim.swa_utils import get_ema_multi_avg_fn

from dlcv.errors import DlcvError
from dlcv.io import atomic_write, save_torch
from dlcv.runs import RunFolder, read_metrics_table
from dlcv.runtime import launched_nodes, resolve_precision

LAUNCHER_WORLD = ("WORLD_SIZE", "SLURM_NTASKS_PER_NODE")  # processes per node set by torchrun / SLURM


def resolve_devices(devices) -> int | str | list:
    """Resolve ``train.devices``: ``auto`` is one device, or one per process a launcher (torchrun, SLURM) started.

    Lightning's own ``auto`` takes every GPU of the host, which silently multiplies the global batch. Other values
    pass unchanged.
    """
    if devices != "auto":
        return devices
    for var in LAUNCHER_WORLD:
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 1:
            return int(value) if var == "SLURM_NTASKS_PER_NODE" else int(os.environ.get("LOCAL_WORLD_SIZE", value))
    return 1


class EpochMetricsCSV(L.Callback):
    """Callback writing one metrics.csv row per epoch to ``path``; with ``echo`` it also prints each as a line.

    The printed line gives the planned epochs of ``plan`` (None: the trainer's ``max_epochs``).
    """

    def __init__(self, path: Path, echo: bool, plan=None):
        self.path, self.echo, self.plan = path, echo, plan
        self.start = time.perf_counter()
        self.columns: list[str] | None = None
        self.rows: list[dict] = []

    def on_train_start(self, trainer, pl_module):
        """A resumed run keeps the rows of the epochs it resumes after and drops any later ones."""
        done = trainer.current_epoch
        if done == 0 or trainer.global_rank != 0 or not self.path.exists():
            return
        columns, rows = read_metrics_table(self.path)  # the one reader: checked before the resume changed anything
        self.columns, self.rows = columns, [row for row in rows if row["epoch"] <= done]
        if self.rows and self.rows[-1].get("seconds") is not None:  # the clock goes on from the last kept epoch
            self.start -= self.rows[-1]["seconds"]
        self.write()

    def write(self) -> None:
        """Write metrics.csv anew, whole, through a rename: an interrupted write leaves the rows before it."""
        if self.columns is not None:
            with atomic_write(self.path, newline="") as handle:
                csv.writer(handle).writerows([self.columns, *([row.get(c) for c in self.columns] for row in self.rows)])

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking or trainer.global_rank != 0:
            return
        metrics = {k: float(v) for k, v in sorted(trainer.callback_metrics.items()) if v.numel() == 1}
        row = {"epoch": trainer.current_epoch + 1, "seconds": round(time.perf_counter() - self.start, 1), **metrics}
        if self.columns is None:
            self.columns = list(row)
        self.rows.append(row)
        self.write()
        if self.echo:
            # Per-class figures go to the CSV only: the line stays readable.
            shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if "_iou_" not in k)
            planned = self.plan.last_epoch if self.plan is not None else None
            print(f"epoch {row['epoch']}/{planned or trainer.max_epochs} {row['seconds']:.0f}s {shown}", flush=True)


class StopOnNonFiniteLoss(L.Callback):
    """Callback stopping a run whose training loss became NaN or infinite, before its validation or checkpoint.

    Lightning would write NaN weights as if trained, and ``EarlyStopping(check_finite=True)`` ends such a run
    silently. Steps are checked on the device; the flag is read and agreed by the processes once an epoch.
    """

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.bad: torch.Tensor | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            bad = ~torch.isfinite(loss.detach())
            self.bad = bad if self.bad is None else self.bad | bad

    def check(self, trainer):
        """Stop the run if any process saw a non-finite loss since the last check.

        Raises:
            DlcvError: naming the run folder and the epoch, and what to try.
        """
        bad = self.bad is not None and bool(self.bad.item())
        self.bad = None
        if trainer.strategy.reduce_boolean_decision(bad, all=False):
            raise DlcvError(f"{self.run_dir}: the training loss became NaN or infinite in epoch "
                            f"{trainer.current_epoch + 1}; the run stops here, its checkpoints hold the epochs "
                            "before (try a lower optim.lr, or train.precision: 32-true)")

    def on_validation_start(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.check(trainer)

    def on_train_epoch_end(self, trainer, pl_module):
        self.check(trainer)


class BiasCorrectedEMA(WeightAveraging):
    """Weight averaging (``train.ema_decay``): an exponential moving average, bias-corrected as in Adam.

    After step t it weighs steps 1..t by decay^(t - i), normalised by their sum, so early on it averages the weights
    trained so far where torch's ``get_ema_avg_fn`` is still mostly the first step's nearly random ones.
    """

    def __init__(self, decay: float):
        super().__init__(multi_avg_fn=self.average)  # updated after every optimiser step
        self.decay, self.weight = decay, 1.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.weight = (1 - self.decay) / (1 - self.decay ** max(1, trainer.global_step))
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    @torch.no_grad()
    def average(self, averages, currents, _count):
        if torch.is_floating_point(averages[0]):  # a *-true precision trains in its dtype: the average keeps its own
            currents = [c.to(a.dtype) for a, c in zip(averages, currents)]
            get_ema_multi_avg_fn(1.0 - self.weight)(averages, currents, _count)
        else:  # integer buffers (batch norm's batch count) follow the model
            for average, current in zip(averages, currents):
                average.copy_(current)


def quiet_lightning(precision: str = "32-true") -> None:
    """Silence Lightning's tips and known harmless warnings, keeping the terminal for progress and results."""
    if precision in ("16-mixed", "16"):
        # float16's scaler skips the first, overflowing steps: torch takes that for scheduler.step before optimizer's.
        warnings.filterwarnings("ignore", message=".*lr_scheduler.step\\(\\)` before `optimizer.step\\(\\)`.*")

    # accelerators.cuda's device line repeats dlcv's trainer line; distributed and signal_connector print per process
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning.pytorch.accelerators.cuda", "lightning.fabric.utilities.distributed",
                 "lightning.pytorch.trainer.connectors.signal_connector"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*exists and is not empty.*", ".*is smaller than the logging interval.*",
                    ".*LeafSpec.*is deprecated.*", ".*does not have many workers.*",
                    ".*to estimate number of stepping batches.*",
                    ".*module\\(s\\) in eval mode at the start of training.*",  # a frozen trunk, on purpose
                    ".*`srun` command is available on your system but is not used.*"):  # torchrun on a SLURM host
        warnings.filterwarnings("ignore", message=pattern)


def build_trainer(run_dir: Path, recipe, monitor: str, mode: str, max_epochs: int,
                  extra_callbacks: tuple = (), precision: str | None = None, first_callbacks: tuple = (), plan=None,
                  **overrides):
    """Build the Lightning Trainer of a run writing ``run_dir``, set for this hardware.

    Args:
        run_dir: the run folder (checkpoints, metrics.csv, TensorBoard logs).
        recipe: the run's recipe; its ``train`` section sets devices, precision, callbacks and the rest.
        monitor: the metric that selects the best checkpoint (and stops early).
        mode: ``min`` or ``max``, for ``monitor``.
        max_epochs: the epochs to train; -1: no set end (a time budget stops the run).
        extra_callbacks: callbacks added after the run's own checkpoints and metrics.csv (``run_callbacks``).
        precision: Lightning's precision; None: the recipe's, resolved for this hardware.
        first_callbacks: callbacks whose hooks run before every other's (a time budget, re-planning ``plan``).
        plan: the run's plan, whose planned epochs the printed lines give.
        **overrides: Lightning ``Trainer`` arguments that replace the built ones.

    Returns:
        The ``lightning.Trainer``.
    """
    train = recipe.train
    precision = precision or resolve_precision(train.precision, train.accelerator)
    quiet_lightning(precision)
    interactive = sys.stderr.isatty()
    sync_batchnorm = wants_sync_batchnorm(train)
    options = {
        "default_root_dir": run_dir,
        "max_epochs": max_epochs,
        "accelerator": train.accelerator,
        "devices": resolve_devices(train.devices),
        "num_nodes": max(train.num_nodes, launched_nodes()),  # what torchrun or srun started, if more
        "strategy": train.strategy,
        "sync_batchnorm": sync_batchnorm,
        "plugins": [RunCheckpointIO(RunFolder(run_dir).last),
                    *([TimmAwareSyncBatchNorm()] if sync_batchnorm else [])],
        "gradient_clip_val": train.gradient_clip or None,
        "precision": precision,
        # Some CUDA kernels have no deterministic version: "warn" keeps the deterministic ones where they exist.
        "deterministic": "warn" if train.deterministic else False,
        "logger": TensorBoardLogger(run_dir, name="tensorboard", version=""),
        "callbacks": [*first_callbacks, *run_callbacks(run_dir, train, monitor, mode, interactive, extra_callbacks,
                                                                plan)],
        "enable_progress_bar": interactive,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "log_every_n_steps": 10,
    }
    options.update(overrides)
    use_fast_gpu_math(deterministic=train.deterministic)
    trainer = L.Trainer(benchmark=not train.deterministic, **options)
    if trainer.is_global_zero:
        strategy = type(trainer.strategy).__name__.removesuffix("Strategy")
        print(f"trainer: {trainer.num_devices} {trainer.accelerator.__class__.__name__.removesuffix('Accelerator')} "
              f"device(s) x {trainer.num_nodes} node(s), strategy {strategy}, precision {precision}",
              flush=True)
    return trainer


class TopKCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` of the k best epochs, its state kept apart from the best checkpoint's."""

    @property
    def state_key(self) -> str:  # unique beside best/last's checkpoint callback of the same monitor
        return self._generate_state_key(monitor=self.monitor, mode=self.mode, top_k=self.save_top_k)


def run_callbacks(run_dir: Path, train, monitor: str, mode: str, interactive: bool,
                  extra: tuple = (), plan=None) -> list:
    """Return the callbacks of every run, in their order.

    They are a stop on a non-finite loss, the best and last checkpoints, metrics.csv, ``extra``'s, then the recipe's
    top-k checkpoints, early stopping and weight averaging, and a progress bar on a terminal.

    Args:
        run_dir: the run folder.
        train: the recipe's ``train`` section.
        monitor: the metric that selects checkpoints.
        mode: ``min`` or ``max``, for ``monitor``.
        interactive: stderr is a terminal: a progress bar instead of one printed line per epoch.
        extra: the command's own callbacks.
        plan: the run's plan, for the printed lines.
    """
    run = RunFolder(run_dir)
    callbacks = [
        StopOnNonFiniteLoss(run_dir),
        ModelCheckpoint(dirpath=run_dir, filename="best", monitor=monitor, mode=mode,
                        auto_insert_metric_name=False, enable_version_counter=False),
        # last.ckpt every epoch for --resume: Lightning's save_last (2.6 on) writes it only along with a best one.
        ModelCheckpoint(dirpath=run_dir, filename="last", monitor=None, save_top_k=1, enable_version_counter=False),
        EpochMetricsCSV(run.metrics_file, echo=not interactive, plan=plan),
        *extra,
    ]
    top_k = train.save_top_k
    if top_k > 1:  # the k best epochs, for prediction by their averaged logits (predict --ensemble k)
        callbacks.append(TopKCheckpoint(dirpath=run.top, filename=f"epoch{{epoch:03d}}-{{{monitor}:.4f}}",
                                        monitor=monitor, mode=mode, save_top_k=top_k, auto_insert_metric_name=False,
                                        enable_version_counter=False))
    if train.early_stopping_patience > 0:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=train.early_stopping_patience))
    if train.ema_decay > 0:
        callbacks.append(BiasCorrectedEMA(train.ema_decay))
    if interactive:
        callbacks.append(TQDMProgressBar(refresh_rate=5))
    return callbacks


def wants_sync_batchnorm(train) -> bool:
    """Whether to sync batch norm: ``train.sync_batchnorm`` where it applies (torch's SyncBatchNorm is GPU-only)."""
    if not train.sync_batchnorm:
        return False
    if not torch.cuda.is_available() or train.accelerator == "cpu":
        print("note: train.sync_batchnorm applies to GPUs only; on CPU processes batch norm stays per process",
              file=sys.stderr)
        return False
    return True


# What only continuing the training needs: optimiser moments, schedules, the raw weights beside a weight average.
RESUME_ONLY = ("optimizer_states", "lr_schedulers", "current_model_state", "averaging_state")


class RunCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, writing each file by a rename in its own folder (``dlcv.io.save_torch``).

    A failed write leaves the earlier file whole and names it. The state only ``--resume`` reads goes into ``last``
    (the run's last.ckpt) alone: ``best.ckpt`` and ``top/`` hold only what scoring and prediction read.
    """

    def __init__(self, last: Path):
        self.last = last

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        """Write ``checkpoint`` to ``path``, less the resume-only state unless ``path`` is ``last``.

        Raises:
            TypeError: if ``storage_options`` is given.
            DlcvError: if the file cannot be written.
        """
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        if Path(path).resolve() != self.last.resolve():
            checkpoint = {k: v for k, v in checkpoint.items() if k not in RESUME_ONLY}
        Path(path).parent.mkdir(parents=True, exist_ok=True)  # top/ on its first checkpoint
        save_torch(checkpoint, path)


class TimmAwareSyncBatchNorm(TorchSyncBatchNorm):
    """Batch-norm synchronisation through timm's converter, which keeps timm's fused activations.

    torch's converter turns timm's ``BatchNormAct2d`` into a bare ``SyncBatchNorm``, dropping the activation; timm's
    keeps it and each layer's mode (a frozen trunk stays in eval).
    """

    def apply(self, model):
        return convert_sync_batchnorm(model)


def use_fast_gpu_math(deterministic: bool = False) -> None:
    """Use TF32 for float32 matrix products and convolutions on GPUs that have it, unless deterministic."""
    if torch.cuda.is_available() and not deterministic:
        torch.set_float32_matmul_precision("high")
        torch.backends.cudnn.allow_tf32 = True
