"""One recipe per task: its sections and defaults, and the checks across its keys."""

from __future__ import annotations

import typing
from typing import Annotated, Literal

from pydantic import Field, model_validator

from dlcv.data.masks import NUM_CLASSES
from dlcv.data.p1 import MAX_CLASSES
from dlcv.recipes.schema import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PIXEL_LOSSES,
    TASK,
    EpochList,
    Model,
    Optim,
    Recipe,
    Schedule,
    Section,
    SegTtaMode,
    Spread,
    Stats,
    Train,
    Training,
    TtaMode,
    key,
    number_text,
    section,
)
from dlcv.rules import (
    AUTO_AUGMENTS,
    FLOAT32,
    RESNETS,
    SAM_TYPES,
    AcceptedValues,
    AnyNumber,
    Duration,
    Folder,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    RecipeError,
    Width,
    ZeroToBelowOne,
    ZeroToOne,
    checked,
    crop_padding_error,
    integer,
    list_of,
    memory_refusal,
    number,
)

__all__ = ["RECIPES", "ClassifyData", "ClassifyTrain", "Embed", "ClassifyRecipe", "FinetuneRecipe", "CropScale",
           "SegmentData", "PixelLoss", "SegmentLoss", "SegmentTrain", "Progress", "SegmentRecipe", "ByolData", "Views",
           "Trunk", "Byol", "Monitor", "ByolRecipe", "SSL_SETTINGS", "Backbones", "TableData", "Shares", "TableRecipe",
           "Generator", "SamModel", "Refine", "Figure", "SamRecipe"]


# --- Problem 1: classification ----------------------------------------------------------------------------
class ClassifyData(Section):
    """The labelled folders, the batches and the augmentation."""

    train: Folder = key("train_50", "folder under --data; labels from file names or train_labels")
    train_labels: Folder | None = key(None, "optional filename,label CSV under --data")
    validation: str | None = key("val_50", "folder under --data (null or \"\": none)")
    validation_labels: Folder | None = key(None, "optional filename,label CSV under --data")
    holdout: ZeroToBelowOne = key(0.0, "> 0: select checkpoints on this stratified share of train instead; the "
                                       "validation folder is then scored once, at the end")
    num_classes: integer(1, MAX_CLASSES) | None = key(None, "null: highest training label + 1")
    batch_size: PositiveInt = key(256, "training batch per process")
    eval_batch_size: PositiveInt = key(500, "validation and prediction batch")
    mean: Stats = key([0.5071, 0.4865, 0.4409], "per-channel mean (CIFAR-100's: the p1 images are of that kind)")
    std: Spread = key([0.2673, 0.2564, 0.2762], "per-channel standard deviation")
    image_size: PositiveInt | None = key(None, "decode every image resized to this square side (folders of mixed "
                                               "sizes: Office-Home)")
    input_size: PositiveInt | None = key(None, "resize to this square size for the model (e.g. 224 for AlexNet)")
    crop_padding: NonNegativeInt = key(4, "random crop after padding by this many pixels (reflect)")
    flip: bool = key(True, "random horizontal mirror")
    cutout: NonNegativeInt = key(0, "side of the square zeroed in every training image (0: off)")
    auto_augment: Literal[AUTO_AUGMENTS] = key(
        "none", "TrivialAugmentWide or RandAugment, a fresh draw per image")
    auto_augment_min_epochs: NonNegativeInt = key(0, "> 0: auto_augment only while the run's plan has at least this "
                                                     "many epochs (a time budget gives a fast machine many: it gets "
                                                     "the regulariser)")
    randaugment_ops: NonNegativeInt = key(2, "randaugment: operations per image")
    randaugment_magnitude: number(0, 30) = key(9, "randaugment: the magnitude bin (of 31)")
    mixup_alpha: NonNegativeFloat = key(0.0, "> 0: MixUp with this Beta(alpha, alpha)")
    cutmix_alpha: NonNegativeFloat = key(0.0, "> 0: CutMix; with both on, one of the two per batch at equal odds")
    cache: bool = key(True, "decode once into a memory-mapped cache under $DLCV_CACHE or ~/.cache/dlcv")


class ClassifyTrain(Train):
    """How the run trains, and the classifier's loss and test-time augmentation."""

    loss: Literal["ce", "focal"] = key("ce", "ce (cross-entropy) or focal")
    focal_gamma: NonNegativeFloat = key(2.0, "focal: the focusing exponent")
    label_smoothing: ZeroToBelowOne = key(0.1, "share of each target spread over all classes")
    tta: TtaMode = key("flip", "prediction and final scoring: none, flip (image + mirror) or flip_shift (+ 1-px "
                               "shifts)")
    val_tta: TtaMode = key("flip", "per-epoch validation (kept cheap: it runs every epoch)")
    top5_accuracy: bool = key(True, "top-5 accuracy beside accuracy, per epoch and at the final scoring (a classifier "
                                    "of six classes or more)")


class Embed(Section):
    """The second-last layer's features kept through training (PCA and t-SNE)."""

    epochs: EpochList = key("first,middle,last", "snapshot epochs: words and/or numbers; \"\" for none")
    train_subset: NonNegativeInt = key(0, "also keep this many training images' features (a fixed, class-balanced "
                                          "sample)")


class ClassifyRecipe(Training):
    """``classify fit``: a classifier on labelled folders."""

    SNAPSHOTS: typing.ClassVar[str] = "embed.epochs"
    FIT_COMMAND: typing.ClassVar[str] = "dlcv classify fit"
    TRACE_BATCH: typing.ClassVar[int] = 100
    task: Literal["classify"] = key("classify", TASK)
    data: ClassifyData = section(ClassifyData)
    model: Model = section(Model)
    optim: Optim = section(Optim)
    schedule: Schedule = section(Schedule)
    train: ClassifyTrain = section(ClassifyTrain)
    embed: Embed = section(Embed)

    def input_side(self) -> int:
        return self.data.input_size or self.data.image_size or 32  # the course's images unless resized

    def image_batches(self) -> list[tuple[str | None, str, int]]:
        data = self.data  # images decoded at image_size are augmented before input_size resizes them
        sides = [k for k, side in (("data.input_size", data.input_size), ("data.image_size", data.image_size)) if side]
        return [(side, batch, 1) for side in sides or [None] for batch in ("data.batch_size", "data.eval_batch_size")]

    def test_time_augmentation(self) -> str:
        return self.train.tta

    def loss_words(self) -> str:
        train = self.train
        text = f"focal (gamma {number_text(train.focal_gamma)})" if train.loss == "focal" else "cross-entropy"
        return text + (f", label smoothing {number_text(train.label_smoothing)}" if train.label_smoothing else "")

    def augmentation_words(self) -> str:
        data = self.data
        optional = [(data.input_size, f"resized to {data.input_size} px"),
                    (data.crop_padding, f"random crop with {data.crop_padding}-px padding"),
                    (data.flip, "horizontal flip"), (data.cutout, f"cutout {data.cutout} px"),
                    (data.auto_augment != "none", data.auto_augment),
                    (data.mixup_alpha > 0, f"mixup (alpha {number_text(data.mixup_alpha)})"),
                    (data.cutmix_alpha > 0, f"cutmix (alpha {number_text(data.cutmix_alpha)})")]
        return ", ".join(text for wanted, text in optional if wanted) or "none"

    @model_validator(mode="after")
    def _padding(self):
        """Refuse a ``data.crop_padding`` that is not below ``data.image_size``."""
        side = self.data.image_size
        if side is not None and self.data.crop_padding >= side:
            raise RecipeError("data.crop_padding",
                              crop_padding_error(self.data.crop_padding, f"data.image_size {side}"))
        return self


class FinetuneRecipe(ClassifyRecipe):
    """``ssl finetune``: a classification recipe over the Office-Home layout (the course report R1's fine-tuning)."""

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
    holdout: ZeroToBelowOne = key(0.0, "> 0: select checkpoints on this random share of train; validation scored once "
                                       "at the end")
    unmapped: Literal["unknown", "error"] = key("unknown", "mask colours in no class (red): unknown (count as Unknown) "
                                                           "or error")
    batch_size: PositiveInt = key(8, "training batch per process")
    eval_batch_size: PositiveInt = key(8, "validation and prediction batch")
    train_size: PositiveInt = key(512, "side of the augmented training crops fed to the model")
    eval_size: PositiveInt = key(512, "whole images are resized to this for the model; predictions return to full size")
    scale: CropScale = key([0.5, 1.0], "random crop side as a fraction of the image side (log-uniform)")
    flip: bool = key(True, "random mirror of image and mask")
    rot90: bool = key(True, "random quarter turns of image and mask")
    mean: Stats = key(IMAGENET_MEAN, "per-channel mean (ImageNet's)")
    std: Spread = key(IMAGENET_STD, "per-channel standard deviation (ImageNet's)")
    cache: bool = key(True, "decode once into a memory-mapped cache under $DLCV_CACHE or ~/.cache/dlcv")


LOSS_NAMES = {"ce": "cross-entropy", "focal": "focal", "dice": "Dice"}  # as the report writes them
PixelLoss = checked(str, lambda v: all(p.strip().lower() in PIXEL_LOSSES for p in v.split("+")),
                    f"one of {', '.join(PIXEL_LOSSES)} or a sum such as ce+lovasz")


class SegmentLoss(Section):
    """The pixel loss."""

    name: PixelLoss = key("ce", "ce, focal, dice, lovasz (Lovasz-softmax, an IoU surrogate), or a sum such as "
                                "ce+lovasz")
    class_weights: list_of(7, NonNegativeFloat) | None = key(None, "7 numbers (Unknown last), for ce and focal")
    label_smoothing: ZeroToBelowOne = key(0.0, "ce: share of each target spread over all classes")
    focal_gamma: NonNegativeFloat = key(2.0, "focal: the focusing exponent")
    dice_weight: NonNegativeFloat = key(1.0, "weight of the dice term in a sum")
    lovasz_weight: NonNegativeFloat = key(1.0, "weight of the lovasz term in a sum")

    def weight(self, name: str) -> float:
        """A term's weight in a sum of losses: dice and lovasz have their keys, ce and focal weigh 1."""
        return {"dice": self.dice_weight, "lovasz": self.lovasz_weight}.get(name, 1.0)


class SegmentTrain(Train):
    """How the run trains, and the segmenter's test-time augmentation."""

    epochs: PositiveInt = key(20, "training epochs (with train.budget: only the plan until the speed is measured)")
    tta: SegTtaMode = key("flip", "prediction and final scoring: none, flip or d4 (4 rotations x 2 mirrors)")
    val_tta: SegTtaMode = key("none", "per-epoch validation")


class Progress(Section):
    """The predicted masks kept through training."""

    epochs: EpochList = key("first,middle,last", "epochs whose predicted masks are kept for the progress grid")
    images: list[str] = key(["0013", "0062", "0104"], "validation ids (the reports' choice; where the folder lacks "
                            "these defaults, or with [], its first three); an id given here must be in the folder")


class SegmentRecipe(Training):
    """``segment fit``: a segmentation model on satellite pairs."""

    SNAPSHOTS: typing.ClassVar[str] = "progress.epochs"
    FIT_COMMAND: typing.ClassVar[str] = "dlcv segment fit"
    TRACE_BATCH: typing.ClassVar[int] = 4
    CLASSES: typing.ClassVar[int] = NUM_CLASSES
    task: Literal["segment"] = key("segment", TASK)
    data: SegmentData = section(SegmentData)
    model: Model = section(Model, name="unet_lite0")
    loss: SegmentLoss = section(SegmentLoss)
    optim: Optim = section(Optim, name="adamw", lr=1e-3, weight_decay=1e-4)
    schedule: Schedule = section(Schedule)
    train: SegmentTrain = section(SegmentTrain)
    progress: Progress = section(Progress)

    def input_side(self) -> int:
        return self.data.eval_size

    def image_batches(self) -> list[tuple[str | None, str, int]]:
        return [("data.train_size", "data.batch_size", 1), ("data.eval_size", "data.eval_batch_size", 1)]

    def evaluation_scale(self) -> float:
        return (self.data.eval_size / self.data.train_size) ** 2  # whole tiles predicted, crops trained

    def test_time_augmentation(self) -> str:
        return self.train.tta

    def loss_words(self) -> str:
        loss = self.loss
        text = " + ".join(LOSS_NAMES.get(part, part) for part in loss.name.split("+"))
        text += f" (gamma {number_text(loss.focal_gamma)})" if "focal" in text else ""
        text += f", label smoothing {number_text(loss.label_smoothing)}" if loss.label_smoothing else ""
        return text + (f", class weights {loss.class_weights}" if loss.class_weights else "")

    def augmentation_words(self) -> str:
        data, (low, high) = self.data, self.data.scale
        parts = [f"random scaled crop (side {low:g}-{high:g} of the image) to {data.train_size} px"]
        parts += ["flips"] * data.flip + ["90-degree turns"] * data.rot90
        return ", ".join([*parts, "image and mask by one affine per sample"])


# --- self-supervised pre-training (BYOL) and transfer to Office-Home -----------------------------------
class ByolData(Section):
    """The unlabelled images and the batches."""

    image_size: PositiveInt | None = key(None, "decode every image resized to this side (Mini-ImageNet: 84 to 128; R1 "
                                               "resized 160)")
    batch_size: PositiveInt = key(128, "training batch per process")
    eval_batch_size: PositiveInt = key(500, "validation and prediction batch")
    mean: Stats = key(IMAGENET_MEAN, "per-channel mean: the statistics' values only; no ImageNet weights anywhere in "
                                     "this path")
    std: Spread = key(IMAGENET_STD, "per-channel standard deviation")
    cache: bool = key(True, "decode once into a memory-mapped cache under $DLCV_CACHE or ~/.cache/dlcv")


class Views(Section):
    """BYOL's two views: lightly's BYOLView1Transform / BYOLView2Transform parameters (``dlcv.data.ssl_views``)."""

    size: PositiveInt = key(128, "side of each view fed to the network (R1 cropped 128)")
    min_scale: number(0, 1, open_low=True) = key(0.08, "smallest crop area as a share of the image")
    hflip: ZeroToOne = key(0.5, "probability of a mirror")
    jitter_prob: ZeroToOne = key(0.8, "probability of the colour jitter")
    brightness: NonNegativeFloat = key(0.4, "colour jitter: brightness")
    contrast: NonNegativeFloat = key(0.4, "colour jitter: contrast")
    saturation: NonNegativeFloat = key(0.2, "colour jitter: saturation")
    hue: number(0, 0.5) = key(0.1, "colour jitter: hue")
    grayscale: ZeroToOne = key(0.2, "probability of grey")
    blur: list_of(2, ZeroToOne) = key([1.0, 0.1], "probability of a Gaussian blur, per view")
    sigma: list_of(2, NonNegativeFloat) = key([0.1, 2.0], "blur sigma range at 224 pixels; scaled by size / 224")
    solarize: list_of(2, ZeroToOne) = key([0.0, 0.2], "probability of solarisation, per view")


class Trunk(Section):
    """The network being pre-trained."""

    arch: Literal[RESNETS] = key("resnet50", "a torchvision ResNet, randomly initialised")


class Byol(Section):
    """BYOL's heads and target network."""

    hidden_dim: Width = key(4096, "projection and prediction heads' hidden width")
    output_dim: Width = key(256, "projection width")
    momentum: ZeroToBelowOne = key(0.99, "the target's momentum at the start of its cosine schedule to 1")


class Monitor(Section):
    """The kNN monitor: each epoch, validation images classified by their neighbours in a class-balanced bank."""

    k: PositiveInt = key(20, "neighbours of the kNN monitor")
    max_bank: PositiveInt = key(5000, "at most this many bank images, class-balanced")


class ByolRecipe(Training):
    """``ssl pretrain``: BYOL on unlabelled images."""

    FIT_COMMAND: typing.ClassVar[str] = "dlcv ssl pretrain"
    task: Literal["ssl_pretrain"] = key("ssl_pretrain", TASK)
    data: ByolData = section(ByolData)
    views: Views = section(Views)
    model: Trunk = section(Trunk)
    byol: Byol = section(Byol)
    optim: Optim = section(Optim, name="adam", lr=3e-4, weight_decay=1e-6)  # R1's; "lars" also works
    schedule: Schedule = section(Schedule, name="cosine")
    train: Train = section(Train, epochs=100)
    monitor: Monitor = section(Monitor)

    def model_words(self) -> str:
        return self.model.arch

    def loss_words(self) -> str:
        return (f"BYOL: negative cosine similarity of prediction and target, both views; target momentum "
                f"{number_text(self.byol.momentum)} rising to 1")

    def augmentation_words(self) -> str:
        return "two views, " + ", ".join(f"{k} {number_text(v)}" for k, v in self.views.model_dump().items())

    def unmonitored_selection(self) -> str:
        return "the last epoch (no kNN monitor)"

    def image_batches(self) -> list[tuple[str | None, str, int]]:
        decoded = [("data.image_size", "data.eval_batch_size", 1)] if self.data.image_size else []
        return [("views.size", "data.batch_size", 2), *decoded]


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

    byol: NonNegativeFloat = key(0.5, "BYOL pre-training's share of the budget")
    supervised: NonNegativeFloat = key(0.1, "the supervised backbone's share")
    settings: NonNegativeFloat = key(0.4, "the fine-tuning settings' share, split evenly among them")


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
                        AcceptedValues("a non-empty list of A-E")] = key(list(SSL_SETTINGS),
                                                                         "the settings to run, of A-E")
    budget: Duration | None = key(None, "end the whole table within this time (2h): each run it trains gets its share "
                                        "of what is left when it starts")
    shares: Shares = section(Shares)


# --- Segment Anything ---------------------------------------------------------------------------------------
SAM_SIDE = 1024  # the side SAM's encoder takes every image (and crop) at
class Generator(Section):
    """Every knob of segment-anything's SamAutomaticMaskGenerator, with its default (tuned there for ViT-H).

    The rules are dlcv's: the generator's own checks are bare asserts.
    """

    points_per_side: integer(1, 256) = key(32, "point prompts on a points_per_side^2 grid (per crop layer; at most "
                                               "256: 65536 prompts per crop, each through the decoder)")
    points_per_batch: PositiveInt = key(64, "prompts decoded together; more is faster where memory allows")
    pred_iou_thresh: ZeroToOne = key(0.88, "drop masks whose predicted IoU (SAM's own quality estimate) is not above "
                                           "this")
    stability_score_thresh: ZeroToOne = key(0.95, "drop masks whose IoU between logit cut-offs +-offset is under this")
    stability_score_offset: PositiveFloat = key(1.0, "the logit offset of the stability score")
    box_nms_thresh: ZeroToOne = key(0.7, "box IoU above which the lower-scored of two masks is a duplicate")
    crop_n_layers: integer(0, 3) = key(0, "> 0: run again on crops, layer i has (2^i)^2 crops (at most 3: 85 crops, "
                                          "each through the image encoder)")
    crop_nms_thresh: ZeroToOne = key(0.7, "duplicates between crops")
    crop_overlap_ratio: ZeroToOne = key(512 / 1500, "overlap of first-layer crops, as a fraction of the image side")
    crop_n_points_downscale_factor: PositiveInt = key(1, "crop layer i samples points_per_side / factor^i per side")
    min_mask_region_area: NonNegativeInt = key(0, "> 0: remove islands and fill holes smaller than this (pixels; needs "
                                                  "OpenCV)")


class SamModel(Section):
    """The SAM model."""

    type: Literal[SAM_TYPES] = key("vit_h", "vit_h (= default), vit_l, vit_b, or vit_tiny (tests; no published "
                                            "weights)")


class Refine(Section):
    """Which SAM regions may relabel a predicted mask."""

    min_predicted_iou: AnyNumber = key(0.88, "SAM regions with a lower predicted IoU change no label (SAM's own "
                                             "estimate: any real number)")
    min_area: NonNegativeInt = key(0, "regions smaller than this many pixels change no label")


class Figure(Section):
    """The figure of SAM's masks."""

    images: list[str] = key(["0013", "0062", "0104"], "the reports' images (where the folder lacks these defaults: "
                            "its first three); an id given here must be in the folder")


class SamRecipe(Recipe):
    """``sam masks`` and ``sam refine``: SAM's automatic masks, and predicted masks refined by them."""

    task: Literal["sam"] = key("sam", TASK)
    model: SamModel = section(SamModel)
    generator: Generator = section(Generator)
    prefilter: bool = key(False, "true: filter the decoder's low-resolution masks by predicted IoU before up-sampling "
                                 "them (same masks as the official generator, less work); false: the official "
                                 "generator exactly")
    refine: Refine = section(Refine)
    figure: Figure = section(Figure)

    @model_validator(mode="after")
    def _prompt_memory(self):
        """Refuse a ``generator.points_per_batch`` whose mask logits exceed the machine's memory."""
        # Each prompt's 3 mask logits: at the decoder's 256 pixels with prefilter, else up-sampled to SAM's input side.
        side = 256 if self.prefilter else SAM_SIDE
        per_prompt, batch = 3 * side * side * FLOAT32, self.generator.points_per_batch
        refusal = memory_refusal(f"generator.points_per_batch={batch}: one batch of {batch} prompts with 3 float32 "
                                 f"mask logits of {side}x{side} each", batch * per_prompt,
                                 lambda limit: limit // per_prompt)
        if refusal:
            raise RecipeError("generator.points_per_batch", refusal)
        return self


RECIPES = {"classify": ClassifyRecipe, "segment": SegmentRecipe, "ssl_pretrain": ByolRecipe,
           "ssl_finetune": FinetuneRecipe, "ssl_table": TableRecipe, "sam": SamRecipe}  # what a recipe file is for
