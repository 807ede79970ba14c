"""Optimisers and learning-rate schedules by name, from a recipe's ``optim`` and ``schedule``."""

from __future__ import annotations

import math

import torch
from lightly.utils.lars import LARS
from torch import nn

from dlcv.errors import DlcvError
from dlcv.plan import Plan


def _decay_groups(params: list, weight_decay: float, decay_norm_and_bias: bool, **extra) -> list[dict]:
    """Weight decay on weights of convolutions and linear layers; not on norms and biases unless asked."""
    if decay_norm_and_bias:
        return [{"params": params, "weight_decay": weight_decay, **extra}]
    return [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay, **extra},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0, **extra}]


def parameter_groups(model: nn.Module, cfg) -> list[dict]:
    """Split the trainable parameters into optimiser groups: decayed or not, and the head at its own rate.

    Args:
        model: the model to train; with ``head_lr_mult`` other than 1 it needs a ``head`` module (the classifier).
        cfg: the recipe's ``optim`` section (``weight_decay``, ``decay_norm_and_bias``, ``head_lr_mult``, ``lr``).

    Returns:
        The parameter groups; the head's, at ``head_lr_mult`` times the learning rate, come last when that is not 1.

    Raises:
        DlcvError: if ``head_lr_mult`` is not 1 and the model has no ``head`` module.
    """
    decay, norm, mult = cfg.weight_decay, cfg.decay_norm_and_bias, cfg.head_lr_mult
    trainable = [p for p in model.parameters() if p.requires_grad]
    if mult == 1:
        return _decay_groups(trainable, decay, norm)
    if not isinstance(getattr(model, "head", None), nn.Module):
        raise DlcvError(f"optim.head_lr_mult is {mult:g} but {type(model).__name__} has no classifier head")
    head = {id(p) for p in model.head.parameters()}
    return (_decay_groups([p for p in trainable if id(p) not in head], decay, norm)
            + _decay_groups([p for p in trainable if id(p) in head], decay, norm, lr=cfg.lr * mult))


# Optimiser name (``dlcv.recipes.OPTIMIZERS``) -> builder of (parameter groups, recipe's optim section).
OPTIMIZERS = {
    "sgd": lambda groups, cfg: torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                                               nesterov=cfg.nesterov),
    "adam": lambda groups, cfg: torch.optim.Adam(groups, lr=cfg.lr, betas=tuple(cfg.betas)),
    "adamw": lambda groups, cfg: torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas)),
    "lars": lambda groups, cfg: LARS(groups, lr=cfg.lr, momentum=cfg.momentum),  # BYOL's, for large batches
}


def build_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    """Build the optimiser of a recipe's ``optim`` section over ``model``'s parameter groups.

    Raises:
        DlcvError: as ``parameter_groups`` does.
    """
    return OPTIMIZERS[cfg.name](parameter_groups(model, cfg), cfg)


def _onecycle(cfg, plan: Plan, warmup: int):
    """torch's ``OneCycleLR`` factor (without momentum cycling) over a plan that may move.

    It rises from 1 / div_factor to 1 over ``pct_start`` of the steps, then falls to 1 / div_factor / final_div_factor.
    """
    start, floor = 1 / cfg.div_factor, 1 / cfg.div_factor / cfg.final_div_factor
    shape = ((lambda a, b, t: b + (a - b) / 2 * (1 + math.cos(math.pi * t))) if cfg.anneal == "cos"
             else (lambda a, b, t: a + (b - a) * t))

    def factor(step: int) -> float:
        steps = max(plan.total_steps, 2)
        # A rise of pct_start * steps - 1 <= 0 steps (a short run) would divide by zero: it gets half a step.
        pct = cfg.pct_start if cfg.pct_start * steps > 1 else 1.5 / steps
        peak = pct * steps - 1
        if step <= peak:
            return shape(start, 1.0, step / peak)
        return shape(1.0, floor, min(1.0, (step - peak) / (steps - 1 - peak)))

    return factor


def _ramp(step: int, warmup: int) -> float:
    return (step + 1) / warmup if step < warmup else 1.0


def _annealing(shape):
    """A schedule that ramps up over the warm-up, then follows ``shape(progress)`` down to the floor."""
    def build(cfg, plan: Plan, warmup: int):
        floor = cfg.min_lr_fraction

        def factor(step: int) -> float:
            if step < warmup:
                return _ramp(step, warmup)
            return floor + (1 - floor) * shape(plan.progress(step, warmup), cfg)

        return factor

    return build


def _cosine_restarts(cfg, plan: Plan, warmup: int):
    """SGDR (Loshchilov & Hutter, 2017): cosine periods of restart_epochs, each restart_mult times longer."""
    floor, mult = cfg.min_lr_fraction, cfg.restart_mult
    period = max(1, round(cfg.restart_epochs * plan.steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return _ramp(step, warmup)
        t, length = step - warmup, period
        while t >= length:
            t, length = t - length, length * mult
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t / length))

    return factor


def milestone_steps(milestones: list, plan: Plan) -> list[int]:
    """Convert schedule milestones to optimiser steps.

    Args:
        milestones: each below 1 a share of the run's steps (moving with a budget's plan), else a number of epochs.
        plan: the run's plan.

    Returns:
        The milestones' steps, rounded.
    """
    return [round(float(m) * plan.total_steps) if float(m) < 1 else round(float(m) * plan.steps_per_epoch)
            for m in milestones]


def _multistep(cfg, plan: Plan, warmup: int):
    return lambda step: _ramp(step, warmup) * cfg.gamma ** sum(step >= m for m in milestone_steps(cfg.milestones, plan))


# Schedule name -> builder of (schedule section, plan, warm-up steps) -> the rate's factor per step; None: constant.
SCHEDULES = {
    "constant": None,
    "onecycle": _onecycle,
    "cosine": _annealing(lambda t, cfg: 0.5 * (1 + math.cos(math.pi * t))),
    "cosine_restarts": _cosine_restarts,
    "linear": _annealing(lambda t, cfg: 1 - t),
    "poly": _annealing(lambda t, cfg: (1 - t) ** cfg.power),  # DeepLab's (1 - t)^power
    "multistep": _multistep,
}


def build_scheduler(optimizer: torch.optim.Optimizer, cfg, plan: Plan) -> dict | None:
    """Build a Lightning scheduler config that steps every batch over ``plan``, or None for a constant rate.

    Args:
        optimizer: the optimiser whose learning rates it scales.
        cfg: the recipe's ``schedule`` section.
        plan: the run's plan, read at every step (a budget may move its end).

    Returns:
        ``{"scheduler": LambdaLR, "interval": "step"}``, or None for the ``constant`` schedule.
    """
    if SCHEDULES[cfg.name] is None:
        return None
    warmup = round(cfg.warmup_epochs * plan.steps_per_epoch)
    factor = SCHEDULES[cfg.name](cfg, plan, warmup)
    return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, factor), "interval": "step"}
