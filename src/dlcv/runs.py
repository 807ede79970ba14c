"""Run folders and the Lightning trainer that writes them.

``runs/NAME/`` holds the resolved recipe (``recipe.yaml``), the checkpoints (``best.ckpt`` by the
monitored metric, ``last.ckpt``), one row of metrics per epoch (``metrics.csv``), TensorBoard logs
(``tensorboard/``) and a ``summary.json`` written when the run ends.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import time
from pathlib import Path

from dlcv.config import dump_recipe
from dlcv.errors import DlcvError
from dlcv.io import atomic_write


def prepare_run_dir(runs_dir: str | os.PathLike, name: str, overwrite: bool) -> Path:
    """Create ``runs_dir/name``; refuse to touch one that already holds a run unless ``overwrite``."""
    if not name or "/" in name or name in (".", ".."):
        raise DlcvError(f"run name {name!r} must be a plain folder name")
    run_dir = Path(runs_dir) / name
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise DlcvError(f"{run_dir}: already holds a run; pass --overwrite to replace it or --name to choose another")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def write_recipe(run_dir: Path, recipe: dict) -> None:
    with atomic_write(run_dir / "recipe.yaml") as handle:
        handle.write(dump_recipe(recipe))


def write_json(path: Path, data: dict) -> None:
    with atomic_write(path) as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")


def cpu_computes_bf16_fast() -> bool:
    """True where the CPU has native bf16 matrix instructions (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision: str, accelerator: str) -> str:
    """``auto`` -> bf16-mixed where it is fast (recent GPUs, bf16 CPUs), else 32-true."""
    if precision != "auto":
        return precision
    import torch

    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_computes_bf16_fast() else "32-true"


def make_epoch_csv_callback(path: Path, echo: bool):
    """A callback writing one CSV row per epoch (and echoing it as a line when there is no bar)."""
    import lightning as L

    class EpochMetricsCSV(L.Callback):
        def __init__(self):
            self.start = time.perf_counter()
            self.columns: list[str] | None = None

        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.sanity_checking or trainer.global_rank != 0:
                return
            metrics = {k: float(v) for k, v in sorted(trainer.callback_metrics.items()) if v.numel() == 1}
            row = {"epoch": trainer.current_epoch + 1, "seconds": round(time.perf_counter() - self.start, 1),
                   **metrics}
            if self.columns is None:
                self.columns = list(row)
                with open(path, "w", newline="") as handle:
                    csv.writer(handle).writerow(self.columns)
            with open(path, "a", newline="") as handle:
                csv.writer(handle).writerow([row.get(c, "") for c in self.columns])
            if echo:
                # Per-class figures go to the CSV only: the line stays readable.
                shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if "_iou_" not in k)
                print(f"epoch {row['epoch']}/{trainer.max_epochs} {row['seconds']:.0f}s {shown}", flush=True)

    return EpochMetricsCSV()


def quiet_lightning() -> None:
    """Keep the terminal for progress and results: drop Lightning's tips and known harmless warnings."""
    import logging
    import warnings

    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning.pytorch.accelerators.cuda"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*exists and is not empty.*", ".*is smaller than the logging interval.*",
                    ".*LeafSpec.*is deprecated.*", ".*does not have many workers.*",
                    ".*to estimate number of stepping batches.*"):
        warnings.filterwarnings("ignore", message=pattern)


def build_trainer(run_dir: Path, recipe: dict, monitor: str, mode: str, max_epochs: int,
                  extra_callbacks: tuple = (), **overrides):
    """A Lightning Trainer writing ``run_dir`` (checkpoints, metrics.csv, TensorBoard)."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
    from lightning.pytorch.loggers import TensorBoardLogger

    quiet_lightning()
    train = recipe["train"]
    interactive = sys.stderr.isatty()
    callbacks = [
        ModelCheckpoint(dirpath=run_dir, filename="best", monitor=monitor, mode=mode, save_last=True,
                        auto_insert_metric_name=False, enable_version_counter=False),
        make_epoch_csv_callback(run_dir / "metrics.csv", echo=not interactive),
        *extra_callbacks,
    ]
    if interactive:
        callbacks.append(TQDMProgressBar(refresh_rate=5))
    options = dict(
        default_root_dir=run_dir,
        max_epochs=max_epochs,
        accelerator=train["accelerator"],
        devices=train["devices"],
        precision=resolve_precision(str(train["precision"]), str(train["accelerator"])),
        deterministic=bool(train["deterministic"]),
        logger=TensorBoardLogger(run_dir, name="tensorboard", version=""),
        callbacks=callbacks,
        enable_progress_bar=interactive,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=10,
    )
    options.update(overrides)
    return L.Trainer(**options)
