"""SAM everything-mode speed (issue 7): the official generator with its defaults against ours, same
model, same machine, same images, side by side.

  official: segment-anything's ``SamAutomaticMaskGenerator`` as shipped: a 32x32 prompt grid,
            64 prompts per decoder pass, every mask up-sampled to 1024x1024 and back before the
            predicted-IoU filter.
  ours:     ``configs/sam/fast.yaml``: a 16x16 grid, 256 prompts per pass, the predicted-IoU filter
            on the decoder's 256x256 logits before any up-sampling (``dlcv.models.sam``).

For each image: wall seconds and the process's CPU seconds (the CPU time is the steadier figure
on a shared machine), image encoder included as ``generate`` runs it, number of masks, and
their agreement: the mean over our masks of the best IoU with any official mask (and the reverse).
Without a checkpoint the model has random weights (``--model vit_b`` is the real architecture, so
the timings are real; the masks mean nothing). Random weights predict IoUs near 0 and stability
scores of 0, so ``--pred-iou-thresh`` / ``--stability-score-thresh`` relax both filters in both
generators alike (the values used are printed and saved).

Usage: python benchmarks/sam_speed.py --images .../p2_data/validation --ids 0013 0062 [--model vit_b]
       [--checkpoint FILE] [--pred-iou-thresh 0.03 --stability-score-thresh 0] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from machine import cpu, header


def mean_best_iou(ours: list[np.ndarray], theirs: list[np.ndarray]) -> float:
    """Mean over ``ours`` of the best IoU with any of ``theirs`` (nan if ours is empty; 0 if theirs is)."""
    if not ours:
        return float("nan")
    if not theirs:
        return 0.0
    a = np.stack([m.ravel() for m in ours]).astype(np.float32)
    b = np.stack([m.ravel() for m in theirs]).astype(np.float32)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return float((inter / np.maximum(union, 1)).max(1).mean())


def main() -> int:
    header()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True, help="folder of NNNN_sat.jpg")
    parser.add_argument("--ids", nargs="+", default=["0013", "0062"])
    parser.add_argument("--model", default="vit_b")
    parser.add_argument("--checkpoint", help="SAM checkpoint (default: random weights, seed 0)")
    parser.add_argument("--fast-config", default=str(Path(__file__).resolve().parents[1] / "configs/sam/fast.yaml"))
    parser.add_argument("--pred-iou-thresh", type=float, help="replaces 0.88 in both generators")
    parser.add_argument("--stability-score-thresh", type=float, help="replaces 0.95 in both generators")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    import torch

    from dlcv.files import decode_image
    from dlcv.models.sam import build_sam, load_sam, mask_generator
    from dlcv.recipes import Generator
    from dlcv.sam import decode_rle, sam_recipe

    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = (load_sam(args.checkpoint, args.model) if args.checkpoint else build_sam(args.model).eval()).to(device)
    relaxed = {k: v for k, v in (("pred_iou_thresh", args.pred_iou_thresh),
                                 ("stability_score_thresh", args.stability_score_thresh)) if v is not None}
    official_knobs = {**Generator().model_dump(), **relaxed}
    fast = sam_recipe(args.fast_config)
    ours_knobs = {**fast["generator"], **relaxed}
    variants = {"official": mask_generator(model, official_knobs, prefilter=False),
                "ours": mask_generator(model, ours_knobs, prefilter=fast["prefilter"])}
    rows = []
    for name in args.ids:
        image = decode_image(Path(args.images) / f"{name}_sat.jpg")
        masks, seconds, cpu_seconds = {}, {}, {}
        for variant, generator in variants.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            records = generator.generate(image)
            seconds[variant] = time.perf_counter() - start
            cpu_seconds[variant] = time.process_time() - cpu_start
            masks[variant] = [decode_rle(r["segmentation"]) for r in records]
            print(f"{name} {variant}: {len(records)} masks in {seconds[variant]:.1f} s "
                  f"({cpu_seconds[variant]:.1f} CPU s)", flush=True)
        rows.append({"image": name, "size": list(image.shape[:2]), "seconds": seconds, "cpu_seconds": cpu_seconds,
                     "masks": {k: len(v) for k, v in masks.items()},
                     "ours_vs_official_mean_best_iou": mean_best_iou(masks["ours"], masks["official"]),
                     "official_vs_ours_mean_best_iou": mean_best_iou(masks["official"], masks["ours"])})
    result = {
        "model": args.model, "weights": args.checkpoint or "random (seed 0)", "device": device,
        "torch_threads": torch.get_num_threads(), "machine": cpu(),
        "official": official_knobs, "ours": {**ours_knobs, "prefilter": fast["prefilter"]}, "relaxed": relaxed,
        "rows": rows,
        "mean_seconds": {v: statistics.mean(r["seconds"][v] for r in rows) for v in variants},
        "mean_cpu_seconds": {v: statistics.mean(r["cpu_seconds"][v] for r in rows) for v in variants},
    }
    print("\n| image | official s | ours s | official masks | ours masks | ours vs official | official vs ours |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['image']} | {r['seconds']['official']:.1f} | {r['seconds']['ours']:.1f} | "
              f"{r['masks']['official']} | {r['masks']['ours']} | {r['ours_vs_official_mean_best_iou']:.3f} | "
              f"{r['official_vs_ours_mean_best_iou']:.3f} |")
    ms = result["mean_seconds"]
    cs = result["mean_cpu_seconds"]
    print(f"mean seconds per image: official {ms['official']:.1f}, ours {ms['ours']:.1f} "
          f"({ms['official'] / ms['ours']:.2f}x); CPU seconds (all threads): official {cs['official']:.1f}, "
          f"ours {cs['ours']:.1f} ({cs['official'] / cs['ours']:.2f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
