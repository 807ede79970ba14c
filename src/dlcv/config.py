"""Recipes: one YAML file per experiment, merged over the task's defaults and resolved in full.

A run writes the resolved recipe into its folder, so nothing about an experiment lives only in a
shell history. Keys the defaults do not know are errors (a typo must not be silently ignored),
except under sections marked free-form (``model.args``). A free-form section belongs to the ``name``
beside it: a later layer that names another model starts its arguments afresh.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dlcv.errors import DlcvError

FREE_FORM = {("model", "args")}
# YAML 1.1, which PyYAML reads, makes ``5e-4`` and ``1.0e4`` strings (its floats need a dot and a signed
# exponent); YAML 1.2 and every user read them as numbers: ``lr: 5e-4``, ``--set optim.lr=5e-4``.
EXPONENT_FLOAT = r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"


@functools.cache
def _recipe_loader():
    import re

    import yaml

    class RecipeLoader(yaml.SafeLoader):
        """PyYAML's safe loader that also reads exponent-only floats (``5e-4``) as numbers."""

    RecipeLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(EXPONENT_FLOAT), list("-+0123456789"))
    return RecipeLoader


def yaml_value(text: str):
    """A recipe's YAML text (a file's, a ``--set`` value's, a run folder's) as data."""
    import yaml

    return yaml.load(text, Loader=_recipe_loader())  # a SafeLoader: plain data only


def _load_yaml(path: Path) -> dict:
    import yaml

    if not path.is_file():
        raise DlcvError(f"{path}: no such recipe file")
    try:
        data = yaml_value(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DlcvError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except UnicodeDecodeError:
        raise DlcvError(f"{path}: not a text file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DlcvError(f"{path}: a recipe must be a mapping of sections, got {type(data).__name__}")
    return data


def merge(defaults: dict, override: dict, source: str, path: tuple[str, ...] = ()) -> dict:
    """``defaults`` updated by ``override``, refusing keys the defaults do not have."""
    out = copy.deepcopy(defaults)
    if (*path, "args") in FREE_FORM and override.get("name", out.get("name")) != out.get("name"):
        out["args"] = {}  # another model: the arguments of the one it replaces do not apply
    for key, value in override.items():
        here = (*path, str(key))
        free = here in FREE_FORM
        if not free and key not in defaults:
            known = ", ".join(sorted(defaults)) or "none"
            raise DlcvError(f"{source}: unknown recipe key {'.'.join(here)!r} (known here: {known})")
        if (free or isinstance(defaults[key], dict)) and not isinstance(value, dict):
            raise DlcvError(f"{source}: recipe key {'.'.join(here)!r} must be a mapping")
        if free:
            out[key] = {**(out.get(key) or {}), **copy.deepcopy(value)}
        elif isinstance(defaults[key], dict):
            out[key] = merge(defaults[key], value, source, here)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_overrides(items: Iterable[str]) -> dict:
    """``["optim.lr=0.05", "train.epochs=3"]`` -> nested dict, values parsed as YAML scalars."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise DlcvError(f"--set {item!r}: expected KEY=VALUE, e.g. train.epochs=5")
        key, raw = item.split("=", 1)
        try:
            value = yaml_value(raw)
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def load_recipe(defaults: dict, path: str | os.PathLike | None, overrides: Iterable[str] = ()) -> dict:
    """Defaults, then the recipe file, then ``--set`` overrides; ``name`` defaults to the file's.

    Every value is checked (``dlcv.recipe_checks``) and so is the model, where the recipe names one;
    an error names the key and where its value came from (the file or ``--set``).
    """
    from dlcv.recipe_checks import MISSING, check_model, check_values, lookup
    from dlcv.recipes import rules_for

    recipe = copy.deepcopy(defaults)
    from_file: dict = {}
    if path is not None:
        path = Path(path)
        from_file = _load_yaml(path)
        recipe = merge(recipe, from_file, str(path))
        if not recipe.get("name"):
            recipe["name"] = path.stem
    from_set = parse_overrides(overrides)
    recipe = merge(recipe, from_set, "--set")

    def source_of(key: str) -> str:
        if lookup(from_set, key) is not MISSING:
            return "--set"
        return str(path) if lookup(from_file, key) is not MISSING else "the built-in defaults"

    check_values(recipe, rules_for(recipe.get("task")), source_of)
    if recipe.get("task") in ("classify", "segment") and isinstance(recipe.get("model"), dict):
        check_model(recipe, source_of("model"))
    return recipe


def dump_recipe(recipe: dict) -> str:
    import yaml

    return yaml.safe_dump(recipe, sort_keys=False, default_flow_style=None)
