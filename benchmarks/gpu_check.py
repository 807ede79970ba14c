"""The accelerator check: every command's GPU path end to end, in one call.

On whatever accelerator is present (a CUDA GPU, else the CPU at smaller sizes) it runs, on synthetic
data (and on the real p1 images when ``--p1`` names them):

1. ``classify fit`` (short), then ``classify predict --ensemble 2 --tta flip_shift``, then ``classify fit
   --budget 30s`` (it must end within its budget: the plan's accelerator timing); then the classification
   batch's augmentations (TrivialAugment, RandAugment, MixUp, CutMix) under torch's sync debug mode, which
   raises at any host sync on a GPU;
2. ``segment fit`` with ``data.eval_size`` different from the tile size and the weight average
   (``train.ema_decay``), then ``segment predict --tta d4``;
3. ``ssl table`` with one-epoch settings (BYOL, the supervised backbone, A-E);
4. ``sam masks`` with a small random SAM (``vit_tiny``);
5. ``report`` of all the runs;
6. on a GPU only, two training steps of the BYOL recipe ``configs/ssl/byol_resnet50.yaml`` at its own batch (256
   pairs of 128-pixel views through a ResNet50) in the run's autocast: its peak memory row says whether the course's
   SSL recipe fits a T4's 15 GiB (with ``--fp16``, the T4's float16).

Global hooks watch every module's forward (the devices of its parameters and inputs) and every
optimiser step (their rate) in each phase; on a GPU each training and prediction phase must have run
on it alone. It prints a table (phase, devices seen, steps, steps/s, peak accelerator memory, seconds)
and exits 1 if a phase failed or touched another device.

With ``--fp16`` on a GPU with bf16 units (an A100, an H100) it checks the path of a T4 or V100 instead: torch is
made to report no native bf16, so ``precision: auto`` trains in ``16-mixed`` (float16 autocast with a gradient
scaler) and prediction autocasts to float16, as on those GPUs, which no lent machine has been.

Usage: python benchmarks/gpu_check.py [--p1 ../shared/data/hw1_data/p1_data] [--work /tmp/gpu_check] [--fp16]
On a lent GPU machine, in one call: here ``bash benchmarks/gpu_prepare.sh check`` (the wheels its image lacks
and the p1 images as one 55 MB archive, into the git-ignored .gpu/), then the device's run with carry
[".gpu"] and the command
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl &&
  tar xzf .gpu/p1_data.tar.gz -C /tmp && export PYTHONPATH=/tmp/site &&
  python3 benchmarks/gpu_check.py --p1 /tmp/p1_data; python3 benchmarks/gpu_check.py --p1 /tmp/p1_data --fp16
(the bf16 path, then the T4's float16 one: 143 s and 114 s on an H100, both 10 of 10, 2026-11-26).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import time
from pathlib import Path

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from machine import header

from dlcv.cli.main import main as dlcv
from dlcv.config import dump_recipe
from dlcv.demo import (
    P1_DEMO_RECIPE,
    P2_DEMO_RECIPE,
    SSL_DEMO_BYOL,
    SSL_DEMO_FINETUNE,
    SSL_DEMO_SUPERVISED,
)
from dlcv.runtime import inference_autocast, resolve_precision

# Phases whose every forward must run on the accelerator (the report traces shapes on meta/CPU on purpose).
ON_ACCELERATOR = ("classify fit", "classify predict", "classify fit --budget", "segment fit", "segment predict",
                  "ssl table", "sam masks", "byol_resnet50.yaml, 2 steps at its batch")
BUDGET = 30  # seconds of the budgeted fit


class Watch:
    """Global hooks over every module forward and optimiser step, read phase by phase."""

    def __init__(self, device: torch.device):
        self.device = device
        self.rows: list[dict] = []
        self._devices: set[str] = set()
        self._steps: list[float] = []
        torch.nn.modules.module.register_module_forward_pre_hook(self._forward)
        register_optimizer_step_post_hook(self._step)

    def _forward(self, module, args):
        params = next(module.parameters(recurse=False), None)
        if params is not None:
            self._devices.add(params.device.type)
            self._devices.update(a.device.type for a in args if isinstance(a, torch.Tensor))

    def _step(self, optimizer, args, kwargs):
        self._steps.append(time.perf_counter())

    def elapsed(self) -> float:
        """Seconds since the current phase began."""
        return time.perf_counter() - self._start

    @contextlib.contextmanager
    def phase(self, name: str):
        self._devices, self._steps = set(), []
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start, error = time.perf_counter(), None
        self._start = start
        try:
            yield
        except (Exception, SystemExit) as exc:  # noqa: BLE001 -- a failed phase is a row of the table
            error = f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - start
        steps = len(self._steps)
        rate = (steps - 1) / (self._steps[-1] - self._steps[0]) if steps > 2 else None
        peak = torch.cuda.max_memory_allocated() / 2**20 if self.device.type == "cuda" else None
        wrong = name in ON_ACCELERATOR and self._devices - {self.device.type}
        ok = error is None and not wrong
        self.rows.append({"phase": name, "devices": ",".join(sorted(self._devices)) or "-", "steps": steps,
                          "steps_per_s": rate, "peak_mib": peak, "seconds": seconds, "ok": ok,
                          "error": error or (f"ran on {sorted(wrong)}" if wrong else "")})

    def table(self) -> str:
        lines = ["| phase | devices seen | optimiser steps | steps/s | peak accelerator MiB | seconds | ok |",
                 "|---|---|---:|---:|---:|---:|---|"]
        for r in self.rows:
            rate = f"{r['steps_per_s']:.1f}" if r["steps_per_s"] else "-"
            peak = f"{r['peak_mib']:.0f}" if r["peak_mib"] is not None else "-"
            lines.append(f"| {r['phase']} | {r['devices']} | {r['steps']} | {rate} | {peak} | {r['seconds']:.1f} | "
                         f"{'yes' if r['ok'] else 'NO: ' + r['error']} |")
        return "\n".join(lines)


def run(*args) -> None:
    code = dlcv([str(a) for a in args])
    if code != 0:
        raise SystemExit(f"dlcv {' '.join(map(str, args[:2]))} exited {code}")


def write(path: Path, recipe: dict) -> Path:
    path.write_text(dump_recipe(recipe))
    return path


def with_changes(recipe: dict, **sections) -> dict:
    """``recipe`` with the keys of each given section replaced (a plain value replaces the key)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in recipe.items()}
    for section, values in sections.items():
        out[section] = {**out.get(section, {}), **values} if isinstance(values, dict) else values
    return out


def augment_without_syncs(device: torch.device, rounds: int = 5) -> None:
    """The classification batch's augmentations on ``device`` (crop and flip, TrivialAugment and RandAugment
    batched by operation, MixUp or CutMix): on a GPU, a host sync anywhere in them raises (torch's sync
    debug mode), since each one stops the host from running ahead of the GPU."""
    from dlcv.data.augment import prepare_batch
    from dlcv.data.policies import mix
    from dlcv.recipes import ClassifyData

    images = torch.randint(0, 256, (128, 32, 32, 3), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 50, (128,), device=device)
    cfg = ClassifyData(crop_padding=4, mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5], input_size=64)

    def batches():
        for policy in ("trivialaugment", "randaugment"):
            mix(prepare_batch(images, cfg.model_copy(update={"auto_augment": policy}), train=True), labels, 50, 0.8,
                1.0)

    batches()  # first use: the per-device constants are made (and copied) once
    if device.type != "cuda":
        return
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(rounds):
            batches()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()


def byol_recipe_steps(device: torch.device, steps: int = 2, batch: int | None = None) -> None:
    """``steps`` training steps of the GPU BYOL recipe at its own batch (or ``batch``), on random views, in the
    autocast of a run at ``precision: auto`` (bf16, or float16 on a T4): what its peak memory needs (a phase of its
    own, GPU only)."""
    from dlcv.config import load_recipe
    from dlcv.recipes import ByolRecipe
    from dlcv.tasks.byol import BYOLTask
    from dlcv.tasks.optim import build_optimizer

    recipe = load_recipe(ByolRecipe, REPO / "configs" / "ssl" / "byol_resnet50.yaml")
    task = BYOLTask.from_recipe(recipe, monitored=False).to(device).train()
    optimizer = build_optimizer(task.model, recipe.optim)  # the recipe's, with its state
    batch, size = batch or recipe.data.batch_size, recipe.views.size
    for _ in range(steps):
        views = [torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
                 for _ in range(2)]
        with inference_autocast(device, "auto"):  # on a GPU, the half type a 16-mixed or bf16-mixed run trains in
            loss = task.byol_loss(*views)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def main() -> int:
    header()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--p1", type=Path, help="the real p1_data folder (else synthetic images)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu_check"), help="scratch folder (replaced)")
    parser.add_argument("--fp16", action="store_true",
                        help="on a GPU: the path of a GPU without native bf16 (T4, V100): 16-mixed, float16 prediction")
    args = parser.parse_args()
    gpu = torch.cuda.is_available()
    device = torch.device("cuda" if gpu else "cpu")
    name = torch.cuda.get_device_name() if gpu else "CPU"
    if args.fp16 and not gpu:
        sys.exit("gpu_check: --fp16 needs a CUDA GPU (Lightning trains 16-mixed on a CPU as bf16-mixed)")
    if args.fp16:
        torch.cuda.is_bf16_supported = lambda including_emulation=True: False  # as torch says on a T4
        name += " as a GPU without native bf16 (--fp16)"
    name += f"; precision auto = {resolve_precision('auto', 'auto')}"
    print(f"device: {name}; torch {torch.__version__}; sizes for a {'GPU' if gpu else 'CPU'}", flush=True)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    work, runs = args.work, args.work / "runs"
    recipes = work / "recipes"
    recipes.mkdir()

    from dlcv.data.synth import synth_p1, synth_p2, synth_ssl

    side = 256 if gpu else 128
    p1 = args.p1 or synth_p1(work / "data", num_classes=10, train_per_class=200 if gpu else 30, val_per_class=10)
    p2 = synth_p2(work / "data", train=16 if gpu else 4, validation=4, size=side)
    synth_ssl(work / "data", arch="resnet18")
    watch = Watch(device)
    gpu_train = {"accelerator": "auto", "devices": "auto", "epochs": 2}

    p1_recipe = write(recipes / "p1.yaml", with_changes(
        P1_DEMO_RECIPE, name="p1_check", train={**gpu_train, "save_top_k": 2, "tta": "flip_shift"}))
    with watch.phase("classify fit"):
        run("classify", "fit", "--config", p1_recipe, "--data", p1, "--runs-dir", runs)
    with watch.phase("classify predict"):
        run("classify", "predict", "--checkpoint", runs / "p1_check" / "best.ckpt", "--images", Path(p1) / "val_50",
            "--output", work / "p1.csv", "--ensemble", 2, "--tta", "flip_shift")
    with watch.phase("classify fit --budget"):
        run("classify", "fit", "--config", p1_recipe, "--data", p1, "--runs-dir", runs, "--name", "p1_budget",
            "--budget", f"{BUDGET}s")
        if watch.elapsed() > BUDGET:
            raise SystemExit(f"the budgeted fit took {watch.elapsed():.1f} s of a {BUDGET} s budget")

    with watch.phase("augment without host syncs"):
        augment_without_syncs(device)

    p2_recipe = write(recipes / "p2.yaml", with_changes(
        P2_DEMO_RECIPE, name="p2_check", train={**gpu_train, "ema_decay": 0.99},  # the weight average on the device
        data={"train_size": side // 2, "eval_size": side // 2 + 32}))  # eval_size differs from the tile size
    with watch.phase("segment fit"):
        run("segment", "fit", "--config", p2_recipe, "--data", p2, "--runs-dir", runs)
    with watch.phase("segment predict"):
        run("segment", "predict", "--checkpoint", runs / "p2_check" / "best.ckpt", "--images", p2 / "validation",
            "--output", work / "p2_masks", "--tta", "d4")

    one_epoch = {**gpu_train, "epochs": 1}
    settings = write(recipes / "settings.yaml", {
        "name": "ssl_check",
        "pretrain": write(recipes / "byol.yaml", with_changes(SSL_DEMO_BYOL, train=one_epoch)).name,
        "supervised": write(recipes / "sup.yaml", with_changes(SSL_DEMO_SUPERVISED, train=one_epoch)).name,
        "finetune": write(recipes / "ft.yaml", with_changes(SSL_DEMO_FINETUNE, train=one_epoch)).name,
        "data": {"mini": "mini/train", "office": "office", "supervised": str(Path(p1).resolve())},
    })
    with watch.phase("ssl table"):
        run("ssl", "table", "--config", settings, "--data", p2, "--runs-dir", runs)

    from dlcv.models.sam import build_sam

    tiny = work / "sam_tiny.pth"
    torch.save(build_sam("vit_tiny").state_dict(), tiny)
    with watch.phase("sam masks"):
        run("sam", "masks", "--checkpoint", tiny, "--model", "vit_tiny", "--images", p2 / "validation",
            "--output", runs / "sam_check", "--set", "generator.points_per_side=8")
    with watch.phase("report"):
        run("report", "--runs", runs, "--output", work / "report")
    if gpu:
        with watch.phase("byol_resnet50.yaml, 2 steps at its batch"):
            byol_recipe_steps(device)

    print(f"\n{name}, torch {torch.__version__}\n{watch.table()}")
    failed = [r["phase"] for r in watch.rows if not r["ok"]]
    print(f"gpu_check: {len(watch.rows) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
