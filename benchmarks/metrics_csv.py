"""Lightning's ``CSVLogger`` against dlcv's ``metrics.csv`` on a run stopped mid-epoch and resumed.

A tiny model trains 4 epochs, logging train and validation figures per epoch. The first fit is stopped in epoch 3
(after epoch 2's checkpoint), then resumed from that checkpoint into the same log folder, as ``--resume`` does. For
each writer: the rows written, the rows per epoch, and whether epochs 1-4 are there once each.
Usage: python benchmarks/metrics_csv.py
"""

from __future__ import annotations

import csv
import tempfile
from collections import Counter
from pathlib import Path

import lightning
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from machine import header

from dlcv.trainer import EpochMetricsCSV

STOP_AT = (3, 2)  # (epoch, batch) where the first fit is stopped: epoch 2's checkpoint is the last one


class Stopped(Exception):
    """The first fit's end in mid-epoch."""


class Tiny(lightning.LightningModule):
    """A linear model on fixed random data, stopped at ``stop`` (epoch, batch) when given."""

    def __init__(self, stop: tuple[int, int] | None = None):
        super().__init__()
        self.net, self.stop = torch.nn.Linear(4, 2), stop
        generator = torch.Generator().manual_seed(0)
        self.data = torch.utils.data.TensorDataset(torch.randn(64, 4, generator=generator),
                                                   torch.randint(0, 2, (64,), generator=generator))

    def training_step(self, batch, index):
        if self.stop and (self.current_epoch + 1, index) == self.stop:
            raise Stopped  # the process ends here, as when it is killed
        loss = torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1])
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, index):
        self.log("val_loss", torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.data, batch_size=8)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(self.data, batch_size=32)


def fit(folder: Path, writer: str, stop, ckpt_path=None) -> None:
    """One fit to 4 epochs into ``folder`` with ``writer`` (``lightning`` or ``dlcv``)."""
    logger = CSVLogger(folder, name="", version="") if writer == "lightning" else False
    callbacks = [ModelCheckpoint(folder / "checkpoints", save_top_k=-1, every_n_epochs=1)]
    if writer == "dlcv":
        callbacks.append(EpochMetricsCSV(folder / "metrics.csv", echo=False))
    trainer = lightning.Trainer(max_epochs=4, logger=logger, callbacks=callbacks, enable_progress_bar=False,
                                enable_model_summary=False, accelerator="cpu", devices=1)
    try:
        trainer.fit(Tiny(stop), ckpt_path=ckpt_path)
    except Stopped:
        pass


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def main() -> None:
    header()
    for writer in ("lightning", "dlcv"):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            fit(folder, writer, STOP_AT)
            before = rows(folder / "metrics.csv")
            fit(folder, writer, None, ckpt_path=str(folder / "checkpoints" / "epoch=1-step=16.ckpt"))
            after = rows(folder / "metrics.csv")
            # Lightning numbers epochs from 0 in its CSV; dlcv from 1.
            epochs = Counter(int(r["epoch"]) + (writer == "lightning") for r in after)
            has_val = Counter(int(r["epoch"]) + (writer == "lightning") for r in after if r.get("val_loss"))
            whole = sorted(has_val) == [1, 2, 3, 4] and all(n == 1 for n in epochs.values())
            print(f"{writer}: {len(before)} rows when stopped in epoch {STOP_AT[0]}, {len(after)} after the resume; "
                  f"rows per epoch {dict(sorted(epochs.items()))}; epochs with a validation figure "
                  f"{sorted(has_val)}; epochs 1-4 once each: {whole}")


if __name__ == "__main__":
    main()
