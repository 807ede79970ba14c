"""How near the machine's limit each CPU recipe trains: the CPU's measured peak beside each recipe's training step.

In one run, on every core the process may use:

1. the machine's peak: a large float32 and a large bfloat16 matrix product (GFLOP/s), and memory bandwidth (a large
   copy, GB/s read and written);
2. for each recipe, from its own data module, task, optimiser and weight average on the real images: FLOPs per
   training image (three times the forward's by torch's ``FlopCounterMode``, the usual count of forward and backward:
   the counter's own backward count takes a depthwise convolution's gradients as dense, 40 times too many for
   EfficientNet-Lite0), the images a second of its training step, and so the fraction of the peak of its precision
   (bfloat16's for ``bf16-mixed``, float32's otherwise) it reaches;
3. where an epoch's time goes (augmentation as the recipe's planned epochs switch it, ``train.reference_epochs``):
   batching, augmentation (and mixing), forward with the loss, backward, optimiser, the weight average, and validation,
   from ``--steps`` timed steps scaled to the epoch's steps and validation images.

The steps run outside Lightning, so its per-step overhead (logging, callbacks, progress) is not in them: the recipe's
own images a second in ``docs/results.md`` against the step's here says what that overhead costs.

Usage: python benchmarks/roofline.py HW1_DATA [--recipes configs/p1/model_a_cpu.yaml,configs/p1/model_b_cpu.yaml,
       configs/seg/cpu.yaml] [--steps 20] [--threads N] [--set KEY=VALUE ...] [--compile]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

import torch
from machine import header
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from dlcv.config import load_recipe  # noqa: E402
from dlcv.runtime import resolve_precision  # noqa: E402

RECIPES = "configs/p1/model_a_cpu.yaml,configs/p1/model_b_cpu.yaml,configs/seg/cpu.yaml"
PARTS = ("batching", "augmentation", "forward", "backward", "optimiser", "weight average")


def best_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def peak(size: int = 4096, repeats: int = 5) -> dict[str, float]:
    """GFLOP/s of a ``size``-square float32 and bfloat16 matrix product, and GB/s of a 512 MiB copy."""
    figures = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
        out = torch.empty(size, size, dtype=dtype)
        figures[name] = 2 * size**3 / best_seconds(lambda: torch.mm(a, b, out=out), repeats) / 1e9
    source, target = torch.ones(128 * 2**20), torch.empty(128 * 2**20)  # 512 MiB each
    figures["copy"] = 2 * source.numel() * 4 / best_seconds(lambda: target.copy_(source), repeats) / 1e9
    return figures


def autocast(precision: str):
    if precision == "bf16-mixed":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def build(path: Path, data: Path, overrides: tuple[str, ...] = ()):
    """The recipe, its data module (prepared, with the recipe's planned epochs) and its task, as ``dlcv classify fit``
    and ``dlcv segment fit`` build them."""
    import math

    from dlcv.plan import Plan
    from dlcv.recipes import ClassifyRecipe, SegmentRecipe

    plan = Plan()

    if path.parent.name == "seg":
        from dlcv.segment import data_module
        from dlcv.tasks.segmentation import SegmentationTask

        recipe = load_recipe(SegmentRecipe, path, overrides)
        module = data_module(data / "p2_data", recipe, plan)
        module.prepare()
        plan.begin(module.steps_per_epoch(1), math.ceil(recipe.train.reference_epochs or recipe.train.epochs))
        return recipe, module, SegmentationTask.from_recipe(recipe, plan)
    from dlcv.classify import data_module
    from dlcv.tasks.classification import ClassificationTask

    recipe = load_recipe(ClassifyRecipe, path, overrides)
    module = data_module(data / "p1_data", recipe, plan)
    module.prepare()
    plan.begin(module.steps_per_epoch(1), math.ceil(recipe.train.reference_epochs or recipe.train.epochs))
    return recipe, module, ClassificationTask.from_recipe(recipe, plan, num_classes=module.num_classes)


def training_batches(module):
    """The module's training batches as a CPU run makes them (segmentation's crops normalised by its workers)."""
    from dlcv.data.seg_batches import SegmentationBatches, SegmentationData

    if isinstance(module, SegmentationData):
        return module.train_batches(module.train.x, module.train.y, batches_type=SegmentationBatches, cfg=module.cfg,
                                    normalize=(module.cfg.mean, module.cfg.std))
    return module.train_dataloader()


def profile(path: Path, data: Path, steps: int, overrides: tuple[str, ...] = (), compiled: bool = False) -> dict:
    """Seconds per step of each part, FLOPs per image and the epoch's shape for the recipe at ``path``."""
    from dlcv.tasks.optim import build_optimizer
    from dlcv.trainer import BiasCorrectedEMA
    from dlcv.tta import predict_logits

    recipe, module, task = build(path, data, overrides)
    precision = resolve_precision(recipe.train.precision, "cpu")
    model = task.model.train()
    if compiled:  # the step's forward and backward through torch.compile (inductor's C++ kernels on a CPU)
        task.model = torch.compile(model)
    optimizer = build_optimizer(model, recipe.optim)
    ema = BiasCorrectedEMA(recipe.train.ema_decay or 0.99)
    averages = [p.detach().clone() for p in model.parameters()]
    batches = training_batches(module)
    times = {part: [] for part in PARTS}
    flops = None
    iterator = iter(batches)
    for step in range(steps + 1):  # the first is a warm-up
        clock = time.perf_counter()
        images, labels = next(iterator)
        times["batching"].append(time.perf_counter() - clock)
        clock = time.perf_counter()
        x, y = module.convert_batch(images, labels, training=True)
        times["augmentation"].append(time.perf_counter() - clock)
        counter = FlopCounterMode(display=False) if step == 0 else contextlib.nullcontext()  # the untimed warm-up
        with counter:
            clock = time.perf_counter()
            with autocast(precision):
                loss = task.training_step((x, y), step)
            times["forward"].append(time.perf_counter() - clock)
        if isinstance(counter, FlopCounterMode):
            flops = 3 * counter.get_total_flops() / len(x)
        clock = time.perf_counter()
        loss.backward()
        times["backward"].append(time.perf_counter() - clock)
        clock = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times["optimiser"].append(time.perf_counter() - clock)
        clock = time.perf_counter()
        if recipe.train.ema_decay:
            ema.average(averages, list(model.parameters()), step)
        times["weight average"].append(time.perf_counter() - clock)
    per_step = {part: sum(values[1:]) / steps for part, values in times.items()}
    model.eval()
    val_x = module.val.x[: recipe.data.eval_batch_size]
    with torch.no_grad(), autocast(precision):
        prepared = module.convert_batch(val_x, module.val.y[: len(val_x)], training=False)[0]
        per_val_image = best_seconds(lambda: predict_logits(model, prepared, recipe.train.val_tta)
                                     if recipe.task == "classify" else model(prepared), 2) / len(val_x)
    steps_per_epoch = module.steps_per_epoch(1)
    return {"recipe": str(path), "precision": precision, "batch": recipe.data.batch_size, "flops": flops,
            "per_step": per_step, "steps_per_epoch": steps_per_epoch,
            "validation": per_val_image * len(module.val.x), "images": len(module.train.x)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="the course's hw1_data folder (p1_data/, p2_data/)")
    parser.add_argument("--recipes", default=RECIPES)
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per recipe")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a recipe override (levers)")
    parser.add_argument("--compile", action="store_true", help="the model through torch.compile (a lever)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    header()
    print(f"threads {args.threads}; overrides {' '.join(args.set) or 'none'}; compiled {args.compile}", flush=True)
    limits = peak()
    print(f"peak: float32 {limits['float32']:.0f} GFLOP/s, bfloat16 {limits['bfloat16']:.0f} GFLOP/s "
          f"(4096-square matrix products); memory {limits['copy']:.1f} GB/s (a 512 MiB copy)", flush=True)
    print("| recipe | precision | GFLOP per image (3x fwd) | images/s (step) | GFLOP/s | of peak | epoch: "
          + ", ".join(PARTS) + ", validation |")
    print("|---|---|---:|---:|---:|---:|---|")
    for recipe in args.recipes.split(","):
        result = profile(REPO / recipe, args.data, args.steps, tuple(args.set), args.compile)
        step = sum(result["per_step"].values())
        rate = result["batch"] / step
        achieved = result["flops"] * rate / 1e9
        top = limits["bfloat16" if result["precision"] == "bf16-mixed" else "float32"]
        epoch = {part: seconds * result["steps_per_epoch"] for part, seconds in result["per_step"].items()}
        epoch["validation"] = result["validation"]
        total = sum(epoch.values())
        shares = ", ".join(f"{seconds / total:.0%}" for seconds in epoch.values())
        print(f"| `{recipe}` | {result['precision']} | {result['flops'] / 1e9:.3f} | {rate:.0f} | {achieved:.0f} | "
              f"{achieved / top:.1%} | {total:.0f} s: {shares} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
