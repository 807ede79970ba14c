"""The kNN monitor of a BYOL recipe's trunk at initialisation (its seed), i.e. the value before epoch 1,
which the per-epoch curve in metrics.csv should be read against (random convolutional features already
separate small images by colour).

Usage: python benchmarks/ssl_knn_at_init.py [BYOL_RECIPE] [OFFICE_DIR]
       (default: configs/ssl/byol_cpu.yaml and the transfer split's office/ under /tmp/dlcv_transfer_split)
"""
import sys

import lightning as L
import torch

from dlcv.config import load_recipe
from dlcv.data.augment import prepare_batch
from dlcv.data.office import monitor_sets
from dlcv.metrics.embedding import knn_accuracy_against
from dlcv.recipes import byol_defaults
from dlcv.tasks.byol import BYOLTask

recipe_path = sys.argv[1] if len(sys.argv) > 1 else "configs/ssl/byol_cpu.yaml"
office = sys.argv[2] if len(sys.argv) > 2 else "/tmp/dlcv_transfer_split/office"
r = load_recipe(byol_defaults(), recipe_path)
L.seed_everything(int(r["seed"]), workers=True, verbose=False)  # as dlcv ssl pretrain seeds before building
task = BYOLTask(r).eval()
x, rows = monitor_sets(office, r["data"]["image_size"], int(r["monitor"]["max_bank"]), int(r["seed"]))
cfg = {**r["data"], "input_size": int(r["views"]["size"])}
with torch.inference_mode():
    f = torch.cat([task.backbone(prepare_batch(x[i : i + 500], cfg)) for i in range(0, len(x), 500)]).float().numpy()
rows = rows.numpy()
query = rows[:, 1] == 1
accuracy = knn_accuracy_against(f[~query], rows[~query, 0], f[query], rows[query, 0], k=int(r["monitor"]["k"]))
print(f"knn_acc at initialisation: {accuracy:.4f}")
