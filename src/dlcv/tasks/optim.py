"""Optimisers and learning-rate schedules by name, from a recipe's ``optim`` and ``schedule``."""

from __future__ import annotations

import math

import torch
from torch import nn

from dlcv.errors import DlcvError


def parameter_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool) -> list[dict]:
    """Weight decay on weights of convolutions and linear layers; not on norms and biases unless asked."""
    if decay_norm_and_bias:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _lars(groups: list[dict], cfg: dict) -> torch.optim.Optimizer:
    """BYOL's optimiser for large batches: lightly's LARS."""
    from lightly.utils.lars import LARS

    return LARS(groups, lr=float(cfg["lr"]), momentum=float(cfg["momentum"]))


# Optimiser name -> builder of (parameter groups, recipe's optim section); recipes.OPTIM names the same.
OPTIMIZERS = {
    "sgd": lambda groups, cfg: torch.optim.SGD(groups, lr=float(cfg["lr"]), momentum=float(cfg["momentum"]),
                                               nesterov=bool(cfg["nesterov"])),
    "adam": lambda groups, cfg: torch.optim.Adam(groups, lr=float(cfg["lr"]), betas=tuple(cfg["betas"])),
    "adamw": lambda groups, cfg: torch.optim.AdamW(groups, lr=float(cfg["lr"]), betas=tuple(cfg["betas"])),
    "lars": _lars,
}


def build_optimizer(model: nn.Module, cfg: dict) -> torch.optim.Optimizer:
    groups = parameter_groups(model, float(cfg["weight_decay"]), bool(cfg["decay_norm_and_bias"]))
    name = cfg["name"].lower()
    if name not in OPTIMIZERS:
        raise DlcvError(f"unknown optimizer {cfg['name']!r}; known: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](groups, cfg)


def _onecycle(optimizer, cfg: dict, total_steps: int, steps_per_epoch: int, warmup: int):
    max_lrs = [g["lr"] for g in optimizer.param_groups]
    steps = max(total_steps, 2)
    # torch divides by the warm-up's length in steps less one: a run of a few steps whose warm-up
    # is a single step (or none) gets half a step of it instead of a ZeroDivisionError.
    pct_start = float(cfg["pct_start"]) if float(cfg["pct_start"]) * steps > 1 else 1.5 / steps
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=max_lrs, total_steps=steps, pct_start=pct_start,
        anneal_strategy=cfg["anneal"], div_factor=float(cfg["div_factor"]),
        final_div_factor=float(cfg["final_div_factor"]), cycle_momentum=False,
    )


def _annealing(shape):
    """A schedule that ramps up over the warm-up, then follows ``shape(progress)`` down to the floor."""

    def build(optimizer, cfg: dict, total_steps: int, steps_per_epoch: int, warmup: int):
        floor = float(cfg["min_lr_fraction"])

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
            return floor + (1 - floor) * shape(progress, cfg)

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    return build


def _cosine_restarts(optimizer, cfg: dict, total_steps: int, steps_per_epoch: int, warmup: int):
    """SGDR: cosine periods of restart_epochs, each restart_mult times longer."""
    floor = float(cfg["min_lr_fraction"])
    period = max(1, round(float(cfg["restart_epochs"]) * steps_per_epoch))
    mult = max(1, int(cfg["restart_mult"]))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t, length = step - warmup, period
        while t >= length:
            t, length = t - length, length * mult
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t / length))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _multistep(optimizer, cfg: dict, total_steps: int, steps_per_epoch: int, warmup: int):
    milestones = [int(m) * steps_per_epoch for m in cfg["milestones"]]
    gamma = float(cfg["gamma"])

    def factor(step: int) -> float:
        ramp = (step + 1) / warmup if step < warmup else 1.0
        return ramp * gamma ** sum(step >= m for m in milestones)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# Schedule name -> builder of (optimizer, recipe's schedule section, total steps, steps per epoch, warm-up
# steps), or None for a constant rate; recipes.SCHEDULE names the same.
SCHEDULES = {
    "constant": None,
    "onecycle": _onecycle,
    "cosine": _annealing(lambda t, cfg: 0.5 * (1 + math.cos(math.pi * t))),
    "cosine_restarts": _cosine_restarts,
    "linear": _annealing(lambda t, cfg: 1 - t),
    "poly": _annealing(lambda t, cfg: (1 - t) ** float(cfg.get("power", 0.9))),  # DeepLab's (1 - t)^power
    "multistep": _multistep,
}


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: dict, total_steps: int, steps_per_epoch: int) -> dict | None:
    """A Lightning scheduler config stepping every batch, or None for a constant rate."""
    name = cfg["name"].lower()
    if name not in SCHEDULES:
        raise DlcvError(f"unknown schedule {cfg['name']!r}; known: {', '.join(SCHEDULES)}")
    if SCHEDULES[name] is None:
        return None
    warmup = round(float(cfg["warmup_epochs"]) * steps_per_epoch)
    return {"scheduler": SCHEDULES[name](optimizer, cfg, total_steps, steps_per_epoch, warmup), "interval": "step"}
