"""The recipe schema's parts: the sections every training task shares and the base recipes."""

from __future__ import annotations

import functools
import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dlcv.errors import shown
from dlcv.rules import (
    MAX_PROCESSES,
    STRATEGIES,
    AcceptedValues,
    Duration,
    FolderName,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    RecipeError,
    ZeroToBelowOne,
    ZeroToOne,
    image_batch_bytes,
    integer,
    largest_side,
    list_of,
    memory_refusal,
    number,
)

__all__ = ["Stats", "Spread", "EpochList", "TtaMode", "SegTtaMode", "TTA_MODES", "SEG_TTA_MODES", "OPTIMIZERS",
           "SCHEDULES", "PIXEL_LOSSES", "IMAGENET_MEAN", "IMAGENET_STD", "key", "section", "Section", "Optim",
           "Schedule", "Devices", "Train", "Model", "snapshot_epochs", "TASK", "Recipe", "Training", "number_text"]

Stats, Spread = list_of(3, NonNegativeFloat), list_of(3, PositiveFloat)
EpochList = Annotated[str | list[str | int] | None, AcceptedValues("first, middle, last and/or epoch numbers, as a "
                                                                   "text or a list")]

TtaMode = Literal["none", "flip", "flip_shift"]
SegTtaMode = Literal["none", "flip", "d4"]  # flip: image + mirror; d4: the 4 rotations x 2 mirrors
TTA_MODES, SEG_TTA_MODES = typing.get_args(TtaMode), typing.get_args(SegTtaMode)
OPTIMIZERS = ("sgd", "adam", "adamw", "lars")
SCHEDULES = ("constant", "onecycle", "cosine", "cosine_restarts", "linear", "poly", "multistep")
PIXEL_LOSSES = ("ce", "focal", "dice", "lovasz")
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def key(default, meaning: str):
    """Return the pydantic field of a recipe key: its default and its one-line meaning."""
    return Field(default, description=meaning)


def section(section_type: type[BaseModel], **defaults):
    """Return the pydantic field of a recipe section, with this task's defaults where they differ from its own.

    The section class's docstring becomes the field's description.
    """
    return Field(default_factory=lambda: section_type(**defaults), description=section_type.__doc__)


class Section(BaseModel):
    """A part of a recipe: unknown keys, values of the wrong type and values outside their range are refused."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True)


# --- the sections every training task shares ------------------------------------------------------------
class Optim(Section):
    """The optimiser."""

    name: Literal[OPTIMIZERS] = key("sgd", "the optimiser")
    lr: NonNegativeFloat = key(0.1, "the (peak) learning rate")
    momentum: ZeroToOne = key(0.9, "sgd and lars: momentum")
    nesterov: bool = key(True, "sgd: Nesterov momentum")
    betas: list_of(2, ZeroToBelowOne) = key([0.9, 0.999], "adam and adamw: the moment decays")
    weight_decay: NonNegativeFloat = key(5e-4, "weight decay (decoupled for adamw)")
    decay_norm_and_bias: bool = key(False, "also decay normalisation weights and biases")
    head_lr_mult: PositiveFloat = key(1.0, "a classifier's head (last layer) learns at this multiple of lr; the "
                                           "schedule scales both alike (e.g. 10 when fine-tuning pretrained weights)")


class Schedule(Section):
    """The learning-rate schedule, stepped every batch."""

    name: Literal[SCHEDULES] = key("onecycle", "the learning-rate schedule, stepped every batch")
    warmup_epochs: NonNegativeFloat = key(0, "cosine, linear, poly, multistep: linear ramp over these epochs")
    pct_start: number(0, 1, open_low=True, open_high=True) = key(0.25, "onecycle: share of steps rising to the peak")
    anneal: Literal["linear", "cos"] = key("linear", "onecycle: the shape of the rise and fall")
    div_factor: PositiveFloat = key(10.0, "onecycle: start lr = lr / div_factor")
    final_div_factor: PositiveFloat = key(100.0, "onecycle: end lr = start lr / final_div_factor")
    min_lr_fraction: ZeroToOne = key(0.0, "cosine, linear, poly: floor as a fraction of lr")
    power: NonNegativeFloat = key(0.9, "poly: lr * (1 - t)^power")
    milestones: list_of(None, NonNegativeFloat) = key([], "multistep: where lr drops: epochs (1 and more) or shares "
                                                          "of the run (below 1, e.g. [0.5, 0.75]; with train.budget, "
                                                          "shares only)")
    gamma: PositiveFloat = key(0.1, "multistep: the factor of each drop")
    restart_epochs: PositiveInt = key(10, "cosine_restarts: epochs of the first cosine period (SGDR's T_0)")
    restart_mult: PositiveInt = key(1, "cosine_restarts: each period this many times longer than the last (T_mult)")


Devices = Annotated[Literal["auto"] | integer(1, MAX_PROCESSES) | list[integer(0, MAX_PROCESSES - 1)],
                    AcceptedValues(f"auto, a number of devices in 1..{MAX_PROCESSES} or a list of device indices")]


class Train(Section):
    """How the run trains: its length or budget, precision, devices, and what keeps the best weights."""

    epochs: PositiveInt = key(30, "training epochs (with train.budget: only the plan until the speed is measured)")
    budget: Duration | None = key(None, "end the whole command within this time (20m, 1h30m): the steps are planned "
                                        "from the measured speed, the schedule runs over them, the epochs are a result")
    reference_epochs: number(0, open_low=True) | None = key(
        None, "with train.budget: the fewest epochs of the runs behind the recipe's figure (docs/results.md); a plan "
              "of fewer says it may not reach it")
    precision: Literal["auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true"] = key(
        "auto", "auto: bf16-mixed where the hardware computes bf16 fast (16-mixed on a T4 or V100), else 32-true; or "
                "any of Lightning's")
    early_stopping_patience: NonNegativeInt = key(0, "> 0: stop after this many epochs without a better monitored "
                                                     "metric")
    ema_decay: ZeroToBelowOne = key(0.0, "> 0: validate, checkpoint and predict with an exponential moving average of "
                                         "the weights (bias-corrected)")
    gradient_clip: NonNegativeFloat = key(0.0, "> 0: clip the gradients' global norm to this")
    save_top_k: PositiveInt = key(1, "keep the k best checkpoints (top/), for predict --ensemble k")
    tta: Literal["none"] = key("none", "prediction and final scoring's test-time augmentation (none here)")
    val_tta: Literal["none"] = key("none", "per-epoch validation's test-time augmentation (none here)")
    channels_last: bool = key(True, "the channels-last memory layout (faster convolutions)")
    threads: integer(1, MAX_PROCESSES) | None = key(None, "CPU threads for torch; null: all cores")
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps", "tpu"] = key("auto", "Lightning's accelerator")
    devices: Devices = key("auto", "a number of GPUs (or CPU processes), or auto: one, or one per process that "
                                   "torchrun or SLURM started")
    num_nodes: integer(1, MAX_PROCESSES) = key(1, "machines in a multi-node run (more when torchrun or srun started "
                                                  "more)")
    strategy: Literal[STRATEGIES] = key("auto", "auto, ddp, ... (Lightning's); torchrun and SLURM are detected")
    sync_batchnorm: bool = key(False, "batch-norm statistics over all processes (GPUs; small per-device batches)")
    deterministic: bool = key(False, "deterministic algorithms wherever a kernel has one")


class Model(Section):
    """The model: a registered name (``dlcv models``) and its builder's arguments."""

    name: str = key("dlcv_net", "any registered model (dlcv models)")
    args: dict[str, Any] = key({}, "free-form: the model builder's arguments")


def snapshot_epochs(spec, max_epochs: int | None, where: str = "embed.epochs") -> list[int | str]:
    """Resolve snapshot epochs given as ``first``, ``middle``, ``last`` and epoch numbers to 1-based epochs.

    Args:
        spec: comma-separated text, or a list of numbers and those words; empty or None: no epochs.
        max_epochs: the run's epochs; None (a time budget decides them): ``middle`` and ``last`` stay words.
        where: the recipe key, named in errors.

    Returns:
        the distinct epochs: numbers in increasing order, then words.

    Raises:
        RecipeError: if an item is neither one of the words nor an epoch from 1 to ``max_epochs``.
    """
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


def number_text(value) -> str:
    """Format a recipe's number as ``%g`` writes it (``0.0005``, ``1e-05``); booleans and text as ``str`` does."""
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


class Recipe(Section):
    """A recipe: the task it is for (each recipe fixes its own) and the name of its run folder."""

    task: str = key("", TASK)
    name: FolderName | None = key(None, "run folder name under --runs-dir; default: the recipe file's name")

    TRACE_BATCH: typing.ClassVar[int | None] = None  # the batch ``dlcv export`` traces at (None: not exported)


class Training(Recipe):
    """A recipe that trains: its seed, and the checks across its keys."""

    seed: integer(0, 2**32 - 1) = key(0, "seeds the split, the weights and every epoch's random draws")

    SNAPSHOTS: typing.ClassVar[str | None] = None  # the key of the epochs whose snapshots are kept
    FIT_COMMAND: typing.ClassVar[str] = ""  # the command that trains it
    CLASSES: typing.ClassVar[int | None] = None  # the model's outputs where the task fixes them (else the data's)

    @property
    def planned_epochs(self) -> int | None:
        """The epochs to train, or None where a time budget decides them."""
        return None if self.train.budget else self.train.epochs

    # What the report says of a run of the recipe (``report.blocks.recipe_table``); each task's recipe tells its own.
    def model_words(self) -> str:
        """Describe the model in words: its registered name with its arguments."""
        args = ", ".join(f"{k}={v}" for k, v in self.model.args.items() if v is not None)
        return self.model.name + (f" ({args})" if args else "")

    def loss_words(self) -> str:
        """Describe the loss in words."""
        raise NotImplementedError

    def augmentation_words(self) -> str:
        """Describe the augmentation in words."""
        raise NotImplementedError

    def unmonitored_selection(self) -> str:
        """Say what chose the best checkpoint when no metric did: the recipe's validation data."""
        data = self.data
        return f"holdout {data.holdout:.0%} of training" if data.holdout > 0 else str(data.validation)

    def input_side(self) -> int | None:
        """Return the side of the square images the model takes; None: no architecture to show."""
        return None

    def evaluation_scale(self) -> float:
        """Return an evaluated image's cost over a trained one's (their pixels' ratio), for a budget's first guess."""
        return 1.0

    def test_time_augmentation(self) -> str | None:
        """Return the test-time augmentation predictions average over; None where the task does not predict."""
        return None

    def image_batches(self) -> list[tuple[str | None, str, int]]:
        """List the batches of images the model takes, whose memory ``_batch_memory`` bounds.

        Returns:
            one ``(side key, batch-size key, views per image)`` per batch; side key None: the course's 32 pixels.
        """
        return []

    def snapshots(self) -> list[int | str]:
        """Return the epochs of the recipe's snapshots (words where a time budget decides them)."""
        section, name = self.SNAPSHOTS.split(".")
        return snapshot_epochs(getattr(getattr(self, section), name), self.planned_epochs, self.SNAPSHOTS)

    @model_validator(mode="after")
    def _across_keys(self):
        """Check the rules across keys: multistep milestones under a budget, snapshot epochs, batch memory."""
        if self.train.budget and self.schedule.name == "multistep" and any(m >= 1 for m in self.schedule.milestones):
            raise RecipeError("schedule.milestones", f"schedule.milestones {shown(self.schedule.milestones)}: with "
                              "train.budget the epochs are not known in advance; give shares of the run, e.g. "
                              "[0.5, 0.75]")
        if self.SNAPSHOTS:
            self.snapshots()
        for batch in self.image_batches():
            self._batch_memory(*batch)
        return self

    def _batch_memory(self, side_key: str | None, batch_key: str, views: int) -> None:
        """Refuse a batch whose float32 images (``rules.image_batch_bytes``) exceed the machine's memory.

        The ``RecipeError`` names the side or the batch size, whichever is further above the recipe's default.
        """
        side, batch = (_value(self, side_key) or COURSE_SIDE) if side_key else COURSE_SIDE, _value(self, batch_key)
        images, defaults = batch * views, _defaults(type(self))
        default_side = (_value(defaults, side_key) or COURSE_SIDE) if side_key else COURSE_SIDE
        blame_side = side_key is not None and (side / default_side) ** 2 >= batch / _value(defaults, batch_key)
        what = (f"{side_key}={side}: one float32 batch of {batch} images ({batch_key})" if blame_side else
                f"{batch_key}={batch}: one float32 batch of {batch} images")
        what += (", two views each," if views == 2 else "") + f" of 3x{side}x{side}"
        what += f" ({side_key})" if side_key and not blame_side else ""

        def at_most(limit: int) -> int:
            return largest_side(images, limit) if blame_side else limit // image_batch_bytes(views, side)

        refusal = memory_refusal(what, image_batch_bytes(images, side), at_most, self.train.accelerator)
        if refusal:
            raise RecipeError(side_key if blame_side else batch_key, refusal)


COURSE_SIDE = 32  # the side of the course's classification images, when no key resizes them


@functools.cache
def _defaults(section_type: type[BaseModel]) -> BaseModel:
    """A recipe type's defaults, built without its checks (which ask for them)."""
    return section_type.model_construct()


def _value(recipe: BaseModel, key: str):
    """The value of a dotted recipe key."""
    return functools.reduce(getattr, key.split("."), recipe)
