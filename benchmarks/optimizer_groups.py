"""dlcv's optimiser parameter groups (``dlcv.tasks.optim.parameter_groups``) against timm's
(``param_groups_weight_decay``, what ``create_optimizer_v2`` groups with ``filter_bias_and_bn``) for every shipped
classification recipe's model (random weights): whether the same tensors are decayed and the same left undecayed,
and whether the optimisers built on each take the same first step.

Usage: python benchmarks/optimizer_groups.py
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from machine import header
from timm.optim import create_optimizer_v2, param_groups_weight_decay

from dlcv.config import load_recipe
from dlcv.models import create_model, rebuild_args
from dlcv.recipes import RECIPES
from dlcv.tasks.optim import build_optimizer, parameter_groups

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RECIPE_FILES = (("classify", "p1/model_a.yaml"), ("classify", "p1/model_a_cpu.yaml"), ("classify", "p1/model_b.yaml"),
                ("classify", "p1/model_b_cpu.yaml"), ("classify", "p1/r1_model_a.yaml"),
                ("classify", "p1/r2_model_a.yaml"), ("classify", "p1/r3_model_a.yaml"),
                ("classify", "p1/r5_model_b.yaml"), ("ssl_finetune", "ssl/finetune.yaml"),
                ("ssl_finetune", "ssl/finetune_cpu.yaml"), ("ssl_finetune", "ssl/supervised_cpu.yaml"))
TIMM_NAMES = {"sgd": "sgd", "adam": "adam", "adamw": "adamw"}  # timm's "sgd" is Nesterov's, as dlcv's default


def split(groups: list[dict]) -> tuple[set, set]:
    """(decayed tensors' ids, undecayed tensors' ids) of optimiser parameter groups."""
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    return decayed, {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}


def first_step(model: torch.nn.Module, optimizer_of) -> list[torch.Tensor]:
    """The weights of a copy of ``model`` after one step of ``optimizer_of(copy)`` on a fixed random input."""
    model = copy.deepcopy(model).train()
    optimizer = optimizer_of(model)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)  # the same dropout masks for both
    model(x).square().mean().backward()
    optimizer.step()
    return [p.detach() for p in model.parameters()]


def main() -> None:
    header()
    for task, name in RECIPE_FILES:
        recipe = load_recipe(RECIPES[task], CONFIGS / name)
        torch.manual_seed(0)
        args = rebuild_args(dict(recipe.model.args))
        model = create_model(recipe.model.name, num_classes=50, task="classify", **args)
        cfg = recipe.optim
        ours = split(parameter_groups(model, cfg))
        theirs = split(param_groups_weight_decay(model, cfg.weight_decay))
        same = "the same tensors" if ours == theirs else "DIFFERENT tensors"
        line = (f"{name} ({recipe.model.name}, {cfg.name}, weight decay {cfg.weight_decay:g}): {len(ours[0])} decayed, "
                f"{len(ours[1])} not; timm: {same}")
        if cfg.name in TIMM_NAMES and cfg.weight_decay > 0 and (cfg.name != "sgd" or cfg.nesterov):
            a = first_step(model, lambda m: build_optimizer(m, cfg))
            b = first_step(model, lambda m: create_optimizer_v2(m, opt=TIMM_NAMES[cfg.name], lr=cfg.lr,
                                                                weight_decay=cfg.weight_decay, momentum=cfg.momentum,
                                                                betas=tuple(cfg.betas)) if cfg.name != "sgd"
                           else create_optimizer_v2(m, opt="sgd", lr=cfg.lr, weight_decay=cfg.weight_decay,
                                                    momentum=cfg.momentum))
            worst = max((u - v).abs().max().item() for u, v in zip(a, b))
            line += f"; first step's largest difference {worst:.1e}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
