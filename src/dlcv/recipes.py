"""The recipe schema: every key a recipe may set, its default, and what it means.

A recipe YAML file overrides these; ``dlcv.config.load_recipe`` refuses keys not listed here. This
module imports nothing heavy, so commands that only read recipes start fast.
"""

from __future__ import annotations

import copy

OPTIM_DEFAULTS = {
    "name": "sgd",
    "lr": 0.1,
    "momentum": 0.9,
    "nesterov": True,
    "betas": [0.9, 0.999],
    "weight_decay": 5e-4,
    "decay_norm_and_bias": False,
}

SCHEDULE_DEFAULTS = {
    "name": "onecycle",
    "warmup_epochs": 0,  # cosine, linear, poly, multistep: linear ramp over these epochs
    "pct_start": 0.25,  # onecycle: share of steps rising to the peak
    "anneal": "linear",  # onecycle: linear or cos
    "div_factor": 10.0,  # onecycle: start lr = lr / div_factor
    "final_div_factor": 100.0,  # onecycle: end lr = start lr / final_div_factor
    "min_lr_fraction": 0.0,  # cosine, linear, poly: floor as a fraction of lr
    "power": 0.9,  # poly: lr * (1 - t)^power
    "milestones": [],  # multistep: epochs
    "gamma": 0.1,  # multistep
    "restart_epochs": 10,  # cosine_restarts: epochs of the first cosine period (SGDR's T_0)
    "restart_mult": 1,  # cosine_restarts: each period this many times longer than the last (T_mult)
}

DATA_DEFAULTS = {
    "train": "train_50",  # folder under --data; labels from file names or train_labels
    "train_labels": None,  # optional filename,label CSV under --data
    "validation": "val_50",  # folder under --data
    "validation_labels": None,
    "holdout": 0.0,  # > 0: select checkpoints on this stratified share of train instead
    "num_classes": None,  # None: highest training label + 1
    "batch_size": 256,
    "eval_batch_size": 500,
    "mean": [0.5071, 0.4865, 0.4409],  # CIFAR-100 statistics (the p1 images are of that kind)
    "std": [0.2673, 0.2564, 0.2762],
    "image_size": None,  # decode every image resized to this square side (folders of mixed sizes: Office-Home)
    "input_size": None,  # resize to this square size for the model (e.g. 224 for AlexNet)
    "crop_padding": 4,
    "flip": True,
    "cutout": 0,  # side of the square zeroed in every training image (0: off)
    "auto_augment": "none",  # none, trivialaugment (TrivialAugmentWide) or randaugment, per image
    "randaugment_ops": 2,
    "randaugment_magnitude": 9,
    "mixup_alpha": 0.0,  # > 0: MixUp with this Beta(alpha, alpha)
    "cutmix_alpha": 0.0,  # > 0: CutMix; with both on, one of the two per batch at equal odds
    "cache": True,  # decode once into a memory-mapped cache under $DLCV_CACHE or ~/.cache/dlcv
}

TRAIN_DEFAULTS = {
    "epochs": 30,
    "precision": "auto",  # auto: bf16-mixed where the hardware computes bf16 fast, else 32-true
    "loss": "ce",  # ce (cross-entropy) or focal
    "focal_gamma": 2.0,
    "label_smoothing": 0.1,
    "early_stopping_patience": 0,  # > 0: stop after this many epochs without a better monitored metric
    "ema_decay": 0.0,  # > 0: validate, checkpoint and predict with an exponential moving average of the weights
    "gradient_clip": 0.0,  # > 0: clip the gradients' global norm to this
    "save_top_k": 1,  # keep the k best checkpoints (top/), for predict --ensemble k
    "tta": "flip",  # prediction and final scoring: none, flip (image + mirror) or flip_shift (+ 1-px shifts)
    "val_tta": "flip",  # per-epoch validation (kept cheap: it runs every epoch)
    "channels_last": True,
    "threads": None,  # CPU threads for torch; None: all cores
    "accelerator": "auto",
    "devices": "auto",  # a number of GPUs (or CPU processes), or auto
    "num_nodes": 1,
    "strategy": "auto",  # auto, ddp, ... (Lightning's); torchrun and SLURM are detected
    "sync_batchnorm": False,  # batch-norm statistics over all processes (small per-device batches)
    "deterministic": False,
}

EMBED_DEFAULTS = {
    "epochs": "first,middle,last",  # snapshot epochs: words and/or numbers; "" for none
    "train_subset": 0,  # also keep this many training images' features (a fixed, class-balanced sample)
}


CLASSIFY_DEFAULTS = {
    "task": "classify",
    "name": None,  # run folder name under --runs-dir; default: the recipe file's name
    "seed": 0,
    "data": DATA_DEFAULTS,
    "model": {"name": "dlcv_net", "args": {}},  # any registered model; args go to its builder
    "optim": OPTIM_DEFAULTS,
    "schedule": SCHEDULE_DEFAULTS,
    "train": TRAIN_DEFAULTS,
    "embed": EMBED_DEFAULTS,
}


TTA_MODES = ("none", "flip", "flip_shift")
SEG_TTA_MODES = ("none", "flip", "d4")  # flip: image + mirror; d4: the 4 rotations x 2 mirrors

SEG_DATA_DEFAULTS = {
    "train": "train",  # folder of NNNN_sat.jpg / NNNN_mask.png pairs under --data
    "validation": "validation",
    "holdout": 0.0,  # > 0: select checkpoints on this random share of train; validation scored once at the end
    "unmapped": "unknown",  # mask colours in no class (red): unknown (count as Unknown) or error
    "batch_size": 8,
    "eval_batch_size": 8,
    "train_size": 512,  # side of the augmented training crops fed to the model
    "eval_size": 512,  # whole images are resized to this for the model; predictions return to full size
    "scale": [0.5, 1.0],  # random crop side as a fraction of the image side (log-uniform)
    "flip": True,
    "rot90": True,
    "mean": [0.485, 0.456, 0.406],  # ImageNet statistics
    "std": [0.229, 0.224, 0.225],
    "cache": True,
}

SEG_LOSS_DEFAULTS = {
    "name": "ce",  # ce, focal, dice, or a sum such as ce+dice
    "class_weights": None,  # 7 numbers (Unknown last), for ce and focal
    "label_smoothing": 0.0,  # ce
    "focal_gamma": 2.0,
    "dice_weight": 1.0,  # weight of the dice term in a sum
}

SEG_TRAIN_DEFAULTS = {
    **{k: v for k, v in TRAIN_DEFAULTS.items() if k not in ("label_smoothing", "loss", "focal_gamma", "tta", "val_tta")},
    "epochs": 20,
    "tta": "flip",  # prediction: none, flip or d4 (4 rotations x 2 mirrors)
    "val_tta": "none",
}

PROGRESS_DEFAULTS = {
    "epochs": "first,middle,last",  # epochs whose predicted masks are kept for the progress grid
    "images": ["0013", "0062", "0104"],  # validation ids (the reports' choice); missing ones are skipped
}

SEGMENT_DEFAULTS = {
    "task": "segment",
    "name": None,
    "seed": 0,
    "data": SEG_DATA_DEFAULTS,
    "model": {"name": "unet_lite0", "args": {}},
    "loss": SEG_LOSS_DEFAULTS,
    "optim": {**OPTIM_DEFAULTS, "name": "adamw", "lr": 1e-3, "weight_decay": 1e-4},
    "schedule": SCHEDULE_DEFAULTS,
    "train": SEG_TRAIN_DEFAULTS,
    "progress": PROGRESS_DEFAULTS,
}


# --- self-supervised pre-training (BYOL) and transfer to Office-Home -----------------------------------
BYOL_VIEW_DEFAULTS = {  # lightly's BYOLView1Transform / BYOLView2Transform parameters (dlcv.data.ssl_views)
    "size": 128,  # side of each view fed to the network (R1 cropped 128)
    "min_scale": 0.08,  # smallest crop area as a share of the image
    "hflip": 0.5,
    "jitter_prob": 0.8,
    "brightness": 0.4,
    "contrast": 0.4,
    "saturation": 0.2,
    "hue": 0.1,
    "grayscale": 0.2,
    "blur": [1.0, 0.1],  # probability per view
    "sigma": [0.1, 2.0],  # blur sigma range at 224 pixels; scaled by size / 224
    "solarize": [0.0, 0.2],  # probability per view
}

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

BYOL_DEFAULTS = {
    "task": "ssl_pretrain",
    "name": None,
    "seed": 0,
    "data": {
        "image_size": None,  # decode every image resized to this side (Mini-ImageNet: 84 to 128; R1 resized 160)
        "batch_size": 128,
        "eval_batch_size": 500,
        "mean": IMAGENET_MEAN,  # the statistics' values only; no ImageNet weights anywhere in this path
        "std": IMAGENET_STD,
        "cache": True,
    },
    "views": BYOL_VIEW_DEFAULTS,
    "model": {"arch": "resnet50"},  # a torchvision ResNet: resnet18/34/50/101/152, randomly initialised
    "byol": {"hidden_dim": 4096, "output_dim": 256, "momentum": 0.99},  # momentum: start of the cosine schedule to 1
    "optim": {**OPTIM_DEFAULTS, "name": "adam", "lr": 3e-4, "weight_decay": 1e-6},  # R1's; "lars" also works
    "schedule": {**SCHEDULE_DEFAULTS, "name": "cosine", "warmup_epochs": 0},
    "train": {**{k: v for k, v in TRAIN_DEFAULTS.items()
                 if k not in ("loss", "focal_gamma", "label_smoothing", "tta", "val_tta", "save_top_k", "ema_decay",
                              "early_stopping_patience")},
              "epochs": 100},
    "monitor": {"k": 20, "max_bank": 5000},  # kNN on Office-Home train (bank, class-balanced) -> val, every epoch
}

SSL_SETTINGS = {  # setting -> (pre-training, fine-tuning)
    "A": ("none", "full"),
    "B": ("supervised", "full"),
    "C": ("self_supervised", "full"),
    "D": ("supervised", "frozen"),
    "E": ("self_supervised", "frozen"),
}

FINETUNE_DEFAULTS = {  # a classification recipe over the Office-Home layout (dlcv ssl finetune without --config)
    **CLASSIFY_DEFAULTS,
    "data": {**DATA_DEFAULTS, "train": "train", "train_labels": "train.csv", "validation": "val",
             "validation_labels": "val.csv", "holdout": 0.1, "image_size": 128, "crop_padding": 16,
             "batch_size": 64, "eval_batch_size": 256, "mean": IMAGENET_MEAN, "std": IMAGENET_STD},
    "model": {"name": "resnet_transfer", "args": {"arch": "resnet50", "head": "mlp"}},
    "optim": {**OPTIM_DEFAULTS, "name": "adam", "lr": 5e-4, "weight_decay": 1e-3},  # R1's fine-tuning
    "schedule": {**SCHEDULE_DEFAULTS, "name": "cosine"},
    "train": {**TRAIN_DEFAULTS, "epochs": 30},
    "embed": {"epochs": "first,last", "train_subset": 1000},  # t-SNE of the training set at the first and last epoch
}

SSL_TABLE_DEFAULTS = {
    "task": "ssl_table",
    "name": None,
    "pretrain": None,  # BYOL recipe (path relative to the settings file); None: use backbones.self_supervised
    "supervised": None,  # classify recipe training the supervised backbone on data.supervised; None: backbones.supervised
    "finetune": None,  # fine-tuning recipe shared by all five settings (None: the built-in defaults)
    "backbones": {"supervised": None, "self_supervised": None},  # existing files (relative to --data), e.g. pretrain_model_SL.pt
    "data": {"root": None,  # the data folder when --data is not given
             "mini": "mini/train", "office": "office", "supervised": "supervised",  # folders under it
             "monitor": None},  # BYOL's kNN monitor, a labelled folder under it (None: the office folder)
    "settings": ["A", "B", "C", "D", "E"],
}


def byol_defaults() -> dict:
    return copy.deepcopy(BYOL_DEFAULTS)


def finetune_defaults() -> dict:
    return copy.deepcopy(FINETUNE_DEFAULTS)


def ssl_table_defaults() -> dict:
    return copy.deepcopy(SSL_TABLE_DEFAULTS)


def classify_defaults() -> dict:
    return copy.deepcopy(CLASSIFY_DEFAULTS)


def segment_defaults() -> dict:
    return copy.deepcopy(SEGMENT_DEFAULTS)


def check_name_and_epochs(recipe: dict) -> int:
    """The check every training recipe gets beyond its values' (checked as loaded): a name; returns the epochs."""
    from dlcv.errors import DlcvError

    if not recipe.get("name"):
        raise DlcvError("the run needs a name: give --config FILE or --name NAME")
    return recipe["train"]["epochs"]


def check_segment_recipe(recipe: dict) -> list[int]:
    """The name, and the progress epochs against the epochs (values are checked as loaded); returns them."""
    from dlcv.data.features import snapshot_epochs

    epochs = check_name_and_epochs(recipe)
    return snapshot_epochs(recipe["progress"]["epochs"], epochs, key="progress.epochs")


def check_classify_recipe(recipe: dict) -> list[int]:
    """The name, and the snapshot epochs against the epochs (values are checked as loaded); returns them."""
    from dlcv.data.features import snapshot_epochs

    epochs = check_name_and_epochs(recipe)
    return snapshot_epochs(recipe["embed"]["epochs"], epochs)


# Every knob of segment-anything's SamAutomaticMaskGenerator, with its default (tuned there for ViT-H).
SAM_GENERATOR_DEFAULTS = {
    "points_per_side": 32,  # point prompts on a points_per_side^2 grid (per crop layer, see below)
    "points_per_batch": 64,  # prompts decoded together; more is faster where memory allows
    "pred_iou_thresh": 0.88,  # drop masks whose predicted IoU (SAM's own quality estimate) is not above this
    "stability_score_thresh": 0.95,  # drop masks whose IoU between logit cut-offs +-offset is under this
    "stability_score_offset": 1.0,
    "box_nms_thresh": 0.7,  # box IoU above which the lower-scored of two masks is a duplicate
    "crop_n_layers": 0,  # > 0: run again on crops, layer i has (2^i)^2 crops
    "crop_nms_thresh": 0.7,  # duplicates between crops
    "crop_overlap_ratio": 512 / 1500,  # overlap of first-layer crops, as a fraction of the image side
    "crop_n_points_downscale_factor": 1,  # crop layer i samples points_per_side / factor^i per side
    "min_mask_region_area": 0,  # > 0: remove islands and fill holes smaller than this (pixels; needs OpenCV)
}

SAM_DEFAULTS = {
    "task": "sam",
    "name": None,
    "model": {"type": "vit_h"},  # vit_h (= default), vit_l, vit_b, or vit_tiny (tests; no published weights)
    "generator": SAM_GENERATOR_DEFAULTS,
    # true: filter the decoder's low-resolution masks by predicted IoU before up-sampling them (same
    # masks as the official generator, less work); false: the official generator exactly.
    "prefilter": False,
    "refine": {
        "min_predicted_iou": 0.88,  # SAM regions with a lower predicted IoU change no label
        "min_area": 0,  # regions smaller than this many pixels change no label
    },
    "figure": {"images": ["0013", "0062", "0104"]},  # the reports' images; missing ones: the first three
}


def sam_defaults() -> dict:
    return copy.deepcopy(SAM_DEFAULTS)
