"""The recipe schema: one pydantic model per task, every key with its default, its rule and its meaning.

A recipe YAML file and ``--set`` override a task's defaults (``dlcv.config.load_recipe``); the result is
one of the models below, checked in full (strict types, ranges, choices, and the checks across keys as
validators), and every consumer reads typed sections: ``recipe.train.epochs``. A run folder's
``recipe.yaml`` is ``recipe.model_dump()``. A rule's text (``Wants``) is what ``dlcv keys`` prints and what
an error says a good value is. This module imports no torch, so commands that only read recipes start fast.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from dlcv.data.p1 import MAX_CLASSES
from dlcv.errors import DlcvError, shown


@dataclass(frozen=True)
class Wants:
    """What a good value of a type is, in words (``a whole number >= 1``)."""

    text: str


class RecipeError(ValueError):
    """A check across keys that failed: ``key`` names the key whose source the error line gives."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def whole(low: int = 0, high: int | None = None):
    """A whole number in ``[low, high]``."""
    return Annotated[int, Field(ge=low, le=high),
                     Wants(f"a whole number >= {low}" + (f" and <= {high}" if high is not None else ""))]


def number(low: float = 0.0, high: float | None = None, open_low: bool = False, open_high: bool = False):
    """A finite number from ``low`` (excluded with ``open_low``) to ``high`` (excluded with ``open_high``)."""
    bounds = {"gt" if open_low else "ge": low, **({"lt" if open_high else "le": high} if high is not None else {})}
    wants = (f"a number {'>' if open_low else '>='} {low:g}" if high is None else
             f"a number in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}")
    return Annotated[float, Field(allow_inf_nan=False, **bounds), Wants(wants)]


def list_of(count: int | None, item):
    """A list of ``count`` (any number for None) values of type ``item``."""
    return Annotated[list[item], Field(min_length=count, max_length=count),
                     Wants(f"a list of {count if count is not None else 'any number of'} ({describe(item)})")]


def checked(kind, test, wants: str):
    """A value of ``kind`` that ``test`` accepts."""
    def check(value):
        if not test(value):
            raise ValueError(wants)
        return value
    return Annotated[kind, AfterValidator(check), Wants(wants)]


def describe(kind) -> str:
    """What a good value of the type ``kind`` is, in words."""
    if typing.get_origin(kind) is Annotated:
        said = [m.text for m in kind.__metadata__ if isinstance(m, Wants)]
        return said[-1] if said else describe(typing.get_args(kind)[0])
    if typing.get_origin(kind) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(kind)))
    args = typing.get_args(kind)
    if type(None) in args:
        return "null or " + " or ".join(describe(a) for a in args if a is not type(None))
    if args and typing.get_origin(kind) in (typing.Union, type(int | str)):
        return " or ".join(describe(a) for a in args)
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "a text", dict: "a mapping"}
    return names.get(typing.get_origin(kind) or kind, "a mapping" if isinstance(kind, type) and
                     issubclass(kind, BaseModel) else "a list")


def describe_field(field) -> str:
    """What a good value of a recipe key (a pydantic field) is, in words."""
    said = [m.text for m in field.metadata if isinstance(m, Wants)]
    return said[-1] if said else describe(field.annotation)


def check_arg(name: str, value, kind) -> None:
    """A model builder's argument ``model.args.NAME`` is of the type ``kind``; else one line naming it."""
    from pydantic import TypeAdapter, ValidationError

    try:
        TypeAdapter(kind).validate_python(value, strict=True)
    except ValidationError:
        raise DlcvError(f"model.args.{name} must be {describe(kind)}, got {shown(value)}") from None


# --- durations --------------------------------------------------------------------------------------------
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}


MAX_DURATION = 366 * 24 * 3600.0  # a year: anything longer is a typing slip, and overflows timers downstream


def parse_duration(text) -> float | None:
    """Seconds of a duration such as ``20m``, ``1h30m``, ``90s`` or ``1.5h`` (each unit at most once, in the order
    h, m, s; above 0 and at most a year); None if it is not one."""
    parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?",
                         text.strip()) if isinstance(text, str) else None
    if parts is None or not any(parts.groups()) or max(len(g or "") for g in parts.groups()) > 12:
        return None
    seconds = sum(float(n) * _UNITS[u] for n, u in zip(parts.groups(), "hms") if n)
    return seconds if 0 < seconds <= MAX_DURATION else None


def format_duration(seconds: float) -> str:
    """``1h30m``, ``20m``, ``45s``, ``2m30s``, ``-7s``: the inverse of ``parse_duration`` to the second."""
    seconds = round(seconds)
    hours, rest = divmod(abs(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")
    return ("-" if seconds < 0 else "") + (text or "0s")


def is_folder_name(v) -> bool:
    """A plain folder name: no path separator, no control character, not ``.`` or ``..``."""
    return (isinstance(v, str) and 0 < len(v) <= 255 and v not in (".", "..") and "/" not in v and "\\" not in v
            and v.isprintable())


Duration = checked(str, lambda v: parse_duration(v) is not None,
                   "a duration such as 20m, 1h30m, 90s or 1.5h (up to a year)")
FolderName = checked(str, is_folder_name, "a plain folder name (no /, \\ or control characters)")
Folder = Annotated[str, Field(min_length=1), Wants("a folder or file name")]
Text = Annotated[str, Field(min_length=1), Wants("a non-empty text")]
Whole0, Whole1 = whole(0), whole(1)
NonNegative, Positive, Share, Fraction = number(0), number(0, open_low=True), number(0, 1), number(0, 1, open_high=True)
AnyNumber = Annotated[float, Field(allow_inf_nan=False), Wants("a number")]
Stats, Spread = list_of(3, NonNegative), list_of(3, Positive)
EpochList = Annotated[str | list[str | int] | None, Wants("first, middle, last and/or epoch numbers, as a text or a "
                                                           "list")]

TtaMode = Literal["none", "flip", "flip_shift"]
SegTtaMode = Literal["none", "flip", "d4"]  # flip: image + mirror; d4: the 4 rotations x 2 mirrors
TTA_MODES, SEG_TTA_MODES = typing.get_args(TtaMode), typing.get_args(SegTtaMode)
OPTIMIZERS = ("sgd", "adam", "adamw", "lars")
SCHEDULES = ("constant", "onecycle", "cosine", "cosine_restarts", "linear", "poly", "multistep")
PIXEL_LOSSES = ("ce", "focal", "dice", "lovasz")
RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
SAM_TYPES = ("vit_h", "vit_l", "vit_b", "default", "vit_tiny")
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def key(default, meaning: str):
    """A recipe key's default and its one-line meaning."""
    return Field(default, description=meaning)


def section(kind: type[BaseModel], meaning: str = "", **defaults):
    """A section of the recipe, with this task's defaults where they differ from the section's own."""
    return Field(default_factory=lambda: kind(**defaults), description=meaning or kind.__doc__)


class Section(BaseModel):
    """A part of a recipe: unknown keys, values of the wrong type and values outside their range are refused."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True)


# --- the sections every training task shares ------------------------------------------------------------
class Optim(Section):
    """The optimiser."""

    name: Literal[OPTIMIZERS] = key("sgd", "the optimiser")
    lr: NonNegative = key(0.1, "the (peak) learning rate")
    momentum: Share = key(0.9, "sgd and lars: momentum")
    nesterov: bool = key(True, "sgd: Nesterov momentum")
    betas: list_of(2, Fraction) = key([0.9, 0.999], "adam and adamw: the moment decays")
    weight_decay: NonNegative = key(5e-4, "weight decay (decoupled for adamw)")
    decay_norm_and_bias: bool = key(False, "also decay normalisation weights and biases")
    head_lr_mult: Positive = key(1.0, "a classifier's head (last layer) learns at this multiple of lr; the schedule "
                                 "scales both alike (e.g. 10 when fine-tuning pretrained weights)")


class Schedule(Section):
    """The learning-rate schedule, stepped every batch."""

    name: Literal[SCHEDULES] = key("onecycle", "the learning-rate schedule, stepped every batch")
    warmup_epochs: NonNegative = key(0, "cosine, linear, poly, multistep: linear ramp over these epochs")
    pct_start: number(0, 1, open_low=True, open_high=True) = key(0.25, "onecycle: share of steps rising to the peak")
    anneal: Literal["linear", "cos"] = key("linear", "onecycle: the shape of the rise and fall")
    div_factor: Positive = key(10.0, "onecycle: start lr = lr / div_factor")
    final_div_factor: Positive = key(100.0, "onecycle: end lr = start lr / final_div_factor")
    min_lr_fraction: Share = key(0.0, "cosine, linear, poly: floor as a fraction of lr")
    power: NonNegative = key(0.9, "poly: lr * (1 - t)^power")
    milestones: list_of(None, NonNegative) = key([], "multistep: where lr drops: epochs (1 and more) or shares of "
                                                 "the run (below 1, e.g. [0.5, 0.75]; with train.budget, shares only)")
    gamma: Positive = key(0.1, "multistep: the factor of each drop")
    restart_epochs: Whole1 = key(10, "cosine_restarts: epochs of the first cosine period (SGDR's T_0)")
    restart_mult: Whole1 = key(1, "cosine_restarts: each period this many times longer than the last (T_mult)")


Devices = Annotated[Literal["auto"] | Whole1 | list[Whole0],
                    Wants("auto, a number of devices >= 1 or a list of device indices")]


class Train(Section):
    """How the run trains: its length or budget, precision, devices, and what keeps the best weights."""

    epochs: Whole1 = key(30, "training epochs (with train.budget: only the plan until the speed is measured)")
    budget: Duration | None = key(None, "end the whole command within this time (20m, 1h30m): the steps are planned "
                                  "from the measured speed, the schedule runs over them, the epochs are a result")
    reference_epochs: number(0, open_low=True) | None = key(
        None, "with train.budget: the fewest epochs of the runs behind the recipe's figure (docs/results.md); a plan "
        "of fewer says it may not reach it")
    precision: Literal["auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true"] = key(
        "auto", "auto: bf16-mixed where the hardware computes bf16 fast (16-mixed on a T4 or V100), else 32-true; or "
        "any of Lightning's")
    early_stopping_patience: Whole0 = key(0, "> 0: stop after this many epochs without a better monitored metric")
    ema_decay: Fraction = key(0.0, "> 0: validate, checkpoint and predict with an exponential moving average of the "
                              "weights (bias-corrected)")
    gradient_clip: NonNegative = key(0.0, "> 0: clip the gradients' global norm to this")
    save_top_k: Whole1 = key(1, "keep the k best checkpoints (top/), for predict --ensemble k")
    tta: Literal["none"] = key("none", "prediction and final scoring's test-time augmentation (none here)")
    val_tta: Literal["none"] = key("none", "per-epoch validation's test-time augmentation (none here)")
    channels_last: bool = key(True, "the channels-last memory layout (faster convolutions)")
    threads: Whole1 | None = key(None, "CPU threads for torch; null: all cores")
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps", "tpu"] = key("auto", "Lightning's accelerator")
    devices: Devices = key("auto", "a number of GPUs (or CPU processes), or auto: one, or one per process that "
                           "torchrun or SLURM started")
    num_nodes: Whole1 = key(1, "machines in a multi-node run (more when torchrun or srun started more)")
    strategy: Text = key("auto", "auto, ddp, ... (Lightning's); torchrun and SLURM are detected")
    sync_batchnorm: bool = key(False, "batch-norm statistics over all processes (GPUs; small per-device batches)")
    deterministic: bool = key(False, "deterministic algorithms wherever a kernel has one")


class Model(Section):
    """The model: a registered name (``dlcv models``) and its builder's arguments."""

    name: str = key("dlcv_net", "any registered model (dlcv models)")
    args: dict[str, Any] = key({}, "free-form: the model builder's arguments")


def snapshot_epochs(spec, max_epochs: int | None, where: str = "embed.epochs") -> list[int | str]:
    """Resolve ``first,middle,last`` (or a list of numbers and those words) to 1-based epochs; with no
    ``max_epochs`` (a time budget decides them) ``middle`` and ``last`` stay words."""
    words = ({"first": 1, "middle": "middle", "last": "last"} if max_epochs is None
             else {"first": 1, "middle": (max_epochs + 1) // 2, "last": max_epochs})
    epochs = set()
    for item in spec.split(",") if isinstance(spec, str) else list(spec or []):
        item = str(item).strip()
        if item in words:
            epochs.add(words[item])
        elif item.isdigit() and 1 <= int(item) <= (max_epochs or int(item)):
            epochs.add(int(item))
        elif item:
            raise RecipeError(where, f"{where}: {item!r} is not first, middle, last or an epoch in "
                              f"1..{max_epochs or 'n'}")
    return sorted(epochs, key=lambda e: (isinstance(e, str), str(e).zfill(9)))


TASK = "the task the recipe is for (another task's command refuses it)"


class Recipe(Section):
    """A recipe: the task it is for (each recipe fixes its own) and the name of its run folder."""

    task: str = key("", TASK)
    name: FolderName | None = key(None, "run folder name under --runs-dir; default: the recipe file's name")


class Training(Recipe):
    """A recipe that trains: its seed, and the checks across its keys."""

    seed: whole(0, 2**32 - 1) = key(0, "seeds the split, the weights and every epoch's random draws")

    SNAPSHOTS: typing.ClassVar[str | None] = None  # the key of the epochs whose snapshots are kept

    @property
    def planned_epochs(self) -> int | None:
        """The epochs to train, or None where a time budget decides them."""
        return None if self.train.budget else self.train.epochs

    def snapshots(self) -> list[int | str]:
        """The epochs of the recipe's snapshots (words where a budget decides them)."""
        section, name = self.SNAPSHOTS.split(".")
        return snapshot_epochs(getattr(getattr(self, section), name), self.planned_epochs, self.SNAPSHOTS)

    @model_validator(mode="after")
    def _across_keys(self):
        if self.train.budget and self.schedule.name == "multistep" and any(m >= 1 for m in self.schedule.milestones):
            raise RecipeError("schedule.milestones", f"schedule.milestones {shown(self.schedule.milestones)}: with "
                              "train.budget the epochs are not known in advance; give shares of the run, e.g. "
                              "[0.5, 0.75]")
        if self.SNAPSHOTS:
            self.snapshots()
        return self


# --- Problem 1: classification ----------------------------------------------------------------------------
class ClassifyData(Section):
    """The labelled folders, the batches and the augmentation."""

    train: Folder = key("train_50", "folder under --data; labels from file names or train_labels")
    train_labels: Folder | None = key(None, "optional filename,label CSV under --data")
    validation: str | None = key("val_50", "folder under --data (null or \"\": none)")
    validation_labels: Folder | None = key(None, "optional filename,label CSV under --data")
    holdout: Fraction = key(0.0, "> 0: select checkpoints on this stratified share of train instead; the validation "
                            "folder is then scored once, at the end")
    num_classes: whole(1, MAX_CLASSES) | None = key(None, "null: highest training label + 1")
    batch_size: Whole1 = key(256, "training batch per process")
    eval_batch_size: Whole1 = key(500, "validation and prediction batch")
    mean: Stats = key([0.5071, 0.4865, 0.4409], "per-channel mean (CIFAR-100's: the p1 images are of that kind)")
    std: Spread = key([0.2673, 0.2564, 0.2762], "per-channel standard deviation")
    image_size: Whole1 | None = key(None, "decode every image resized to this square side (folders of mixed sizes: "
                                    "Office-Home)")
    input_size: Whole1 | None = key(None, "resize to this square size for the model (e.g. 224 for AlexNet)")
    crop_padding: Whole0 = key(4, "random crop after padding by this many pixels (reflect)")
    flip: bool = key(True, "random horizontal mirror")
    cutout: Whole0 = key(0, "side of the square zeroed in every training image (0: off)")
    auto_augment: Literal["none", "trivialaugment", "randaugment"] = key(
        "none", "TrivialAugmentWide or RandAugment, a fresh draw per image")
    auto_augment_min_epochs: Whole0 = key(0, "> 0: auto_augment only while the run's plan has at least this many "
                                          "epochs (a time budget gives a fast machine many: it gets the regulariser)")
    randaugment_ops: Whole0 = key(2, "randaugment: operations per image")
    randaugment_magnitude: number(0, 30) = key(9, "randaugment: the magnitude bin (of 31)")
    mixup_alpha: NonNegative = key(0.0, "> 0: MixUp with this Beta(alpha, alpha)")
    cutmix_alpha: NonNegative = key(0.0, "> 0: CutMix; with both on, one of the two per batch at equal odds")
    cache: bool = key(True, "decode once into a memory-mapped cache under $DLCV_CACHE or ~/.cache/dlcv")


class ClassifyTrain(Train):
    """How the run trains, and the classifier's loss and test-time augmentation."""

    loss: Literal["ce", "focal"] = key("ce", "ce (cross-entropy) or focal")
    focal_gamma: NonNegative = key(2.0, "focal: the focusing exponent")
    label_smoothing: Fraction = key(0.1, "share of each target spread over all classes")
    tta: TtaMode = key("flip", "prediction and final scoring: none, flip (image + mirror) or flip_shift (+ 1-px "
                       "shifts)")
    val_tta: TtaMode = key("flip", "per-epoch validation (kept cheap: it runs every epoch)")


class Embed(Section):
    """The second-last layer's features kept through training (PCA and t-SNE)."""

    epochs: EpochList = key("first,middle,last", "snapshot epochs: words and/or numbers; \"\" for none")
    train_subset: Whole0 = key(0, "also keep this many training images' features (a fixed, class-balanced sample)")


class ClassifyRecipe(Training):
    """``classify fit``: a classifier on labelled folders."""

    SNAPSHOTS: typing.ClassVar[str] = "embed.epochs"
    task: Literal["classify"] = key("classify", TASK)
    data: ClassifyData = section(ClassifyData)
    model: Model = section(Model)
    optim: Optim = section(Optim)
    schedule: Schedule = section(Schedule)
    train: ClassifyTrain = section(ClassifyTrain)
    embed: Embed = section(Embed)

    @model_validator(mode="after")
    def _padding(self):
        side = self.data.image_size
        if side is not None and self.data.crop_padding >= side:
            raise RecipeError("data.crop_padding",
                              crop_padding_error(self.data.crop_padding, f"data.image_size {side}"))
        return self


def crop_padding_error(padding: int, what: str) -> str:
    """The error of a random crop's reflect padding that reaches past the image (``what``: its side, said)."""
    return f"data.crop_padding {padding} must be below {what}: reflect padding cannot reach past the image"


class FinetuneRecipe(ClassifyRecipe):
    """``ssl finetune``: a classification recipe over the Office-Home layout (R1's fine-tuning)."""

    data: ClassifyData = section(ClassifyData, train="train", train_labels="train.csv", validation="val",
                                 validation_labels="val.csv", holdout=0.1, image_size=128, crop_padding=16,
                                 batch_size=64, eval_batch_size=256, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    model: Model = section(Model, name="resnet_transfer", args={"arch": "resnet50", "head": "mlp"})
    optim: Optim = section(Optim, name="adam", lr=5e-4, weight_decay=1e-3)
    schedule: Schedule = section(Schedule, name="cosine")
    embed: Embed = section(Embed, epochs="first,last", train_subset=1000)  # t-SNE of the training set


# --- Problem 2: segmentation ------------------------------------------------------------------------------
CropScale = checked(list_of(2, AnyNumber), lambda v: 0 < v[0] <= v[1] <= 1, "[low, high] with 0 < low <= high <= 1")


class SegmentData(Section):
    """The satellite pairs, the batches and the augmentation."""

    train: Folder = key("train", "folder of NNNN_sat.jpg / NNNN_mask.png pairs under --data")
    validation: str | None = key("validation", "folder of pairs under --data (null or \"\": none)")
    holdout: Fraction = key(0.0, "> 0: select checkpoints on this random share of train; validation scored once at "
                            "the end")
    unmapped: Literal["unknown", "error"] = key("unknown", "mask colours in no class (red): unknown (count as Unknown) "
                                                "or error")
    batch_size: Whole1 = key(8, "training batch per process")
    eval_batch_size: Whole1 = key(8, "validation and prediction batch")
    train_size: Whole1 = key(512, "side of the augmented training crops fed to the model")
    eval_size: Whole1 = key(512, "whole images are resized to this for the model; predictions return to full size")
    scale: CropScale = key([0.5, 1.0], "random crop side as a fraction of the image side (log-uniform)")
    flip: bool = key(True, "random mirror of image and mask")
    rot90: bool = key(True, "random quarter turns of image and mask")
    mean: Stats = key(IMAGENET_MEAN, "per-channel mean (ImageNet's)")
    std: Spread = key(IMAGENET_STD, "per-channel standard deviation (ImageNet's)")
    cache: bool = key(True, "decode once into a memory-mapped cache under $DLCV_CACHE or ~/.cache/dlcv")


PixelLoss = checked(str, lambda v: all(p.strip().lower() in PIXEL_LOSSES for p in v.split("+")),
                    f"one of {', '.join(PIXEL_LOSSES)} or a sum such as ce+lovasz")


class SegmentLoss(Section):
    """The pixel loss."""

    name: PixelLoss = key("ce", "ce, focal, dice, lovasz (Lovasz-softmax, an IoU surrogate), or a sum such as "
                          "ce+lovasz")
    class_weights: list_of(7, NonNegative) | None = key(None, "7 numbers (Unknown last), for ce and focal")
    label_smoothing: Fraction = key(0.0, "ce: share of each target spread over all classes")
    focal_gamma: NonNegative = key(2.0, "focal: the focusing exponent")
    dice_weight: NonNegative = key(1.0, "weight of the dice term in a sum")
    lovasz_weight: NonNegative = key(1.0, "weight of the lovasz term in a sum")


class SegmentTrain(Train):
    """How the run trains, and the segmenter's test-time augmentation."""

    epochs: Whole1 = key(20, "training epochs (with train.budget: only the plan until the speed is measured)")
    tta: SegTtaMode = key("flip", "prediction and final scoring: none, flip or d4 (4 rotations x 2 mirrors)")
    val_tta: SegTtaMode = key("none", "per-epoch validation")


class Progress(Section):
    """The predicted masks kept through training."""

    epochs: EpochList = key("first,middle,last", "epochs whose predicted masks are kept for the progress grid")
    images: list[str] = key(["0013", "0062", "0104"], "validation ids (the reports' choice); missing ones are skipped")


class SegmentRecipe(Training):
    """``segment fit``: a segmentation model on satellite pairs."""

    SNAPSHOTS: typing.ClassVar[str] = "progress.epochs"
    task: Literal["segment"] = key("segment", TASK)
    data: SegmentData = section(SegmentData)
    model: Model = section(Model, name="unet_lite0")
    loss: SegmentLoss = section(SegmentLoss)
    optim: Optim = section(Optim, name="adamw", lr=1e-3, weight_decay=1e-4)
    schedule: Schedule = section(Schedule)
    train: SegmentTrain = section(SegmentTrain)
    progress: Progress = section(Progress)


# --- self-supervised pre-training (BYOL) and transfer to Office-Home -----------------------------------
class ByolData(Section):
    """The unlabelled images and the batches."""

    image_size: Whole1 | None = key(None, "decode every image resized to this side (Mini-ImageNet: 84 to 128; R1 "
                                    "resized 160)")
    batch_size: Whole1 = key(128, "training batch per process")
    eval_batch_size: Whole1 = key(500, "validation and prediction batch")
    mean: Stats = key(IMAGENET_MEAN, "per-channel mean: the statistics' values only; no ImageNet weights anywhere in "
                      "this path")
    std: Spread = key(IMAGENET_STD, "per-channel standard deviation")
    cache: bool = key(True, "decode once into a memory-mapped cache under $DLCV_CACHE or ~/.cache/dlcv")


class Views(Section):
    """BYOL's two views: lightly's BYOLView1Transform / BYOLView2Transform parameters (``dlcv.data.ssl_views``)."""

    size: Whole1 = key(128, "side of each view fed to the network (R1 cropped 128)")
    min_scale: number(0, 1, open_low=True) = key(0.08, "smallest crop area as a share of the image")
    hflip: Share = key(0.5, "probability of a mirror")
    jitter_prob: Share = key(0.8, "probability of the colour jitter")
    brightness: NonNegative = key(0.4, "colour jitter: brightness")
    contrast: NonNegative = key(0.4, "colour jitter: contrast")
    saturation: NonNegative = key(0.2, "colour jitter: saturation")
    hue: number(0, 0.5) = key(0.1, "colour jitter: hue")
    grayscale: Share = key(0.2, "probability of grey")
    blur: list_of(2, Share) = key([1.0, 0.1], "probability of a Gaussian blur, per view")
    sigma: list_of(2, NonNegative) = key([0.1, 2.0], "blur sigma range at 224 pixels; scaled by size / 224")
    solarize: list_of(2, Share) = key([0.0, 0.2], "probability of solarisation, per view")


class Trunk(Section):
    """The network pre-trained."""

    arch: Literal[RESNETS] = key("resnet50", "a torchvision ResNet, randomly initialised")


class Byol(Section):
    """BYOL's heads and target network."""

    hidden_dim: Whole1 = key(4096, "projection and prediction heads' hidden width")
    output_dim: Whole1 = key(256, "projection width")
    momentum: Fraction = key(0.99, "the target's momentum at the start of its cosine schedule to 1")


class Monitor(Section):
    """The kNN monitor: Office-Home train (bank, class-balanced) -> val, every epoch."""

    k: Whole1 = key(20, "neighbours of the kNN monitor")
    max_bank: Whole1 = key(5000, "at most this many bank images, class-balanced")


class ByolRecipe(Training):
    """``ssl pretrain``: BYOL on unlabelled images."""

    task: Literal["ssl_pretrain"] = key("ssl_pretrain", TASK)
    data: ByolData = section(ByolData)
    views: Views = section(Views)
    model: Trunk = section(Trunk)
    byol: Byol = section(Byol)
    optim: Optim = section(Optim, name="adam", lr=3e-4, weight_decay=1e-6)  # R1's; "lars" also works
    schedule: Schedule = section(Schedule, name="cosine")
    train: Train = section(Train, epochs=100)
    monitor: Monitor = section(Monitor)


SSL_SETTINGS = {  # setting -> (pre-training, fine-tuning)
    "A": ("none", "full"),
    "B": ("supervised", "full"),
    "C": ("self_supervised", "full"),
    "D": ("supervised", "frozen"),
    "E": ("self_supervised", "frozen"),
}


class Backbones(Section):
    """Existing backbone files (relative to --data), e.g. pretrain_model_SL.pt, instead of training them."""

    supervised: str | None = key(None, "a supervised backbone file instead of training one")
    self_supervised: str | None = key(None, "a self-supervised backbone file instead of pre-training one")


class TableData(Section):
    """Where the table's data lies."""

    root: str | None = key(None, "the data folder when --data is not given")
    mini: Folder = key("mini/train", "the unlabelled images, under the data folder")
    office: Folder = key("office", "the Office-Home folder, under the data folder")
    supervised: Folder = key("supervised", "the labelled images of the supervised backbone, under the data folder")
    monitor: str | None = key(None, "BYOL's kNN monitor, a labelled folder under it (null: the office folder)")


class Shares(Section):
    """How the table's budget is shared."""

    byol: NonNegative = key(0.5, "BYOL pre-training's share of the budget")
    supervised: NonNegative = key(0.1, "the supervised backbone's share")
    settings: NonNegative = key(0.4, "the fine-tuning settings' share, split evenly among them")


class TableRecipe(Recipe):
    """``ssl table``: the pre-training runs and settings A-E from one recipe."""

    task: Literal["ssl_table"] = key("ssl_table", TASK)
    pretrain: str | None = key(None, "BYOL recipe (path relative to the settings file); null: use "
                               "backbones.self_supervised")
    supervised: str | None = key(None, "classify recipe training the supervised backbone on data.supervised; null: "
                                 "backbones.supervised")
    finetune: str | None = key(None, "fine-tuning recipe shared by all five settings (null: the built-in defaults)")
    backbones: Backbones = section(Backbones)
    data: TableData = section(TableData)
    settings: Annotated[list[Literal[tuple(SSL_SETTINGS)]], Field(min_length=1),
                        Wants("a non-empty list of A-E")] = key(list(SSL_SETTINGS), "the settings to run, of A-E")
    budget: Duration | None = key(None, "end the whole table within this time (2h): each run it trains gets its share "
                                  "of what is left when it starts")
    shares: Shares = section(Shares)


# --- Segment Anything ---------------------------------------------------------------------------------------
class Generator(Section):
    """Every knob of segment-anything's SamAutomaticMaskGenerator, with its default (tuned there for ViT-H); the
    rules are ours (its own checks are bare asserts)."""

    points_per_side: Whole1 = key(32, "point prompts on a points_per_side^2 grid (per crop layer)")
    points_per_batch: Whole1 = key(64, "prompts decoded together; more is faster where memory allows")
    pred_iou_thresh: Share = key(0.88, "drop masks whose predicted IoU (SAM's own quality estimate) is not above this")
    stability_score_thresh: Share = key(0.95, "drop masks whose IoU between logit cut-offs +-offset is under this")
    stability_score_offset: Positive = key(1.0, "the logit offset of the stability score")
    box_nms_thresh: Share = key(0.7, "box IoU above which the lower-scored of two masks is a duplicate")
    crop_n_layers: Whole0 = key(0, "> 0: run again on crops, layer i has (2^i)^2 crops")
    crop_nms_thresh: Share = key(0.7, "duplicates between crops")
    crop_overlap_ratio: Share = key(512 / 1500, "overlap of first-layer crops, as a fraction of the image side")
    crop_n_points_downscale_factor: Whole1 = key(1, "crop layer i samples points_per_side / factor^i per side")
    min_mask_region_area: Whole0 = key(0, "> 0: remove islands and fill holes smaller than this (pixels; needs "
                                       "OpenCV)")


class SamModel(Section):
    """The SAM model."""

    type: Literal[SAM_TYPES] = key("vit_h", "vit_h (= default), vit_l, vit_b, or vit_tiny (tests; no published "
                                   "weights)")


class Refine(Section):
    """Which SAM regions may relabel a predicted mask."""

    min_predicted_iou: AnyNumber = key(0.88, "SAM regions with a lower predicted IoU change no label (SAM's own "
                                       "estimate: any real number)")
    min_area: Whole0 = key(0, "regions smaller than this many pixels change no label")


class Figure(Section):
    """The figure of SAM's masks."""

    images: list[str] = key(["0013", "0062", "0104"], "the reports' images; missing ones: the first three")


class SamRecipe(Recipe):
    """``sam masks`` and ``sam refine``."""

    task: Literal["sam"] = key("sam", TASK)
    model: SamModel = section(SamModel)
    generator: Generator = section(Generator)
    prefilter: bool = key(False, "true: filter the decoder's low-resolution masks by predicted IoU before up-sampling "
                          "them (same masks as the official generator, less work); false: the official generator "
                          "exactly")
    refine: Refine = section(Refine)
    figure: Figure = section(Figure)


RECIPES = {"classify": ClassifyRecipe, "segment": SegmentRecipe, "ssl_pretrain": ByolRecipe,
           "ssl_finetune": FinetuneRecipe, "ssl_table": TableRecipe, "sam": SamRecipe}  # what a recipe file is for


def leaves(recipe: BaseModel, prefix: str = ""):
    """``(dotted key, value, field)`` of every key of a recipe, in order."""
    for name, field in type(recipe).model_fields.items():
        value = getattr(recipe, name)
        if isinstance(value, BaseModel):
            yield from leaves(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", value, field


def describe_keys(kind: type[BaseModel]) -> list[tuple[str, str, str, str]]:
    """``(dotted key, default, what a good value is, meaning)`` for every key of a recipe type, in order."""
    import json

    return [(name, f"{value:g}" if isinstance(value, float) else json.dumps(value), describe_field(field),
             field.description or "") for name, value, field in leaves(kind())]


def field_at(kind: type[BaseModel], path: tuple) -> tuple[str, Any]:
    """``(dotted key, field)`` of the deepest recipe key along ``path`` (a validation error's location)."""
    names, field = [], None
    for part in path:
        if not (isinstance(kind, type) and issubclass(kind, BaseModel)) or part not in kind.model_fields:
            break
        names.append(part)
        field = kind.model_fields[part]
        kind = field.annotation
    return ".".join(names), field


def keys_markdown(tasks: list[str] | None = None) -> str:
    """Every key of the recipes of ``tasks`` (default: all) as Markdown tables, one per section (the top-level
    keys first), each key with its rule, its meaning and its default, per task where they differ."""
    import json

    tables: dict[str, dict] = {}  # section -> {key: (tasks, {rule: tasks}, meaning, {default: tasks})}
    tasks = tasks or list(RECIPES)
    for task in tasks:
        recipe = RECIPES[task]()
        for name, field in type(recipe).model_fields.items():
            value = getattr(recipe, name)
            section = isinstance(value, BaseModel)
            if name == "task":  # fixed by the command
                continue
            for key, default, leaf in leaves(value, f"{name}.") if section else [(name, value, field)]:
                row = tables.setdefault(name if section else "top level", {}).setdefault(
                    key, ([], {}, leaf.description, {}))
                row[0].append(task)
                row[1].setdefault(describe_field(leaf), []).append(task)
                shown = f"{default:g}" if isinstance(default, float) else json.dumps(default)
                row[3].setdefault(shown, []).append(task)

    def cell(values: dict, where: list, everywhere: set, code: bool) -> str:
        quote = "`" if code else ""
        if len(values) == 1 and set(where) == everywhere:  # one value in every task that has the section
            return f"{quote}{next(iter(values))}{quote}"
        return "; ".join(f"{quote}{value}{quote} ({', '.join(ts)})" for value, ts in values.items())

    lines = []
    for section, rows in tables.items():
        everywhere = {task for where, *_ in rows.values() for task in where}
        lines += [f"#### {section}", "", "| key | default | rule | meaning |", "|---|---|---|---|"]
        for key, (where, rules, meaning, defaults) in rows.items():
            rule = cell(rules, where, everywhere, False) if len(rules) > 1 else next(iter(rules))
            lines.append(f"| `{key}` | {cell(defaults, where, everywhere, True)} | {rule} | {meaning} |")
        lines.append("")
    return "\n".join(lines)
