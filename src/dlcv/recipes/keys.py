"""Every recipe key described: ``dlcv keys`` and the tables of docs/configuration.md."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from dlcv.recipes.tasks import RECIPES
from dlcv.rules import describe_field


def leaves(recipe: BaseModel, prefix: str = ""):
    """Yield ``(dotted key, value, field)`` for every key of a recipe, in order, sections' keys included."""
    for name, field in type(recipe).model_fields.items():
        value = getattr(recipe, name)
        if isinstance(value, BaseModel):
            yield from leaves(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", value, field


def describe_keys(section_type: type[BaseModel]) -> list[tuple[str, str, str, str]]:
    """Return ``(dotted key, default, what a good value is, meaning)`` for every key of a recipe type, in order."""
    return [(name, f"{value:g}" if isinstance(value, float) else json.dumps(value), describe_field(field),
             field.description or "") for name, value, field in leaves(section_type())]


def field_at(section_type: type[BaseModel], path: tuple) -> tuple[str, Any]:
    """Return ``(dotted key, field)`` of the deepest recipe key along ``path`` (a validation error's location)."""
    names, field = [], None
    for part in path:
        is_section = isinstance(section_type, type) and issubclass(section_type, BaseModel)
        if not is_section or part not in section_type.model_fields:
            break
        names.append(part)
        field = section_type.model_fields[part]
        section_type = field.annotation
    return ".".join(names), field


def keys_markdown(tasks: list[str] | None = None) -> str:
    """Return every key of the tasks' recipes as Markdown tables, one per section: docs/configuration.md's tables.

    The top-level keys come first; each key has its default, rule and meaning, a default or rule given per task
    where the tasks differ.

    Args:
        tasks: task names, keys of ``RECIPES``; None: every task.
    """
    tables: dict[str, dict] = {}  # section -> {key: (tasks, {rule: tasks}, meaning, {default: tasks})}
    for task in tasks or RECIPES:
        for key, default, rule, meaning in describe_keys(RECIPES[task]):
            if key == "task":  # fixed by the command
                continue
            row = tables.setdefault(key.split(".")[0] if "." in key else "top level", {}).setdefault(
                key, ([], {}, meaning, {}))
            row[0].append(task)
            row[1].setdefault(rule, []).append(task)
            row[3].setdefault(default, []).append(task)

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
