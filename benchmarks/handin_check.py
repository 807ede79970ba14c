"""A year's hand-in folder on the course's validation data, under the grading machine's stand-in, against dlcv.

Writes the folder with ``dlcv handin`` for the checkpoints given, runs each of its scripts with another
interpreter (by default Debian's /usr/bin/python3 with python3-torch, no dlcv) from another folder, runs
``dlcv classify predict`` / ``dlcv segment predict`` on the same checkpoints, and prints per script: its wall
time, the weights file's size, and the agreement (labels equal on how many images; the two mask folders' mIoU
against the ground truth and how many pixels differ).

Usage: python benchmarks/handin_check.py --year 2022 --checkpoint p1=RUN/best.ckpt --checkpoint seg=RUN/best.ckpt
       [--data ../shared/data/hw1_data] [--office OFFICE] [--python /usr/bin/python3] [--work /tmp/handin_check]
       [--half]

The self-supervision script (2023, 2024) reads ``--office``'s val.csv and val/ (Office-Home, or the office/ folder of
``dlcv data transfer-split`` where Office-Home is not on disk).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from machine import header
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def dlcv(*args, show: bool = False) -> None:
    subprocess.run([sys.executable, "-m", "dlcv", *map(str, args)], check=True,
                   stdout=None if show else subprocess.DEVNULL)


def bare_env(python: str, home: Path) -> dict[str, str]:
    """The environment a hand-in script runs in: ``python`` first on the PATH, nothing of dlcv's; the driver's
    library path kept (without it a GPU machine's torch may find no CUDA)."""
    env = {"PATH": f"{Path(python).parent}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    return env | {k: v for k, v in os.environ.items() if k in ("LD_LIBRARY_PATH", "CUDA_HOME")}


def script(python: str, folder: Path, name: str, *args, cwd: Path) -> float:
    """Run a hand-in script under ``bare_env``; its wall time."""
    start = time.perf_counter()
    done = subprocess.run(["bash", str(folder / name), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          env=bare_env(python, cwd), check=False)
    if done.returncode:
        raise SystemExit(f"{name}: exit {done.returncode}: {done.stderr[-2000:]}")
    return time.perf_counter() - start


def mean_iou(masks: Path, labels: Path) -> float:
    from dlcv.segment import evaluate

    return evaluate(masks, labels)["mean_iou"]


def main() -> None:
    header()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--year", type=int, default=2022)
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "hw1_data")
    parser.add_argument("--office", type=Path, help="an Office-Home folder (val.csv, val/) for the ssl script")
    parser.add_argument("--python", default="/usr/bin/python3")
    parser.add_argument("--half", action="store_true", help="dlcv handin --half (float16 where its check allows)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/handin_check"))
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    hand = args.work / "hand in"
    given = dict(item.split("=", 1) for item in args.checkpoint)
    dlcv("handin", "--year", args.year, "--output", hand, *sum((["--checkpoint", c] for c in args.checkpoint), []),
         *(["--half"] if args.half else []), show=True)
    version = subprocess.run([args.python, "-c", "import torch; print(torch.__version__, torch.cuda.is_available())"],
                             capture_output=True, text=True, check=True, env=bare_env(args.python, args.work)).stdout
    print(f"year {args.year}, scripts under {args.python} (torch {version.split()[0]}, CUDA seen: "
          f"{version.split()[1]}), from {args.work}")
    for path in sorted(hand.glob("hw1_*.sh")):
        if "download" in path.name:
            continue
        name = path.read_text().split('/')[-1].split("_predict.py")[0]  # python3 ".../NAME_predict.py" "$@"
        weights = (hand / f"{name}.pth").stat().st_size / 1e6
        if name == "p1":
            images = args.data / "p1_data" / "val_50"
            seconds = script(args.python, hand, path.name, images, args.work / "p1.csv", cwd=args.work)
            dlcv("classify", "predict", "--checkpoint", given["p1"], "--images", images, "--output",
                 args.work / "dlcv_p1.csv")
            got, want = ([r[1] for r in csv.reader(open(args.work / f))][1:] for f in ("p1.csv", "dlcv_p1.csv"))
            truth = {r["filename"]: r["label"] for r in csv.DictReader(open(args.data / "p1_data" / "val_gt.csv"))}
            names = [r[0] for r in csv.reader(open(args.work / "p1.csv"))][1:]
            accuracy = np.mean([truth[n] == g for n, g in zip(names, got)])
            print(f"{path.name} (p1): {seconds:.1f} s, weights {weights:.1f} MB; labels equal to dlcv's on "
                  f"{sum(a == b for a, b in zip(got, want))} of {len(want)} images; accuracy {accuracy:.4f}")
        elif name == "ssl":
            table, images = args.office / "val.csv", args.office / "val"
            seconds = script(args.python, hand, path.name, table, images, args.work / "ssl.csv", cwd=args.work)
            dlcv("ssl", "predict", "--checkpoint", given["ssl"], "--csv", table, "--images", images, "--output",
                 args.work / "dlcv_ssl.csv")
            got, want, truth = ([r["label"] for r in csv.DictReader(open(f))]
                                for f in (args.work / "ssl.csv", args.work / "dlcv_ssl.csv", table))
            accuracy = np.mean([g == t for g, t in zip(got, truth)])
            print(f"{path.name} (ssl): {seconds:.1f} s, weights {weights:.1f} MB; labels equal to dlcv's on "
                  f"{sum(a == b for a, b in zip(got, want))} of {len(want)} images; accuracy {accuracy:.4f}")
        elif name == "seg":
            images = args.data / "p2_data" / "validation"
            seconds = script(args.python, hand, path.name, images, args.work / "masks", cwd=args.work)
            dlcv("segment", "predict", "--checkpoint", given["seg"], "--images", images, "--output",
                 args.work / "dlcv_masks")
            differ = sum(int((np.asarray(Image.open(p)) != np.asarray(Image.open(args.work / "dlcv_masks" / p.name)))
                             .any(-1).sum()) for p in sorted((args.work / "masks").glob("*_mask.png")))
            ours, theirs = mean_iou(args.work / "masks", images), mean_iou(args.work / "dlcv_masks", images)
            print(f"{path.name} (seg): {seconds:.1f} s, weights {weights:.1f} MB; mIoU {ours:.6f} against dlcv's "
                  f"{theirs:.6f} (difference {abs(ours - theirs):.1e}); {differ} pixels differ of "
                  f"{257 * 512 * 512:,}")


if __name__ == "__main__":
    main()
