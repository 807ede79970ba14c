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


def build_optimizer(model: nn.Module, cfg: dict) -> torch.optim.Optimizer:
    groups = parameter_groups(model, float(cfg["weight_decay"]), bool(cfg["decay_norm_and_bias"]))
    name = cfg["name"].lower()
    lr = float(cfg["lr"])
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=float(cfg["momentum"]), nesterov=bool(cfg["nesterov"]))
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=tuple(cfg["betas"]))
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg["betas"]))
    if name == "lars":  # BYOL's optimiser for large batches; lightly's implementation
        from lightly.utils.lars import LARS

        return LARS(groups, lr=lr, momentum=float(cfg["momentum"]))
    raise DlcvError(f"unknown optimizer {cfg['name']!r}; known: sgd, adam, adamw, lars")


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: dict, total_steps: int, steps_per_epoch: int) -> dict | None:
    """A Lightning scheduler config stepping every batch, or None for a constant rate."""
    name = cfg["name"].lower()
    warmup = round(float(cfg["warmup_epochs"]) * steps_per_epoch)
    if name == "constant":
        return None
    if name == "onecycle":
        max_lrs = [g["lr"] for g in optimizer.param_groups]
        steps = max(total_steps, 2)
        # torch divides by the warm-up's length in steps less one: a run of a few steps whose warm-up
        # is a single step (or none) gets half a step of it instead of a ZeroDivisionError.
        pct_start = float(cfg["pct_start"]) if float(cfg["pct_start"]) * steps > 1 else 1.5 / steps
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=max_lrs, total_steps=steps, pct_start=pct_start,
            anneal_strategy=cfg["anneal"], div_factor=float(cfg["div_factor"]),
            final_div_factor=float(cfg["final_div_factor"]), cycle_momentum=False,
        )
    elif name in ("cosine", "linear", "poly"):
        floor = float(cfg["min_lr_fraction"])
        power = float(cfg.get("power", 0.9))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
            if name == "cosine":
                shape = 0.5 * (1 + math.cos(math.pi * progress))
            elif name == "poly":  # DeepLab's (1 - t)^power
                shape = (1 - progress) ** power
            else:
                shape = 1 - progress
            return floor + (1 - floor) * shape

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    elif name == "cosine_restarts":  # SGDR: cosine periods of restart_epochs, each restart_mult times longer
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

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    elif name == "multistep":
        milestones = [int(m) * steps_per_epoch for m in cfg["milestones"]]
        gamma = float(cfg["gamma"])

        def factor(step: int) -> float:
            ramp = (step + 1) / warmup if step < warmup else 1.0
            return ramp * gamma ** sum(step >= m for m in milestones)

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    else:
        raise DlcvError(f"unknown schedule {cfg['name']!r}; known: constant, onecycle, cosine, cosine_restarts, linear, poly, multistep")
    return {"scheduler": scheduler, "interval": "step"}
