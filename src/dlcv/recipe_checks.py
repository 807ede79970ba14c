"""The rules a recipe value must follow, and the check of a recipe against them, before any work.

A rule is a test and what a good value is (``whole(1)``, ``one_of(...)``, ``optional(...)``); each key's
rule is declared beside its default and meaning in ``dlcv.recipes``. A broken rule is one line naming
the key and where the value came from: ``configs/x.yaml: optim.lr must be a number >= 0, got -1``.
Checks that join several keys (epochs of snapshots against the epochs) are the tasks' ``check_*_recipe``
there; the model is checked by building it (``check_model``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from dlcv.errors import DlcvError, exception_line, shown


@dataclass(frozen=True)
class Rule:
    """``test(value)`` is True for a good value; ``wants`` says what a good value is."""

    test: Callable[[object], bool]
    wants: str


def _is_number(v) -> bool:
    """A finite int or float (not a bool, NaN, an infinity, or an int past the floats' range)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def whole(low: int = 0, high: int | None = None) -> Rule:
    test = (lambda v: isinstance(v, int) and _is_number(v) and v >= low and (high is None or v <= high))
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


_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text) -> float | None:
    """Seconds of a duration such as ``20m``, ``1h30m``, ``90s`` or ``1.5h``; None if it is not one."""
    import re

    if not isinstance(text, str) or not re.fullmatch(r"(\d+(\.\d+)?[hms])+", text.strip()):
        return None
    seconds = sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([hms])", text.strip()))
    return seconds if seconds > 0 else None


def format_duration(seconds: float) -> str:
    """``1h30m``, ``20m``, ``45s``, ``2m30s``, ``-7s``: the inverse of ``parse_duration`` to the second."""
    seconds = round(seconds)
    hours, rest = divmod(abs(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")
    return ("-" if seconds < 0 else "") + (text or "0s")


DURATION = Rule(lambda v: parse_duration(v) is not None, "a duration such as 20m, 1h30m, 90s or 1.5h")
BOOLEAN = Rule(lambda v: isinstance(v, bool), "true or false")
TEXT = Rule(lambda v: isinstance(v, str) and bool(v), "a non-empty text")
POSITIVE = number(0, open_low=True)
SHARE = number(0, 1)
STATS = list_of(3, number(0))
ANY_NUMBER = Rule(_is_number, "a number")
FOLDER_NAME = Rule(lambda v: isinstance(v, str) and 0 < len(v) <= 255 and v not in (".", "..") and "/" not in v
                   and "\\" not in v and v.isprintable(), "a plain folder name (no /, \\ or control characters)")


MISSING = object()  # what ``lookup`` gives for a key the tree does not set


def lookup(tree: dict, key: str):
    """The value of the dotted ``key`` in the nested ``tree``, or ``MISSING``."""
    node = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def check_values(recipe: dict, rules: dict[str, Rule], source_of: Callable[[str], str]) -> None:
    """Every value of ``recipe`` that ``rules`` (dotted key -> rule) has a rule for follows it; else one
    line naming the key and ``source_of(key)`` (the recipe file, ``--set``, or the run folder's recipe)."""
    for key, rule in rules.items():
        value = lookup(recipe, key)
        if value is not MISSING and not rule.test(value):
            raise DlcvError(f"{source_of(key)}: {key} must be {rule.wants}, got {shown(value)}")


def check_arg(name: str, value, rule: Rule) -> None:
    """A model builder's argument ``model.args.NAME`` follows ``rule``; else one line naming it."""
    if not rule.test(value):
        raise DlcvError(f"model.args.{name} must be {rule.wants}, got {shown(value)}")


def check_model(recipe: dict, where: str) -> None:
    """The recipe's model (``model.name`` with ``model.args``) can be built: built once on the meta
    device (shapes only, no memory, no weights read), so an unknown name or argument, or an argument
    the model refuses (whatever it raises), is one line naming ``where`` before any data is read."""
    import torch

    from dlcv.checkpoints import rebuild_args
    from dlcv.models import create_model

    spec = recipe["model"]
    kind = "segment" if recipe.get("task") == "segment" else "classify"
    if not isinstance(spec.get("name"), str) or not isinstance(spec.get("args") or {}, dict):
        raise DlcvError(f"{where}: model must be {{name: NAME, args: {{...}}}}, got {shown(spec)}")
    try:
        with torch.device("meta"):
            create_model(spec["name"], num_classes=2, kind=kind, **rebuild_args(spec.get("args") or {}))
    except DlcvError as exc:
        raise DlcvError(f"{where}: {exc}") from None
    except Exception as exc:  # a builder's own refusal: a bare assert, a ValueError, torch's shape checks
        raise DlcvError(f"{where}: model.args cannot build model {shown(spec['name'])}: "
                        f"{exception_line(exc)}") from None
