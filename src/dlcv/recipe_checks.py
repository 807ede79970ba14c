"""The type and range of every recipe value, checked when a recipe is loaded, before any work.

``CHECKS`` maps a dotted key (``optim.lr``) to the rule its value must follow; a key means the same in
every task that has it (a section a task lacks is not checked), unless it is prefixed with its task
(``segment:train.tta``). A broken rule is one line naming the
key and where the value came from: ``configs/x.yaml: optim.lr must be a number >= 0, got -1``. The
defaults and meaning of each key are in ``dlcv.recipes``; checks that join several keys (epochs of
snapshots, TTA modes per task) are the tasks' ``check_*_recipe`` there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from dlcv.data.p1 import MAX_CLASSES
from dlcv.errors import DlcvError
from dlcv.recipes import SEG_TTA_MODES, TTA_MODES


@dataclass(frozen=True)
class Rule:
    """``test(value)`` is True for a good value; ``wants`` says what a good value is."""

    test: Callable[[object], bool]
    wants: str


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)


def whole(low: int = 0, high: int | None = None) -> Rule:
    test = (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low and (high is None or v <= high))
    return Rule(test, f"a whole number >= {low}" + (f" and <= {high}" if high is not None else ""))


def number(low: float = 0.0, high: float | None = None, open_low: bool = False, open_high: bool = False) -> Rule:
    def test(v) -> bool:
        if not _is_number(v):
            return False
        above = v > low if open_low else v >= low
        below = high is None or (v < high if open_high else v <= high)
        return above and below

    if high is None:
        wants = f"a number {'>' if open_low else '>='} {low:g}"
    else:
        wants = f"a number in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
    return Rule(test, wants)


def one_of(*names: str) -> Rule:
    return Rule(lambda v: v in names, f"one of {', '.join(names)}")


def optional(rule: Rule) -> Rule:
    return Rule(lambda v: v is None or rule.test(v), f"null or {rule.wants}")


def list_of(count: int | None, rule: Rule) -> Rule:
    return Rule(lambda v: isinstance(v, list) and (count is None or len(v) == count) and all(map(rule.test, v)),
                f"a list of {count if count is not None else 'any number of'} ({rule.wants})")


BOOLEAN = Rule(lambda v: isinstance(v, bool), "true or false")
TEXT = Rule(lambda v: isinstance(v, str) and bool(v), "a non-empty text")
POSITIVE = number(0, open_low=True)
SHARE = number(0, 1)
STATS = list_of(3, number(0))
PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")

CHECKS: dict[str, Rule] = {
    "seed": whole(0),
    # optimiser and schedule
    "optim.name": one_of("sgd", "adam", "adamw", "lars"),
    "optim.lr": number(0),
    "optim.momentum": SHARE,
    "optim.nesterov": BOOLEAN,
    "optim.betas": list_of(2, number(0, 1, open_high=True)),
    "optim.weight_decay": number(0),
    "optim.decay_norm_and_bias": BOOLEAN,
    "schedule.name": one_of("constant", "onecycle", "cosine", "cosine_restarts", "linear", "poly", "multistep"),
    "schedule.warmup_epochs": number(0),
    "schedule.pct_start": number(0, 1, open_low=True, open_high=True),
    "schedule.anneal": one_of("linear", "cos"),
    "schedule.div_factor": POSITIVE,
    "schedule.final_div_factor": POSITIVE,
    "schedule.min_lr_fraction": SHARE,
    "schedule.power": number(0),
    "schedule.milestones": list_of(None, number(0)),
    "schedule.gamma": POSITIVE,
    "schedule.restart_epochs": whole(1),
    "schedule.restart_mult": whole(1),
    # data
    "data.holdout": number(0, 1, open_high=True),
    "data.num_classes": optional(whole(1, MAX_CLASSES)),
    "data.batch_size": whole(1),
    "data.eval_batch_size": whole(1),
    "data.mean": STATS,
    "data.std": list_of(3, POSITIVE),
    "data.image_size": optional(whole(1)),
    "data.input_size": optional(whole(1)),
    "data.crop_padding": whole(0),
    "data.flip": BOOLEAN,
    "data.rot90": BOOLEAN,
    "data.cutout": whole(0),
    "data.auto_augment": one_of("none", "trivialaugment", "randaugment"),
    "data.randaugment_ops": whole(0),
    "data.randaugment_magnitude": number(0, 30),
    "data.mixup_alpha": number(0),
    "data.cutmix_alpha": number(0),
    "data.cache": BOOLEAN,
    "data.unmapped": one_of("unknown", "error"),
    "data.train_size": whole(1),
    "data.eval_size": whole(1),
    # training
    "train.epochs": whole(1),
    "train.precision": one_of(*PRECISIONS),
    "train.loss": one_of("ce", "focal"),
    "train.focal_gamma": number(0),
    "train.label_smoothing": number(0, 1, open_high=True),
    "train.early_stopping_patience": whole(0),
    "train.ema_decay": number(0, 1, open_high=True),
    "train.gradient_clip": number(0),
    "train.save_top_k": whole(1),
    "train.channels_last": BOOLEAN,
    "train.threads": optional(whole(1)),
    "train.accelerator": one_of("auto", "cpu", "gpu", "cuda", "mps", "tpu"),
    "train.devices": Rule(lambda v: v == "auto" or whole(1).test(v) or list_of(None, whole(0)).test(v),
                          "auto, a number of devices >= 1 or a list of device indices"),
    "train.num_nodes": whole(1),
    "train.strategy": TEXT,
    "train.sync_batchnorm": BOOLEAN,
    "train.deterministic": BOOLEAN,
    "classify:train.tta": one_of(*TTA_MODES),
    "classify:train.val_tta": one_of(*TTA_MODES),
    "segment:train.tta": one_of(*SEG_TTA_MODES),
    "segment:train.val_tta": one_of(*SEG_TTA_MODES),
    "segment:data.scale": Rule(lambda v: isinstance(v, list) and len(v) == 2 and all(map(_is_number, v))
                               and 0 < v[0] <= v[1] <= 1, "[low, high] with 0 < low <= high <= 1"),
    "embed.train_subset": whole(0),
    # segmentation loss
    "loss.class_weights": optional(list_of(7, number(0))),
    "loss.label_smoothing": number(0, 1, open_high=True),
    "loss.focal_gamma": number(0),
    "loss.dice_weight": number(0),
    # BYOL
    "views.size": whole(1),
    "views.min_scale": number(0, 1, open_low=True),
    "views.hflip": SHARE,
    "views.jitter_prob": SHARE,
    "views.brightness": number(0),
    "views.contrast": number(0),
    "views.saturation": number(0),
    "views.hue": number(0, 0.5),
    "views.grayscale": SHARE,
    "views.blur": list_of(2, SHARE),
    "views.sigma": list_of(2, number(0)),
    "views.solarize": list_of(2, SHARE),
    "byol.hidden_dim": whole(1),
    "byol.output_dim": whole(1),
    "byol.momentum": number(0, 1, open_high=True),
    "monitor.k": whole(1),
    "monitor.max_bank": whole(1),
    # Segment Anything's automatic mask generator (its own checks are bare asserts)
    "generator.points_per_side": whole(1),
    "generator.points_per_batch": whole(1),
    "generator.crop_n_points_downscale_factor": whole(1),
    "generator.crop_n_layers": whole(0),
    "generator.min_mask_region_area": whole(0),
    "generator.pred_iou_thresh": SHARE,
    "generator.stability_score_thresh": SHARE,
    "generator.box_nms_thresh": SHARE,
    "generator.crop_nms_thresh": SHARE,
    "generator.crop_overlap_ratio": SHARE,
    "generator.stability_score_offset": POSITIVE,
    "prefilter": BOOLEAN,
    "refine.min_area": whole(0),
    "refine.min_predicted_iou": Rule(_is_number, "a number"),  # SAM's own estimate: any real number
}


MISSING = object()  # what ``lookup`` gives for a key the tree does not set


def lookup(tree: dict, key: str):
    """The value of the dotted ``key`` in the nested ``tree``, or ``MISSING``."""
    node = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def check_values(recipe: dict, source_of: Callable[[str], str]) -> None:
    """Every value of ``recipe`` that ``CHECKS`` has a rule for follows it; else one line naming the key
    and ``source_of(key)`` (the recipe file, ``--set``, or the run folder's recipe)."""
    for name, rule in CHECKS.items():
        task, _, key = name.rpartition(":")
        if task and recipe.get("task") != task:
            continue
        value = lookup(recipe, key)
        if value is not MISSING and not rule.test(value):
            raise DlcvError(f"{source_of(key)}: {key} must be {rule.wants}, got {value!r}")


def check_model(recipe: dict, where: str) -> None:
    """The recipe's model (``model.name`` with ``model.args``) can be built: built once on the meta
    device (shapes only, no memory, no weights read), so an unknown name or argument, or an argument
    the model refuses, is one line naming ``where`` before any data is read."""
    import torch

    from dlcv.checkpoints import rebuild_args
    from dlcv.models import create_model

    spec = recipe["model"]
    kind = "segment" if recipe.get("task") == "segment" else "classify"
    if not isinstance(spec.get("name"), str) or not isinstance(spec.get("args") or {}, dict):
        raise DlcvError(f"{where}: model must be {{name: NAME, args: {{...}}}}, got {spec!r}")
    try:
        with torch.device("meta"):
            create_model(spec["name"], num_classes=2, kind=kind, **rebuild_args(spec.get("args") or {}))
    except DlcvError as exc:
        raise DlcvError(f"{where}: {exc}") from None
