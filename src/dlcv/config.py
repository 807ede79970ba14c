"""Recipes: one YAML file per experiment, merged over the task's defaults, resolved in full and saved with the run.

Unknown keys are errors, except under free-form sections (``model.args``), which belong to the ``name`` beside them:
a later layer naming another model starts its arguments afresh.
"""

from __future__ import annotations

import copy
import functools
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dlcv.errors import DlcvError, exception_line, shown
from dlcv.recipes import Model, Recipe, RecipeError, Training, describe_field, field_at

FREE_FORM = {("model", "args")}
# PyYAML (YAML 1.1) reads ``5e-4`` and ``1.0e4`` as strings; YAML 1.2 and every user read them as numbers.
EXPONENT_FLOAT = r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"


# A recipe is a few hundred values; YAML's aliases can make a few lines expand to billions ("billion laughs").
MAX_VALUES = 10_000  # values a recipe's YAML may expand to, aliases counted at their full size
MAX_DEPTH = 64  # nesting levels (the composer recurses once per level)
MAX_CHARS = 1 << 20  # a recipe's YAML text


@functools.cache
def _recipe_loader():
    """Return the recipe YAML loader class, built once (PyYAML is imported when first needed)."""
    import yaml

    class TooLarge(yaml.YAMLError):
        """A recipe's YAML past ``MAX_CHARS``, ``MAX_VALUES`` or ``MAX_DEPTH``."""

    class RecipeLoader(yaml.SafeLoader):
        """PyYAML's safe loader, also reading floats such as ``5e-4`` as numbers, and refusing oversized documents.

        A document that expands past ``MAX_VALUES`` values or nests past ``MAX_DEPTH`` is refused as it is composed,
        and a mapping that gives a key twice is refused.
        """

        def __init__(self, stream):
            super().__init__(stream)
            self.expanded, self.depth, self.sizes = 0, 0, {}  # sizes: each anchor's expanded size

        def compose_node(self, parent, index):
            """PyYAML's node, counted: an alias at its anchor's expanded size (1 while that is still composed)."""
            event = self.peek_event()
            anchor = getattr(event, "anchor", None)
            if isinstance(event, yaml.AliasEvent):
                self._count(self.sizes.get(anchor, 1))
                return super().compose_node(parent, index)
            if self.depth >= MAX_DEPTH:
                raise TooLarge(f"nests deeper than {MAX_DEPTH} levels")
            before, self.depth = self.expanded, self.depth + 1
            node = super().compose_node(parent, index)
            self.depth -= 1
            self._count(1)
            if anchor is not None:
                self.sizes[anchor] = self.expanded - before
            return node

        def construct_mapping(self, node, deep=False):
            """PyYAML's mapping, refusing a key given twice (PyYAML keeps the last one silently)."""
            _check_unique_keys(self, node)
            return super().construct_mapping(node, deep)

        def _count(self, size: int) -> None:
            """Add ``size`` values to the document's count; refuse the document past ``MAX_VALUES``."""
            self.expanded += size
            if self.expanded > MAX_VALUES:
                raise TooLarge(f"expands to more than {MAX_VALUES} values (aliases counted in full)")

    RecipeLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(EXPONENT_FLOAT), list("-+0123456789"))
    RecipeLoader.TooLarge = TooLarge
    return RecipeLoader


def _check_unique_keys(loader, node) -> None:
    """Raise PyYAML's constructor error, at its line, for a plain key that a mapping ``node`` gives twice."""
    import yaml

    seen = set()
    for key_node, _ in node.value:
        key = None if key_node.tag == "tag:yaml.org,2002:merge" else loader.construct_object(key_node, deep=True)
        if isinstance(key, (str, int, float, bool)):
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice",
                                                        key_node.start_mark)
            seen.add(key)


def yaml_value(text: str):
    """Parse a recipe's YAML text into plain data.

    Raises:
        yaml.YAMLError: if the text is not valid YAML, gives a key twice, or is past a recipe's size (then the
            loader's ``TooLarge``, a subclass).
    """
    import yaml

    loader = _recipe_loader()
    if len(text) > MAX_CHARS:
        raise loader.TooLarge(f"is longer than {MAX_CHARS} characters")
    try:
        return yaml.load(text, Loader=loader)  # a SafeLoader: plain data only
    except ValueError as exc:  # an integer past Python's limit of digits for a conversion from text
        raise yaml.YAMLError(str(exc)) from None


def _load_yaml(path: Path) -> dict:
    """Read a recipe file as a mapping (``{}`` when empty); ``DlcvError`` for anything else."""
    import yaml

    if not path.is_file():
        raise DlcvError(f"{path}: {'a folder, not a' if path.is_dir() else 'no such'} recipe file")
    with open(path, "rb") as handle:
        raw = handle.read(MAX_CHARS + 1)  # no more: a file past a recipe's size is refused unread
    if len(raw) > MAX_CHARS:
        raise DlcvError(f"{path}: too large for a recipe (more than {MAX_CHARS} bytes)")
    try:
        data = yaml_value(raw.decode("utf-8"))
    except _recipe_loader().TooLarge as exc:
        raise DlcvError(f"{path}: too large for a recipe: it {exc}") from None
    except yaml.YAMLError as exc:
        raise DlcvError(f"{path}: not valid YAML ({exception_line(exc)})") from None
    except UnicodeDecodeError:
        raise DlcvError(f"{path}: not a text file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DlcvError(f"{path}: a recipe must be a mapping of sections, got {type(data).__name__}")
    return data


def merge(defaults: dict, override: dict, source: str, path: tuple[str, ...] = ()) -> dict:
    """Return ``defaults`` updated by ``override``, section by section, refusing keys the defaults do not have.

    Under a free-form section (``model.args``) any key is taken; an ``override`` naming another model starts its
    arguments afresh.

    Args:
        defaults: the mapping merged into; it is not changed.
        override: the keys to set.
        source: where ``override`` comes from (a file, ``--set``), named in errors.
        path: the keys above these mappings.

    Raises:
        DlcvError: if a key is unknown, a section is given a value, or a key that takes a value is given sub-keys.
    """
    out = copy.deepcopy(defaults)
    if (*path, "args") in FREE_FORM and override.get("name", out.get("name")) != out.get("name"):
        out["args"] = {}  # another model: the arguments of the one it replaces do not apply
    for key, value in override.items():
        here = (*path, str(key))
        free = here in FREE_FORM
        name = shown(".".join(here))
        if not free and key not in defaults:
            known = ", ".join(sorted(defaults)) or "none"
            raise DlcvError(f"{source}: unknown recipe key {name} (known here: {known})")
        mapping = free or isinstance(defaults[key], dict)
        if mapping and not isinstance(value, dict):
            raise DlcvError(f"{source}: recipe key {name} must be a mapping, got {shown(value)}")
        if not mapping and isinstance(value, dict):
            raise DlcvError(f"{source}: recipe key {name} takes a value, not sub-keys "
                            f"({shown(', '.join(map(str, value)))})")
        if free:
            out[key] = {**(out.get(key) or {}), **copy.deepcopy(value)}
        elif mapping:
            out[key] = merge(defaults[key], value, source, here)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_overrides(items: Iterable[str]) -> dict:
    """Turn ``--set`` items such as ``optim.lr=0.05`` into a nested mapping, each value parsed as YAML.

    A value that is not valid YAML is kept as text.

    Raises:
        DlcvError: if an item has no ``=``, a value is too large for a recipe, or a key lies below one that an
            earlier item set to a value.
    """
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise DlcvError(f"--set {shown(item)}: expected KEY=VALUE, e.g. train.epochs=5")
        key, raw = item.split("=", 1)
        try:
            value = yaml_value(raw)
        except _recipe_loader().TooLarge as exc:
            raise DlcvError(f"--set {shown(key)}: the value is too large for a recipe: it {exc}") from None
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for depth, part in enumerate(parts[:-1], start=1):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):  # an earlier --set gave this key a value
                raise DlcvError(f"--set {shown(key)}: {shown('.'.join(parts[:depth]))} is set to a value by an "
                                "earlier --set, so it has no sub-keys")
        node[parts[-1]] = value
    return out


def load_recipe(recipe_type: type[Recipe], path: str | os.PathLike | None, overrides: Iterable[str] = (),
                base: dict | None = None, resumed: bool = False) -> Recipe:
    """Load the recipe of type ``recipe_type``: its defaults (or ``base``), then the file, then the ``--set`` overrides.

    Values and model arguments are checked (nothing is built); an error names the key and where its value came from.

    Args:
        recipe_type: the recipe type, e.g. ``ClassifyRecipe``.
        path: a recipe YAML file, whose stem is the recipe's ``name`` unless it sets one; None: no file.
        overrides: ``--set`` items, ``KEY=VALUE``.
        base: a mapping to start from instead of ``recipe_type``'s defaults.
        resumed: for ``--resume``, where the saved recipe decides whether epochs may be asked of a budget.

    Returns:
        the checked recipe.

    Raises:
        DlcvError: if the file is not a readable recipe, a key is unknown, a value breaks its rule, ``--set
            train.epochs`` meets a time budget (unless ``resumed``), or the model refuses its arguments.
    """
    recipe = copy.deepcopy(base) if base is not None else recipe_type().model_dump()
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
        from_path = lookup(from_file, key) is not MISSING or (key == "name" and path is not None)
        return str(path) if from_path else "the built-in defaults"

    typed = validated(recipe_type, recipe, source_of)
    train = getattr(typed, "train", None)
    if train is not None and train.budget and lookup(from_set, "train.epochs") is not MISSING and not resumed:
        # Under a budget train.epochs is only the first plan: a tiny run asked for would train the whole budget.
        raise DlcvError(f"--set train.epochs={train.epochs}: the recipe trains to a time budget (train.budget "
                        f"{train.budget}, from {source_of('train.budget')}) and plans its epochs from the measured "
                        "speed; add --budget none to train by epochs, or give a shorter --budget")
    if isinstance(typed, Training) and isinstance(typed.model, Model):  # a registered model, not BYOL's trunk
        from dlcv.models.registry import check_model_args

        try:
            check_model_args(typed.model.name, typed.task, typed.model.args)
        except DlcvError as exc:
            raise DlcvError(f"{source_of('model')}: {exc}") from None
    return typed


def validated(recipe_type: type[Recipe], recipe: dict, source_of=lambda key: "the recipe") -> Recipe:
    """Check the mapping ``recipe`` as a ``recipe_type`` and return it typed.

    Args:
        recipe_type: the recipe type.
        recipe: the mapping.
        source_of: ``source_of(key)`` says where a key's value came from, for the error.

    Raises:
        DlcvError: on the first broken rule, in one line naming the key, its rule and its source.
    """
    try:
        return recipe_type.model_validate(recipe)
    except ValidationError as exc:
        error = exc.errors()[0]
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, RecipeError):  # a check across keys
            raise DlcvError(f"{source_of(cause.key)}: {cause}") from None
        if error["type"] == "extra_forbidden":  # a recipe not merged over the defaults (a checkpoint's)
            key = ".".join(map(str, error["loc"]))
            raise DlcvError(f"{source_of(key)}: unknown recipe key {shown(key)}") from None
        key, field = field_at(recipe_type, error["loc"])
        raise DlcvError(f"{source_of(key)}: {key} must be {describe_field(field)}, got {shown(lookup(recipe, key))}") \
            from None


MISSING = object()  # what ``lookup`` gives for a key the tree does not set


def lookup(tree, key: str):
    """Return the value of the dotted ``key`` in the nested ``tree`` (a mapping or a typed recipe), or ``MISSING``."""
    node = tree
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif part in getattr(type(node), "model_fields", {}):
            node = getattr(node, part)
        else:
            return MISSING
    return node


def dump_recipe(recipe) -> str:
    """Return a recipe (typed, or a mapping) as YAML text, its keys in order."""
    import yaml

    data = recipe.model_dump() if hasattr(recipe, "model_dump") else recipe
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
