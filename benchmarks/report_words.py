"""The report's recipe cells (``model_words``, ``loss_words``, ``augmentation_words``) against the recipe's own dump.

For every shipped training recipe: the three cells the report's recipe table shows, and what a generic rendering of
the same sections (pydantic's ``model_dump``, all fields, as JSON) would put in their place: its fields and
characters. The homework's report asks for each model's recipe in words; the cells say only what is switched on.
Usage: python benchmarks/report_words.py
"""

from __future__ import annotations

import json
from pathlib import Path

from machine import header

from dlcv.config import load_recipe
from dlcv.recipes import RECIPES

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RECIPE_FILES = (("classify", "p1/model_a_cpu.yaml"), ("classify", "p1/model_b_cpu.yaml"),
                ("classify", "p1/r3_model_a.yaml"), ("segment", "seg/fcn32s.yaml"), ("segment", "seg/cpu.yaml"),
                ("ssl_finetune", "ssl/finetune_cpu.yaml"), ("ssl_pretrain", "ssl/byol_cpu.yaml"))


def main() -> None:
    header()
    words_total = dump_total = 0
    for task, name in RECIPE_FILES:
        recipe = load_recipe(RECIPES[task], CONFIGS / name)
        cells = [recipe.model_words(), recipe.loss_words(), recipe.augmentation_words()]
        sections = {key: getattr(recipe, key).model_dump(mode="json") for key in ("model", "data", "train")}
        dump = json.dumps(sections)
        fields = sum(len(v) for v in sections.values())
        words_total, dump_total = words_total + sum(map(len, cells)), dump_total + len(dump)
        print(f"{name}: cells {sum(map(len, cells))} characters | model, data and train dumped: {fields} fields, "
              f"{len(dump)} characters")
        for label, cell in zip(("model", "loss", "augmentation"), cells):
            print(f"    {label}: {cell}")
    print(f"all {len(RECIPE_FILES)}: cells {words_total} characters, dumps {dump_total} "
          f"({dump_total / words_total:.1f}x)")


if __name__ == "__main__":
    main()
