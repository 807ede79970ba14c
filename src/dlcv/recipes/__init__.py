"""The recipe schema: one pydantic model per task, every key with its default, its rule and its meaning.

A recipe YAML file and ``--set`` override a task's defaults (``dlcv.config.load_recipe``) into one of these, checked in
full and read as typed sections (``recipe.train.epochs``); ``recipe.yaml`` is its ``model_dump()``, and a rule's
``AcceptedValues`` text is what ``dlcv keys`` and errors print. No torch here, so commands that only read recipes
start fast.
"""

from __future__ import annotations

from dlcv.recipes.keys import describe_keys, field_at, keys_markdown, leaves
from dlcv.recipes.schema import *  # noqa: F403 (the schema's parts, as dlcv.recipes.NAME)
from dlcv.recipes.schema import __all__ as _schema
from dlcv.recipes.tasks import *  # noqa: F403 (one recipe per task, and RECIPES)
from dlcv.recipes.tasks import __all__ as _tasks
from dlcv.rules import *  # noqa: F403 (the rules a value follows, as dlcv.recipes.NAME)
from dlcv.rules import __all__ as _rules

__all__ = [*_rules, *_schema, *_tasks, "describe_keys", "field_at", "keys_markdown", "leaves"]
