"""The recipe schema: every key a recipe may set, in one place with its default, its rule and its meaning.

A task's schema is a tree of sections whose leaves are ``Key(default, rule, meaning)``; ``defaults``
turns it into the plain dict a recipe starts from and ``rules`` into the dotted keys' rules that
``dlcv.config.load_recipe`` checks every value against (``dlcv.recipe_checks``). A recipe YAML file
overrides the defaults; keys the schema does not list are refused. A key without a rule is checked
where it is used, across keys (snapshot epochs against the epochs; the model by building it) or as a
path. This module imports nothing heavy, so commands that only read recipes start fast.

Plain dataclasses, not pydantic: every module reads a recipe as a plain dict (saved in run folders and
checkpoints as YAML), pydantic is not in the stack, and the rules must name the recipe file and the
``--set`` that gave a bad value, which the loader already knows.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from dataclasses import dataclass

from dlcv.data.p1 import MAX_CLASSES
from dlcv.errors import DlcvError, shown
from dlcv.recipe_checks import (
    ANY_NUMBER,
    BOOLEAN,
    DURATION,
    FOLDER_NAME,
    POSITIVE,
    SHARE,
    STATS,
    TEXT,
    Rule,
    list_of,
    number,
    one_of,
    optional,
    whole,
)

TTA_MODES = ("none", "flip", "flip_shift")
SEG_TTA_MODES = ("none", "flip", "d4")  # flip: image + mirror; d4: the 4 rotations x 2 mirrors
TTA_PASSES = {"none": 1, "flip": 2, "flip_shift": 6, "d4": 8}  # forward passes per image of each mode
PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


@dataclass(frozen=True)
class Key:
    """A recipe key: its default, the rule its value follows (None: checked where it is used), its meaning."""

    default: object
    rule: Rule | None
    meaning: str


def task_key(task: str) -> Key:
    """A schema's ``task`` key: a recipe is checked and run by its own task's commands only."""
    return Key(task, one_of(task), "the task the recipe is for (another task's command refuses it)")


def with_default(key: Key, default) -> Key:
    """The same key with another default (a task's own choice)."""
    return Key(default, key.rule, key.meaning)


def defaults(schema: dict) -> dict:
    """The plain recipe of a schema: every key at its default."""
    return {name: defaults(node) if isinstance(node, dict) else copy.deepcopy(node.default)
            for name, node in schema.items()}


def leaves(schema: dict, prefix: str = "") -> Iterator[tuple[str, Key]]:
    """``(dotted key, Key)`` of every key of a schema, in order."""
    for name, node in schema.items():
        if isinstance(node, dict):
            yield from leaves(node, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", node


def rules(schema: dict) -> dict[str, Rule]:
    """``{dotted key: rule}`` of every key of a schema that has a rule."""
    return {key: node.rule for key, node in leaves(schema) if node.rule is not None}


def meanings(schema: dict) -> dict[str, str]:
    """``{dotted key: one-line meaning}`` of every key of a schema."""
    return {key: node.meaning for key, node in leaves(schema)}


# --- the sections every training task shares ------------------------------------------------------------
RUN = {
    "name": Key(None, optional(FOLDER_NAME), "run folder name under --runs-dir; default: the recipe file's name"),
    "seed": Key(0, whole(0), "seeds the split, the weights and every epoch's random draws"),
}

OPTIM = {
    "name": Key("sgd", one_of("sgd", "adam", "adamw", "lars"), "the optimiser"),
    "lr": Key(0.1, number(0), "the (peak) learning rate"),
    "momentum": Key(0.9, SHARE, "sgd and lars: momentum"),
    "nesterov": Key(True, BOOLEAN, "sgd: Nesterov momentum"),
    "betas": Key([0.9, 0.999], list_of(2, number(0, 1, open_high=True)), "adam and adamw: the moment decays"),
    "weight_decay": Key(5e-4, number(0), "weight decay (decoupled for adamw)"),
    "decay_norm_and_bias": Key(False, BOOLEAN, "also decay normalisation weights and biases"),
    "head_lr_mult": Key(1.0, POSITIVE, "a classifier's head (last layer) learns at this multiple of lr; the "
                        "schedule scales both alike (e.g. 10 when fine-tuning pretrained weights)"),
}

SCHEDULE = {
    "name": Key("onecycle", one_of("constant", "onecycle", "cosine", "cosine_restarts", "linear", "poly",
                                   "multistep"), "the learning-rate schedule, stepped every batch"),
    "warmup_epochs": Key(0, number(0), "cosine, linear, poly, multistep: linear ramp over these epochs"),
    "pct_start": Key(0.25, number(0, 1, open_low=True, open_high=True), "onecycle: share of steps rising to the peak"),
    "anneal": Key("linear", one_of("linear", "cos"), "onecycle: the shape of the rise and fall"),
    "div_factor": Key(10.0, POSITIVE, "onecycle: start lr = lr / div_factor"),
    "final_div_factor": Key(100.0, POSITIVE, "onecycle: end lr = start lr / final_div_factor"),
    "min_lr_fraction": Key(0.0, SHARE, "cosine, linear, poly: floor as a fraction of lr"),
    "power": Key(0.9, number(0), "poly: lr * (1 - t)^power"),
    "milestones": Key([], list_of(None, number(0)), "multistep: where lr drops: epochs (1 and more) or shares of "
                      "the run (below 1, e.g. [0.5, 0.75]; with train.budget, shares only)"),
    "gamma": Key(0.1, POSITIVE, "multistep: the factor of each drop"),
    "restart_epochs": Key(10, whole(1), "cosine_restarts: epochs of the first cosine period (SGDR's T_0)"),
    "restart_mult": Key(1, whole(1), "cosine_restarts: each period this many times longer than the last (T_mult)"),
}

FOLDER = Rule(lambda v: isinstance(v, str) and bool(v), "a folder or file name")
NO_FOLDER = optional(Rule(lambda v: isinstance(v, str), "a folder or file name"))  # null or "": none
EPOCH_LIST = Rule(lambda v: v is None or isinstance(v, str) or (isinstance(v, list) and all(
    isinstance(e, (str, int)) and not isinstance(e, bool) for e in v)),
    "first, middle, last and/or epoch numbers, as a text or a list")

DEVICES = Rule(lambda v: v == "auto" or whole(1).test(v) or list_of(None, whole(0)).test(v),
               "auto, a number of devices >= 1 or a list of device indices")

TRAIN = {
    "epochs": Key(30, whole(1), "training epochs (with train.budget: only the plan until the speed is measured)"),
    "budget": Key(None, optional(DURATION), "end the whole command within this time (20m, 1h30m): the steps are "
                  "planned from the measured speed, the schedule runs over them, the epochs are a result"),
    "reference_epochs": Key(None, optional(number(0, open_low=True)),
                            "with train.budget: the fewest epochs of the runs behind the recipe's figure "
                            "(docs/results.md); a plan of fewer says it may not reach it"),
    "precision": Key("auto", one_of(*PRECISIONS), "auto: bf16-mixed where the hardware computes bf16 fast "
                     "(16-mixed on a T4 or V100), else 32-true; or any of Lightning's"),
    "loss": Key("ce", one_of("ce", "focal"), "ce (cross-entropy) or focal"),
    "focal_gamma": Key(2.0, number(0), "focal: the focusing exponent"),
    "label_smoothing": Key(0.1, number(0, 1, open_high=True), "share of each target spread over all classes"),
    "early_stopping_patience": Key(0, whole(0), "> 0: stop after this many epochs without a better monitored metric"),
    "ema_decay": Key(0.0, number(0, 1, open_high=True), "> 0: validate, checkpoint and predict with an exponential "
                     "moving average of the weights (bias-corrected)"),
    "gradient_clip": Key(0.0, number(0), "> 0: clip the gradients' global norm to this"),
    "save_top_k": Key(1, whole(1), "keep the k best checkpoints (top/), for predict --ensemble k"),
    "tta": Key("flip", one_of(*TTA_MODES), "prediction and final scoring: none, flip (image + mirror) or "
               "flip_shift (+ 1-px shifts)"),
    "val_tta": Key("flip", one_of(*TTA_MODES), "per-epoch validation (kept cheap: it runs every epoch)"),
    "channels_last": Key(True, BOOLEAN, "the channels-last memory layout (faster convolutions)"),
    "threads": Key(None, optional(whole(1)), "CPU threads for torch; null: all cores"),
    "accelerator": Key("auto", one_of("auto", "cpu", "gpu", "cuda", "mps", "tpu"), "Lightning's accelerator"),
    "devices": Key("auto", DEVICES, "a number of GPUs (or CPU processes), or auto: one, or one per process "
                   "that torchrun or SLURM started"),
    "num_nodes": Key(1, whole(1), "machines in a multi-node run"),
    "strategy": Key("auto", TEXT, "auto, ddp, ... (Lightning's); torchrun and SLURM are detected"),
    "sync_batchnorm": Key(False, BOOLEAN, "batch-norm statistics over all processes (GPUs; small per-device batches)"),
    "deterministic": Key(False, BOOLEAN, "deterministic algorithms wherever a kernel has one"),
}


def _without(section: dict, *names: str) -> dict:
    return {k: v for k, v in section.items() if k not in names}


# --- Problem 1: classification ----------------------------------------------------------------------------
DATA = {
    "train": Key("train_50", FOLDER, "folder under --data; labels from file names or train_labels"),
    "train_labels": Key(None, optional(FOLDER), "optional filename,label CSV under --data"),
    "validation": Key("val_50", NO_FOLDER, "folder under --data"),
    "validation_labels": Key(None, optional(FOLDER), "optional filename,label CSV under --data"),
    "holdout": Key(0.0, number(0, 1, open_high=True), "> 0: select checkpoints on this stratified share of train "
                   "instead; the validation folder is then scored once, at the end"),
    "num_classes": Key(None, optional(whole(1, MAX_CLASSES)), "null: highest training label + 1"),
    "batch_size": Key(256, whole(1), "training batch per process"),
    "eval_batch_size": Key(500, whole(1), "validation and prediction batch"),
    "mean": Key([0.5071, 0.4865, 0.4409], STATS, "per-channel mean (CIFAR-100's: the p1 images are of that kind)"),
    "std": Key([0.2673, 0.2564, 0.2762], list_of(3, POSITIVE), "per-channel standard deviation"),
    "image_size": Key(None, optional(whole(1)), "decode every image resized to this square side (folders of "
                      "mixed sizes: Office-Home)"),
    "input_size": Key(None, optional(whole(1)), "resize to this square size for the model (e.g. 224 for AlexNet)"),
    "crop_padding": Key(4, whole(0), "random crop after padding by this many pixels (reflect)"),
    "flip": Key(True, BOOLEAN, "random horizontal mirror"),
    "cutout": Key(0, whole(0), "side of the square zeroed in every training image (0: off)"),
    "auto_augment": Key("none", one_of("none", "trivialaugment", "randaugment"),
                        "TrivialAugmentWide or RandAugment, a fresh draw per image"),
    "auto_augment_min_epochs": Key(0, whole(0), "> 0: auto_augment only while the run's plan has at least this "
                                   "many epochs (a time budget gives a fast machine many: it gets the regulariser)"),
    "randaugment_ops": Key(2, whole(0), "randaugment: operations per image"),
    "randaugment_magnitude": Key(9, number(0, 30), "randaugment: the magnitude bin (of 31)"),
    "mixup_alpha": Key(0.0, number(0), "> 0: MixUp with this Beta(alpha, alpha)"),
    "cutmix_alpha": Key(0.0, number(0), "> 0: CutMix; with both on, one of the two per batch at equal odds"),
    "cache": Key(True, BOOLEAN, "decode once into a memory-mapped cache under $DLCV_CACHE or ~/.cache/dlcv"),
}

EMBED = {
    "epochs": Key("first,middle,last", EPOCH_LIST, "snapshot epochs: words and/or numbers; \"\" for none"),
    "train_subset": Key(0, whole(0), "also keep this many training images' features (a fixed, class-balanced "
                        "sample)"),
}

CLASSIFY = {
    "task": task_key("classify"),
    "name": RUN["name"],
    "seed": RUN["seed"],
    "data": DATA,
    "model": {"name": Key("dlcv_net", None, "any registered model (dlcv models)"),
              "args": Key({}, None, "free-form: the model builder's arguments")},
    "optim": OPTIM,
    "schedule": SCHEDULE,
    "train": TRAIN,
    "embed": EMBED,
}

# --- Problem 2: segmentation ------------------------------------------------------------------------------
SEG_DATA = {
    "train": Key("train", FOLDER, "folder of NNNN_sat.jpg / NNNN_mask.png pairs under --data"),
    "validation": Key("validation", NO_FOLDER, "folder of pairs under --data"),
    "holdout": Key(0.0, number(0, 1, open_high=True), "> 0: select checkpoints on this random share of train; "
                   "validation scored once at the end"),
    "unmapped": Key("unknown", one_of("unknown", "error"), "mask colours in no class (red): unknown (count as "
                    "Unknown) or error"),
    "batch_size": Key(8, whole(1), "training batch per process"),
    "eval_batch_size": Key(8, whole(1), "validation and prediction batch"),
    "train_size": Key(512, whole(1), "side of the augmented training crops fed to the model"),
    "eval_size": Key(512, whole(1), "whole images are resized to this for the model; predictions return to full "
                     "size"),
    "scale": Key([0.5, 1.0], Rule(lambda v: isinstance(v, list) and len(v) == 2 and all(map(ANY_NUMBER.test, v))
                                  and 0 < v[0] <= v[1] <= 1, "[low, high] with 0 < low <= high <= 1"),
                 "random crop side as a fraction of the image side (log-uniform)"),
    "flip": Key(True, BOOLEAN, "random mirror of image and mask"),
    "rot90": Key(True, BOOLEAN, "random quarter turns of image and mask"),
    "mean": Key(IMAGENET_MEAN, STATS, "per-channel mean (ImageNet's)"),
    "std": Key(IMAGENET_STD, list_of(3, POSITIVE), "per-channel standard deviation (ImageNet's)"),
    "cache": DATA["cache"],
}

SEG_LOSS = {
    "name": Key("ce", None, "ce, focal, dice, lovasz (Lovasz-softmax, an IoU surrogate), or a sum such as "
                "ce+lovasz"),
    "class_weights": Key(None, optional(list_of(7, number(0))), "7 numbers (Unknown last), for ce and focal"),
    "label_smoothing": Key(0.0, number(0, 1, open_high=True), "ce: share of each target spread over all classes"),
    "focal_gamma": Key(2.0, number(0), "focal: the focusing exponent"),
    "dice_weight": Key(1.0, number(0), "weight of the dice term in a sum"),
    "lovasz_weight": Key(1.0, number(0), "weight of the lovasz term in a sum"),
}

SEG_TRAIN = {
    **_without(TRAIN, "label_smoothing", "loss", "focal_gamma", "tta", "val_tta"),
    "epochs": with_default(TRAIN["epochs"], 20),
    "tta": Key("flip", one_of(*SEG_TTA_MODES), "prediction and final scoring: none, flip or d4 (4 rotations x 2 "
               "mirrors)"),
    "val_tta": Key("none", one_of(*SEG_TTA_MODES), "per-epoch validation"),
}

SEGMENT = {
    "task": task_key("segment"),
    "name": RUN["name"],
    "seed": RUN["seed"],
    "data": SEG_DATA,
    "model": {"name": Key("unet_lite0", None, "any registered segmentation model (dlcv models)"),
              "args": Key({}, None, "free-form: the model builder's arguments")},
    "loss": SEG_LOSS,
    "optim": {**OPTIM, "name": with_default(OPTIM["name"], "adamw"), "lr": with_default(OPTIM["lr"], 1e-3),
              "weight_decay": with_default(OPTIM["weight_decay"], 1e-4)},
    "schedule": SCHEDULE,
    "train": SEG_TRAIN,
    "progress": {
        "epochs": Key("first,middle,last", EPOCH_LIST, "epochs whose predicted masks are kept for the progress grid"),
        "images": Key(["0013", "0062", "0104"], None, "validation ids (the reports' choice); missing ones are "
                      "skipped"),
    },
}

# --- self-supervised pre-training (BYOL) and transfer to Office-Home -----------------------------------
BYOL_VIEWS = {  # lightly's BYOLView1Transform / BYOLView2Transform parameters (dlcv.data.ssl_views)
    "size": Key(128, whole(1), "side of each view fed to the network (R1 cropped 128)"),
    "min_scale": Key(0.08, number(0, 1, open_low=True), "smallest crop area as a share of the image"),
    "hflip": Key(0.5, SHARE, "probability of a mirror"),
    "jitter_prob": Key(0.8, SHARE, "probability of the colour jitter"),
    "brightness": Key(0.4, number(0), "colour jitter: brightness"),
    "contrast": Key(0.4, number(0), "colour jitter: contrast"),
    "saturation": Key(0.2, number(0), "colour jitter: saturation"),
    "hue": Key(0.1, number(0, 0.5), "colour jitter: hue"),
    "grayscale": Key(0.2, SHARE, "probability of grey"),
    "blur": Key([1.0, 0.1], list_of(2, SHARE), "probability of a Gaussian blur, per view"),
    "sigma": Key([0.1, 2.0], list_of(2, number(0)), "blur sigma range at 224 pixels; scaled by size / 224"),
    "solarize": Key([0.0, 0.2], list_of(2, SHARE), "probability of solarisation, per view"),
}

BYOL = {
    "task": task_key("ssl_pretrain"),
    "name": RUN["name"],
    "seed": RUN["seed"],
    "data": {
        "image_size": Key(None, optional(whole(1)), "decode every image resized to this side (Mini-ImageNet: 84 "
                          "to 128; R1 resized 160)"),
        "batch_size": with_default(DATA["batch_size"], 128),
        "eval_batch_size": DATA["eval_batch_size"],
        "mean": Key(IMAGENET_MEAN, STATS, "per-channel mean: the statistics' values only; no ImageNet weights "
                    "anywhere in this path"),
        "std": Key(IMAGENET_STD, list_of(3, POSITIVE), "per-channel standard deviation"),
        "cache": DATA["cache"],
    },
    "views": BYOL_VIEWS,
    "model": {"arch": Key("resnet50", None, "a torchvision ResNet (resnet18/34/50/101/152), randomly initialised")},
    "byol": {
        "hidden_dim": Key(4096, whole(1), "projection and prediction heads' hidden width"),
        "output_dim": Key(256, whole(1), "projection width"),
        "momentum": Key(0.99, number(0, 1, open_high=True), "the target's momentum at the start of its cosine "
                        "schedule to 1"),
    },
    "optim": {**OPTIM, "name": with_default(OPTIM["name"], "adam"), "lr": with_default(OPTIM["lr"], 3e-4),
              "weight_decay": with_default(OPTIM["weight_decay"], 1e-6)},  # R1's; "lars" also works
    "schedule": {**SCHEDULE, "name": with_default(SCHEDULE["name"], "cosine")},
    "train": {**_without(TRAIN, "loss", "focal_gamma", "label_smoothing", "tta", "val_tta", "save_top_k",
                         "ema_decay", "early_stopping_patience"),
              "epochs": with_default(TRAIN["epochs"], 100)},
    "monitor": {  # kNN on Office-Home train (bank, class-balanced) -> val, every epoch
        "k": Key(20, whole(1), "neighbours of the kNN monitor"),
        "max_bank": Key(5000, whole(1), "at most this many bank images, class-balanced"),
    },
}

SSL_SETTINGS = {  # setting -> (pre-training, fine-tuning)
    "A": ("none", "full"),
    "B": ("supervised", "full"),
    "C": ("self_supervised", "full"),
    "D": ("supervised", "frozen"),
    "E": ("self_supervised", "frozen"),
}

FINETUNE = {  # a classification recipe over the Office-Home layout (dlcv ssl finetune without --config)
    **CLASSIFY,
    "data": {**DATA, "train": with_default(DATA["train"], "train"),
             "train_labels": with_default(DATA["train_labels"], "train.csv"),
             "validation": with_default(DATA["validation"], "val"),
             "validation_labels": with_default(DATA["validation_labels"], "val.csv"),
             "holdout": with_default(DATA["holdout"], 0.1), "image_size": with_default(DATA["image_size"], 128),
             "crop_padding": with_default(DATA["crop_padding"], 16),
             "batch_size": with_default(DATA["batch_size"], 64),
             "eval_batch_size": with_default(DATA["eval_batch_size"], 256),
             "mean": with_default(DATA["mean"], IMAGENET_MEAN), "std": with_default(DATA["std"], IMAGENET_STD)},
    "model": {"name": with_default(CLASSIFY["model"]["name"], "resnet_transfer"),
              "args": with_default(CLASSIFY["model"]["args"], {"arch": "resnet50", "head": "mlp"})},
    "optim": {**OPTIM, "name": with_default(OPTIM["name"], "adam"), "lr": with_default(OPTIM["lr"], 5e-4),
              "weight_decay": with_default(OPTIM["weight_decay"], 1e-3)},  # R1's fine-tuning
    "schedule": {**SCHEDULE, "name": with_default(SCHEDULE["name"], "cosine")},
    "train": TRAIN,
    # t-SNE of the training set at the first and last epoch
    "embed": {"epochs": with_default(EMBED["epochs"], "first,last"),
              "train_subset": with_default(EMBED["train_subset"], 1000)},
}

SSL_TABLE = {
    "task": task_key("ssl_table"),
    "name": RUN["name"],
    "pretrain": Key(None, None, "BYOL recipe (path relative to the settings file); null: use "
                    "backbones.self_supervised"),
    "supervised": Key(None, None, "classify recipe training the supervised backbone on data.supervised; null: "
                      "backbones.supervised"),
    "finetune": Key(None, None, "fine-tuning recipe shared by all five settings (null: the built-in defaults)"),
    "backbones": {  # existing files (relative to --data), e.g. pretrain_model_SL.pt
        "supervised": Key(None, None, "a supervised backbone file instead of training one"),
        "self_supervised": Key(None, None, "a self-supervised backbone file instead of pre-training one"),
    },
    "data": {
        "root": Key(None, None, "the data folder when --data is not given"),
        "mini": Key("mini/train", None, "the unlabelled images, under the data folder"),
        "office": Key("office", None, "the Office-Home folder, under the data folder"),
        "supervised": Key("supervised", None, "the labelled images of the supervised backbone, under the data "
                          "folder"),
        "monitor": Key(None, None, "BYOL's kNN monitor, a labelled folder under it (null: the office folder)"),
    },
    "settings": Key(["A", "B", "C", "D", "E"], None, "the settings to run, of A-E"),
    "budget": Key(None, optional(DURATION), "end the whole table within this time (2h): each run it trains gets "
                  "its share of what is left when it starts"),
    "shares": {
        "byol": Key(0.5, number(0), "BYOL pre-training's share of the budget"),
        "supervised": Key(0.1, number(0), "the supervised backbone's share"),
        "settings": Key(0.4, number(0), "the fine-tuning settings' share, split evenly among them"),
    },
}

# --- Segment Anything ---------------------------------------------------------------------------------------
# Every knob of segment-anything's SamAutomaticMaskGenerator, with its default (tuned there for ViT-H);
# the rules are ours (its own checks are bare asserts).
SAM_GENERATOR = {
    "points_per_side": Key(32, whole(1), "point prompts on a points_per_side^2 grid (per crop layer)"),
    "points_per_batch": Key(64, whole(1), "prompts decoded together; more is faster where memory allows"),
    "pred_iou_thresh": Key(0.88, SHARE, "drop masks whose predicted IoU (SAM's own quality estimate) is not "
                           "above this"),
    "stability_score_thresh": Key(0.95, SHARE, "drop masks whose IoU between logit cut-offs +-offset is under "
                                  "this"),
    "stability_score_offset": Key(1.0, POSITIVE, "the logit offset of the stability score"),
    "box_nms_thresh": Key(0.7, SHARE, "box IoU above which the lower-scored of two masks is a duplicate"),
    "crop_n_layers": Key(0, whole(0), "> 0: run again on crops, layer i has (2^i)^2 crops"),
    "crop_nms_thresh": Key(0.7, SHARE, "duplicates between crops"),
    "crop_overlap_ratio": Key(512 / 1500, SHARE, "overlap of first-layer crops, as a fraction of the image side"),
    "crop_n_points_downscale_factor": Key(1, whole(1), "crop layer i samples points_per_side / factor^i per side"),
    "min_mask_region_area": Key(0, whole(0), "> 0: remove islands and fill holes smaller than this (pixels; "
                                "needs OpenCV)"),
}

SAM = {
    "task": task_key("sam"),
    "name": RUN["name"],
    "model": {"type": Key("vit_h", None, "vit_h (= default), vit_l, vit_b, or vit_tiny (tests; no published "
                          "weights)")},
    "generator": SAM_GENERATOR,
    "prefilter": Key(False, BOOLEAN, "true: filter the decoder's low-resolution masks by predicted IoU before "
                     "up-sampling them (same masks as the official generator, less work); false: the official "
                     "generator exactly"),
    "refine": {
        "min_predicted_iou": Key(0.88, ANY_NUMBER, "SAM regions with a lower predicted IoU change no label (SAM's "
                                 "own estimate: any real number)"),
        "min_area": Key(0, whole(0), "regions smaller than this many pixels change no label"),
    },
    "figure": {"images": Key(["0013", "0062", "0104"], None, "the reports' images; missing ones: the first three")},
}

SCHEMAS = {"classify": CLASSIFY, "segment": SEGMENT, "ssl_pretrain": BYOL, "ssl_table": SSL_TABLE, "sam": SAM}
RECIPE_KINDS = {**SCHEMAS, "ssl_finetune": FINETUNE}  # what a recipe file can be for (dlcv keys)


def describe_keys(schema: dict) -> list[tuple[str, str, str, str]]:
    """``(dotted key, default, what a good value is or "", meaning)`` for every key of a schema, in order."""
    import json

    return [(key, json.dumps(node.default) if not isinstance(node.default, float) else f"{node.default:g}",
             node.rule.wants if node.rule else "", node.meaning) for key, node in leaves(schema)]


def rules_for(task: str | None) -> dict[str, Rule]:
    """The rules of a task's keys (a fine-tuning recipe is a classify one: the same rules)."""
    return rules(SCHEMAS[task]) if task in SCHEMAS else {}


# Each task's plain recipe, fresh on every call.
classify_defaults = functools.partial(defaults, CLASSIFY)
segment_defaults = functools.partial(defaults, SEGMENT)
byol_defaults = functools.partial(defaults, BYOL)
finetune_defaults = functools.partial(defaults, FINETUNE)
ssl_table_defaults = functools.partial(defaults, SSL_TABLE)
sam_defaults = functools.partial(defaults, SAM)


SAM_GENERATOR_DEFAULTS = defaults(SAM_GENERATOR)  # segment-anything's own defaults, for benchmarks


def check_name_and_epochs(recipe: dict) -> int:
    """The check every training recipe gets beyond its values' (checked as loaded): a name; returns the epochs."""
    if not recipe.get("name"):
        raise DlcvError("the run needs a name: give --config FILE or --name NAME")
    if recipe["train"].get("budget") is None:
        return recipe["train"]["epochs"]
    schedule = recipe["schedule"]
    if schedule["name"] == "multistep" and any(float(m) >= 1 for m in schedule["milestones"]):
        raise DlcvError(f"schedule.milestones {shown(schedule['milestones'])}: with train.budget the epochs are not "
                        "known in advance; give shares of the run, e.g. [0.5, 0.75]")
    return None


def check_segment_recipe(recipe: dict) -> list[int]:
    """The name, and the progress epochs against the epochs (values are checked as loaded); returns them."""
    from dlcv.data.features import snapshot_epochs

    return snapshot_epochs(recipe["progress"]["epochs"], check_name_and_epochs(recipe), key="progress.epochs")


def check_crop_padding(padding: int, side: int, what: str) -> None:
    """The random crop's reflect padding stays within an image of ``side`` pixels (``what``: where that side is
    from, e.g. ``data.image_size 16``); else one line."""
    if padding >= side:
        raise DlcvError(f"data.crop_padding {padding} must be below {what}: reflect padding cannot reach past the "
                        "image")


def check_classify_recipe(recipe: dict) -> list[int]:
    """The name, the crop padding against data.image_size where it is set, and the snapshot epochs against
    the epochs (values are checked as loaded); returns them."""
    from dlcv.data.features import snapshot_epochs

    if recipe["data"]["image_size"] is not None:
        side = recipe["data"]["image_size"]
        check_crop_padding(recipe["data"]["crop_padding"], side, f"data.image_size {side}")
    return snapshot_epochs(recipe["embed"]["epochs"], check_name_and_epochs(recipe))
