"""The weight average of ``train.ema_decay`` against the libraries' own, on one training trajectory.

One budgeted ``classify fit`` of a recipe (default: model B's CPU recipe, whose checkpoints are chosen on a 5% holdout)
keeps, beside dlcv's bias-corrected average (``dlcv.trainer.BiasCorrectedEMA``), timm's ``ModelEmaV3`` with its warm-up
and torch's plain exponential average (``AveragedModel`` with ``get_ema_multi_avg_fn``, which Lightning's
``EMAWeightAveraging`` uses), all at the recipe's decay and updated after every optimiser step. At the end of training
it prints the holdout accuracy (no test-time augmentation) of the raw weights and of each average: the same steps, so
the figures differ only by the averaging. The holdout only: the validation folder plays no part in the choice.

Usage (from the repository root, with .venv set up; nothing else running):
    python benchmarks/weight_average.py ../shared/data/hw1_data/p1_data --budget 4m --runs-dir /tmp/wa_runs
    python benchmarks/weight_average.py ../shared/data/hw1_data/p1_data --budget none --set train.epochs=1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from machine import header


def main() -> int:
    header()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--recipe", default=str(REPO / "configs/p1/model_b_cpu.yaml"))
    parser.add_argument("--budget", default="4m", help="or none, with --set train.epochs=N: a number of steps "
                        "that does not depend on the machine")
    parser.add_argument("--runs-dir", default="/tmp/weight_average_runs")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()

    import lightning as L
    import torch
    from timm.utils.model_ema import ModelEmaV3
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from dlcv import classify, fitting
    from dlcv.recipes import ClassifyRecipe
    from dlcv.trainer import BiasCorrectedEMA

    class Averages(L.Callback):
        """timm's and torch's averages of the weights, updated as dlcv's is; scored on the holdout at the end."""

        def __init__(self, decay: float):
            self.decay, self.timm, self.torch = decay, None, None

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            model = pl_module.model
            if self.timm is None:
                self.timm = ModelEmaV3(model, decay=self.decay, use_warmup=True)
                self.torch = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)
            self.timm.update(model, step=trainer.global_step)
            self.torch.update_parameters(model)

        @torch.no_grad()
        def on_train_end(self, trainer, pl_module):  # before dlcv's average is copied into the model
            data = trainer.datamodule
            dlcv_average = next(c for c in trainer.callbacks if isinstance(c, BiasCorrectedEMA))._average_model
            models = {"raw weights": pl_module.model, "dlcv (bias-corrected)": dlcv_average.module.model,
                      "timm ModelEmaV3 (warm-up)": self.timm.module, "torch / Lightning (plain)": self.torch.module}
            print(f"after {trainer.global_step} steps, decay {self.decay}, holdout of {len(data.val)} images:")
            for label, model in models.items():
                was = model.training
                model.eval()
                right = 0
                for images, labels in data.val_dataloader():
                    x, y = data.convert_batch(images, labels, training=False)
                    right += int((model(x.to(memory_format=torch.channels_last)).argmax(1) == y).sum())
                model.train(was)
                print(f"  {label:28s} holdout accuracy {right / len(data.val):.4f}", flush=True)

    overrides = ("train.budget=" + ("null" if args.budget == "none" else args.budget), *args.overrides)
    with fitting.run(ClassifyRecipe, args.recipe, args.data, args.runs_dir, "weight_average", overrides,
                     overwrite=True) as run:
        from dlcv.tasks.classification import ClassificationTask

        if not run.recipe.train.ema_decay:
            raise SystemExit("the recipe keeps no weight average (train.ema_decay 0)")
        data = run.prepared(classify.data_module(args.data, run.recipe, run.plan))
        task = ClassificationTask(run.recipe, data.num_classes, run.plan)
        run.fit(data, task, [Averages(run.recipe.train.ema_decay)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
