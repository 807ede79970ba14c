"""How firmly the demo's self-supervised claims hold: its BYOL and settings over seeds and precisions.

``dlcv demo``'s test asserts two effects on the synthetic data: BYOL's kNN monitor ends at least 0.15 above the
untrained trunk's, and setting C (fine-tuning from the BYOL backbone) beats A (from scratch) by at least 0.05.
Seeds and precisions stand in for other hardware (a GPU's bf16-mixed kernels round differently from a
CPU's), so each claim should hold on every seed in both precisions, with margin. For each SEED:PRECISION
this runs ``dlcv ssl table`` on the demo's recipes (``dlcv.demo``) with the seed and precision set, optional
JSON overrides merged into the BYOL and fine-tuning recipes, and the settings asked for, then prints one line
per run and the smallest margins.

Usage: python benchmarks/demo_ssl_seeds.py [--work /tmp/demo_ssl_seeds] [--settings AC]
       [--byol '{"optim": {"lr": 0.2}}'] [--finetune '{...}'] 0:bf16-mixed 1:bf16-mixed 0:32-true ...
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import time
from pathlib import Path

from machine import header

from dlcv import demo
from dlcv.data.synth import synth_p1, synth_p2, synth_ssl


def merged(base: dict, changes: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        out[key] = merged(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def main() -> None:
    header()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="SEED:PRECISION, e.g. 0:bf16-mixed 1:32-true")
    parser.add_argument("--work", type=Path, default=Path("/tmp/demo_ssl_seeds"))
    parser.add_argument("--settings", default="AC", help="of A-E (A and C for the claims)")
    parser.add_argument("--byol", type=json.loads, default={}, help="JSON merged into the demo's BYOL recipe")
    parser.add_argument("--finetune", type=json.loads, default={}, help="JSON merged into its fine-tuning recipe")
    args = parser.parse_args()
    data = args.work / "data"
    if not (data / "p2_data" / "mini").is_dir():  # the demo's data, drawn as the demo draws it
        synth_p1(data, overwrite=True)
        synth_p2(data, overwrite=True)
        synth_ssl(data, arch="resnet18", overwrite=True)
    # A table already in the work folder is reused (ssl table's rule), so the name holds the recipes' digest.
    changes = [args.settings, demo.SSL_DEMO_BYOL, args.byol, demo.SSL_DEMO_FINETUNE, args.finetune]
    digest = hashlib.sha1(json.dumps(changes, sort_keys=True).encode()).hexdigest()
    margins = []
    for run in args.runs:
        seed, precision = run.split(":")
        name = f"{digest[:8]}_{seed}_{precision}"

        def seeded(recipe: dict, extra: dict) -> dict:
            recipe = merged(recipe, extra)
            recipe["seed"], recipe["train"]["precision"] = int(seed), precision
            return recipe

        start = time.perf_counter()
        folder = demo.ssl_table(args.work / "recipes" / name, data / "p2_data", args.work / "runs", name,
                                args.settings, seeded(demo.SSL_DEMO_BYOL, args.byol),
                                seeded(demo.SSL_DEMO_SUPERVISED, {}), seeded(demo.SSL_DEMO_FINETUNE, args.finetune))
        rows = {r["setting"]: r["accuracy"] for r in json.loads((folder / "table.json").read_text())["rows"]}
        byol = json.loads((folder / "byol" / "summary.json").read_text())
        rise = byol["final_knn_acc"] - byol["knn_acc_at_init"]
        gap = rows["C"] - rows["A"] if {"A", "C"} <= rows.keys() else float("nan")
        margins.append((gap, rise))
        print(f"seed {seed} {precision}: " + "  ".join(f"{k} {v:.3f}" for k, v in rows.items())
              + f"  C-A {gap:+.3f}  kNN {byol['knn_acc_at_init']:.3f} -> {byol['final_knn_acc']:.3f}"
              f"  {time.perf_counter() - start:.0f} s", flush=True)
    print(f"smallest C-A {min(m[0] for m in margins):+.3f} (the test asks +0.05), smallest kNN rise "
          f"{min(m[1] for m in margins):+.3f} (the test asks +0.15), over {len(margins)} runs")


if __name__ == "__main__":
    main()
