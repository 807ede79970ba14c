"""The rules a recipe's or a model's value follows, as annotated types with ``AcceptedValues``: good values in words.

``AcceptedValues`` is what ``dlcv keys`` prints and an error says. This module sits below the recipes, models and
data, which take their rules from here.
"""

from __future__ import annotations

import math
import os
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

__all__ = ["AcceptedValues", "RuleReason", "RecipeError", "integer", "number", "list_of", "checked", "describe",
           "describe_field", "MAX_DURATION", "parse_duration", "format_duration", "is_folder_name", "Duration",
           "FolderName",
           "Folder", "Text", "NonNegativeInt", "PositiveInt", "NonNegativeFloat", "PositiveFloat", "ZeroToOne",
           "ZeroToBelowOne", "AnyNumber",
           "RESNETS", "SAM_TYPES", "crop_padding_error", "MAX_WIDTH", "Width", "MAX_PROCESSES", "STRATEGIES", "FLOAT32",
           "machine_memory", "gpu_memory", "memory_words", "memory_refusal", "image_batch_bytes", "largest_side"]


@dataclass(frozen=True)
class AcceptedValues:
    """What a good value of a type is, in words (``a whole number >= 1``)."""

    text: str


class RuleReason(ValueError):
    """A value's refusal whose message the error line adds after the rule (``timm has no tag 'x' ...``)."""


class RecipeError(ValueError):
    """A failed check across recipe keys; ``key`` is the key whose source the error line names."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def integer(low: int = 0, high: int | None = None):
    """Return the annotated type of a whole number in ``[low, high]`` (``high`` None: no upper bound)."""
    return Annotated[int, Field(ge=low, le=high),
                     AcceptedValues(f"a whole number >= {low}" + (f" and <= {high}" if high is not None else ""))]


def number(low: float = 0.0, high: float | None = None, open_low: bool = False, open_high: bool = False):
    """Return the annotated type of a finite number from ``low`` to ``high`` (None: no upper bound).

    ``open_low`` and ``open_high`` exclude the bound itself.
    """
    bounds = {"gt" if open_low else "ge": low, **({"lt" if open_high else "le": high} if high is not None else {})}
    wants = (f"a number {'>' if open_low else '>='} {low:g}" if high is None else
             f"a number in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}")
    return Annotated[float, Field(allow_inf_nan=False, **bounds), AcceptedValues(wants)]


def list_of(count: int | None, item):
    """Return the annotated type of a list of ``count`` values of type ``item`` (``count`` None: any number)."""
    return Annotated[list[item], Field(min_length=count, max_length=count),
                     AcceptedValues(f"a list of {count if count is not None else 'any number of'} ({describe(item)})")]


def checked(annotation, test, wants: str):
    """Return the annotated type of a value of ``annotation`` that ``test`` accepts; ``wants`` says what it must be."""
    def check(value):
        if not test(value):
            raise ValueError(wants)
        return value
    return Annotated[annotation, AfterValidator(check), AcceptedValues(wants)]


def describe(annotation) -> str:
    """Say in words what a good value of the type ``annotation`` is."""
    if typing.get_origin(annotation) is Annotated:
        said = [m.text for m in annotation.__metadata__ if isinstance(m, AcceptedValues)]
        return said[-1] if said else describe(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(annotation)))
    args = typing.get_args(annotation)
    if type(None) in args:
        return "null or " + " or ".join(describe(a) for a in args if a is not type(None))
    if args and typing.get_origin(annotation) in (typing.Union, type(int | str)):
        return " or ".join(describe(a) for a in args)
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "a text", dict: "a mapping"}
    return names.get(typing.get_origin(annotation) or annotation, "a mapping" if isinstance(annotation, type) and
                     issubclass(annotation, BaseModel) else "a list")


def describe_field(field) -> str:
    """Say in words what a good value of a recipe key (a pydantic field) is."""
    said = [m.text for m in field.metadata if isinstance(m, AcceptedValues)]
    return said[-1] if said else describe(field.annotation)


# --- durations --------------------------------------------------------------------------------------------
MAX_DURATION = 366 * 24 * 3600.0  # a year: anything longer is a typing slip, and overflows timers downstream


def parse_duration(text) -> float | None:
    """Parse a duration such as ``20m``, ``1h30m``, ``90s`` or ``1.5h`` into seconds.

    Each unit comes at most once, in the order h, m, s.

    Returns:
        the seconds, above 0 and at most ``MAX_DURATION`` (a year); None for any other text or value.
    """
    parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?",
                         text.strip()) if isinstance(text, str) else None
    if parts is None or not any(parts.groups()) or max(len(g or "") for g in parts.groups()) > 12:
        return None
    seconds = sum(float(n) * unit for n, unit in zip(parts.groups(), (3600.0, 60.0, 1.0)) if n)
    return seconds if 0 < seconds <= MAX_DURATION else None


def format_duration(seconds: float) -> str:
    """Format seconds as a duration such as ``1h30m``, ``20m``, ``45s`` or ``-7s``: ``parse_duration``'s inverse."""
    seconds = round(seconds)
    hours, rest = divmod(abs(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")
    return ("-" if seconds < 0 else "") + (text or "0s")


def is_folder_name(v) -> bool:
    """Whether ``v`` is a plain folder name: 1 to 255 printable characters, no path separator, not ``.`` or ``..``."""
    return (isinstance(v, str) and 0 < len(v) <= 255 and v not in (".", "..") and "/" not in v and "\\" not in v
            and v.isprintable())


Duration = checked(str, lambda v: parse_duration(v) is not None,
                   "a duration such as 20m, 1h30m, 90s or 1.5h (up to a year)")
FolderName = checked(str, is_folder_name, "a plain folder name (no /, \\ or control characters)")
Folder = Annotated[str, Field(min_length=1), AcceptedValues("a folder or file name")]
Text = Annotated[str, Field(min_length=1), AcceptedValues("a non-empty text")]
NonNegativeInt, PositiveInt = integer(0), integer(1)
NonNegativeFloat, PositiveFloat = number(0), number(0, open_low=True)
ZeroToOne, ZeroToBelowOne = number(0, 1), number(0, 1, open_high=True)
AnyNumber = Annotated[float, Field(allow_inf_nan=False), AcceptedValues("a number")]
RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")  # torchvision's, by name
SAM_TYPES = ("vit_h", "vit_l", "vit_b", "default", "vit_tiny")  # segment-anything's registry and dlcv's tiny one
AUTO_AUGMENTS = ("none", "trivialaugment", "randaugment")  # the batched policies of dlcv.data.policies


def crop_padding_error(padding: int, what: str) -> str:
    """Return the error of a random crop's reflect padding that reaches past the image (``what``: its side)."""
    return f"data.crop_padding {padding} must be below {what}: reflect padding cannot reach past the image"


# --- sizes: static bounds where a larger value is a slip, and what a value costs against the machine --------------
MAX_WIDTH = 16384  # channels or units of one layer: 8x ResNet's widest (2048), 4x BYOL's heads (4096)
Width = integer(1, MAX_WIDTH)
MAX_PROCESSES = 1024  # devices, nodes, threads or processes per node: more than the largest machines have
# Lightning's strategy names (its StrategyRegistry, as a test checks) and auto: importing Lightning here is too slow.
STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_false", "ddp_find_unused_parameters_true", "ddp_fork",
              "ddp_fork_find_unused_parameters_false", "ddp_fork_find_unused_parameters_true", "ddp_notebook",
              "ddp_notebook_find_unused_parameters_false", "ddp_notebook_find_unused_parameters_true", "ddp_spawn",
              "ddp_spawn_find_unused_parameters_false", "ddp_spawn_find_unused_parameters_true", "deepspeed",
              "deepspeed_stage_1", "deepspeed_stage_2", "deepspeed_stage_2_offload", "deepspeed_stage_3",
              "deepspeed_stage_3_offload", "deepspeed_stage_3_offload_nvme", "fsdp", "fsdp_cpu_offload",
              "single_device", "single_tpu", "single_xla", "xla", "xla_debug")
FLOAT32 = 4  # bytes


def machine_memory() -> int:
    """Return the bytes of this machine's physical memory."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def gpu_memory() -> int:
    """Return the bytes of memory of this machine's first GPU (0 without one that torch can use)."""
    import torch

    return torch.cuda.mem_get_info()[1] if torch.cuda.is_available() else 0


def memory_words(size: float) -> str:
    """Format a byte count in decimal units to three digits, e.g. ``690 GB``."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if size < 999.5 or unit == "PB":
            return f"{size:.3g} {unit}" if size < 999.5 else f"{size:,.0f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def memory_refusal(what: str, needs: int, at_most: Callable[[int], int], accelerator: str = "auto") -> str | None:
    """Return None when ``needs`` bytes fit in this machine's memory or its GPU's, else the refusal in one line.

    The refusal reads ``WHAT needs ~690 GB, this machine has 31 GB of memory; give at most AT_MOST(limit)``. The GPU
    is asked only when the memory is too small, so that a recipe that fits loads without torch.

    Args:
        what: the value refused, in words.
        needs: the bytes it needs.
        at_most: ``at_most(limit)`` gives the largest value that fits in ``limit`` bytes.
        accelerator: the recipe's ``train.accelerator``; ``cpu``: the GPU does not count.
    """
    host = machine_memory()
    if needs <= host:
        return None
    gpu = gpu_memory() if accelerator != "cpu" else 0
    if needs <= gpu:
        return None
    has = f"this machine has {memory_words(host)} of memory" + (f" and {memory_words(gpu)} on its GPU" if gpu else "")
    return f"{what} needs ~{memory_words(needs)}, {has}; give at most {at_most(max(host, gpu))}"


def image_batch_bytes(images: int, side: int) -> int:
    """Return the bytes of one float32 batch of ``images`` RGB images of ``side`` x ``side`` pixels.

    It is the estimate behind every bound of an image side or a batch size. It counts the model's input alone, a
    generous floor: the activations kept for the backward pass are many times that, so a refused value cannot run.
    """
    return images * 3 * side * side * FLOAT32


def largest_side(images: int, limit: int) -> int:
    """Return the largest side whose float32 batch of ``images`` RGB images fits in ``limit`` bytes."""
    return math.isqrt(limit // (images * 3 * FLOAT32))
