"""Why dlcv reads recipes through its own YAML loader and words pydantic's errors itself: the libraries' own answers.

For three bad recipes, side by side: what PyYAML's ``safe_load`` and pydantic's ``model_validate`` give, and what
``dlcv.config.load_recipe`` says.

1. An alias bomb (nine levels of nine aliases, 9^9 values): ``safe_load`` keeps the aliases shared, so the bomb
   expands where the recipe is used (written out as ``recipe.yaml`` is: ``json.dumps`` here, timed with its peak
   memory on a smaller bomb of ``--levels`` levels so that it ends); dlcv refuses it at once.
2. A key given twice: ``safe_load`` keeps the last value silently; dlcv refuses it, naming the line.
3. ``data.batch_size: 0``: pydantic's error (its lines and characters); dlcv's one line naming the file and the key.

Usage: python benchmarks/recipe_errors.py [--levels 6]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def bomb(levels: int) -> str:
    text = "a0: &a0 [" + ", ".join(["lol"] * 9) + "]\n"
    for i in range(1, levels):
        text += f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n"
    return text


def count(value) -> int:
    return sum(count(v) for v in value) if isinstance(value, list) else 1


def dlcv_says(text: str) -> tuple[str, float]:
    from dlcv.config import load_recipe
    from dlcv.errors import DlcvError
    from dlcv.recipes import ClassifyRecipe

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "recipe.yaml"
        path.write_text(text)
        start = time.perf_counter()
        try:
            load_recipe(ClassifyRecipe, path)
            said = "accepted"
        except DlcvError as exc:
            said = str(exc).replace(str(path), "recipe.yaml")
        return said, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, default=6, help="levels of the bomb safe_load is given")
    args = parser.parse_args()
    import yaml
    from machine import header
    from pydantic import ValidationError

    from dlcv.recipes import ClassifyRecipe

    header()
    text = "optim:\n" + "".join(f"  {line}\n" for line in bomb(args.levels).splitlines())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    loaded = yaml.safe_load(text)
    written = json.dumps(loaded)
    seconds = time.perf_counter() - start
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    values = count(loaded["optim"][f"a{args.levels - 1}"])
    said, dlcv_seconds = dlcv_says("optim:\n" + "".join(f"  {line}\n" for line in bomb(9).splitlines()))
    print(f"alias bomb: safe_load and json.dumps of {args.levels} levels took {seconds:.2f} s and {grown:.0f} MiB more "
          f"peak memory for {values:,} values ({len(written) / 2**20:.0f} MiB of text; 9 levels: "
          f"{9 ** (9 - args.levels):,}x as many); dlcv refused 9 levels in {dlcv_seconds * 1000:.0f} ms: {said}")

    twice = "name: first\nname: second\n"
    said, _ = dlcv_says(twice)
    print(f"a key twice: safe_load gives {yaml.safe_load(twice)}; dlcv: {said}")

    try:
        ClassifyRecipe.model_validate({"data": {"batch_size": 0}})
        pydantic_says = "accepted"
    except ValidationError as exc:
        pydantic_says = str(exc)
    said, _ = dlcv_says("data: {batch_size: 0}\n")
    print(f"batch_size 0: pydantic's error is {len(pydantic_says.splitlines())} lines, {len(pydantic_says)} "
          f"characters:\n{pydantic_says}\ndlcv: {said}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
