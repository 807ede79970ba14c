"""dlcv's architecture table (forward hooks on the meta device, ``dlcv.report.architecture``) against torchinfo's
``summary`` for every shipped recipe's model: whether each runs, the seconds, the rows and the parameters.

torchinfo is not one of dlcv's dependencies: ``pip install torchinfo`` beside it to run this.
Usage: python benchmarks/architecture_tracer.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from machine import header
from torchinfo import summary

from dlcv.config import load_recipe
from dlcv.models import create_model, rebuild_args
from dlcv.recipes import RECIPES
from dlcv.report.architecture import build_for_run

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RECIPE_FILES = (("classify", "p1/model_a.yaml"), ("classify", "p1/model_b.yaml"), ("classify", "p1/r3_model_a.yaml"),
                ("segment", "seg/fcn32s.yaml"), ("segment", "seg/deeplabv3.yaml"), ("segment", "seg/gpu.yaml"),
                ("segment", "seg/cpu.yaml"), ("ssl_finetune", "ssl/finetune.yaml"))


def fastest(repeats: int, fn):
    """(result, fastest seconds) of ``fn()`` over ``repeats`` runs; (error text, None) when it fails."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 (a library that cannot trace a model is a finding, not a crash)
            return f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}", None
        times.append(time.perf_counter() - start)
    return result, min(times)


def torchinfo_rows(recipe, device: str, depth: int = 3):
    """torchinfo's summary of the recipe's model built on ``device`` (random weights, as dlcv's table)."""
    side = recipe.input_side()
    with torch.device(device):
        model = create_model(recipe.model.name, num_classes=recipe.CLASSES or 50, task=recipe.task,
                             **rebuild_args(dict(recipe.model.args)))
    stats = summary(model, input_size=(1, 3, side, side), device=device, depth=depth, verbose=0)
    return len(stats.summary_list), stats.total_params


def main() -> None:
    header()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for task, name in RECIPE_FILES:
        recipe = load_recipe(RECIPES[task], CONFIGS / name)
        ours, ours_s = fastest(args.repeats, lambda: build_for_run(recipe))
        ours_text = (f"{len(ours[2].view(60))} rows, {sum(p.numel() for p in ours[0].parameters()):,} parameters, "
                     f"{ours_s:.2f} s" if ours_s is not None else ours)
        print(f"{name} ({recipe.model.name} at {recipe.input_side()} px)")
        print(f"  dlcv (meta device):      {ours_text}")
        for device in ("meta", "cpu"):
            theirs, theirs_s = fastest(args.repeats, lambda: torchinfo_rows(recipe, device))
            text = f"{theirs[0]} rows, {theirs[1]:,} parameters, {theirs_s:.2f} s" if theirs_s is not None else theirs
            print(f"  torchinfo ({device}):{' ' * (10 - len(device))}{text}")


if __name__ == "__main__":
    main()
