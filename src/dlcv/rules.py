"""The rules a recipe's or a model's value follows, as annotated types, with ``Wants``: a good value in words (what
``dlcv keys`` prints and an error says). Below the recipes, models and data, which take their rules from here."""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

__all__ = ["Wants", "RecipeError", "whole", "number", "list_of", "checked", "describe", "describe_field",
           "MAX_DURATION", "parse_duration", "format_duration", "is_folder_name", "Duration", "FolderName",
           "Folder", "Text", "Whole0", "Whole1", "NonNegative", "Positive", "Share", "Fraction", "AnyNumber",
           "RESNETS", "SAM_TYPES", "crop_padding_error"]


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


# --- durations --------------------------------------------------------------------------------------------
MAX_DURATION = 366 * 24 * 3600.0  # a year: anything longer is a typing slip, and overflows timers downstream


def parse_duration(text) -> float | None:
    """Seconds of a duration such as ``20m``, ``1h30m``, ``90s`` or ``1.5h`` (each unit at most once, in the order
    h, m, s; above 0 and at most a year); None if it is not one."""
    parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?",
                         text.strip()) if isinstance(text, str) else None
    if parts is None or not any(parts.groups()) or max(len(g or "") for g in parts.groups()) > 12:
        return None
    seconds = sum(float(n) * unit for n, unit in zip(parts.groups(), (3600.0, 60.0, 1.0)) if n)
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
RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")  # torchvision's, by name
SAM_TYPES = ("vit_h", "vit_l", "vit_b", "default", "vit_tiny")  # segment-anything's registry and dlcv's tiny one
AUTO_AUGMENTS = ("none", "trivialaugment", "randaugment")  # the batched policies of dlcv.data.policies


def crop_padding_error(padding: int, what: str) -> str:
    """The error of a random crop's reflect padding that reaches past the image (``what``: its side, said)."""
    return f"data.crop_padding {padding} must be below {what}: reflect padding cannot reach past the image"
