"""Segmentation evaluation benchmark (issue 5), side by side in one run:

  course-style: the course's mean_iou_evaluate.py as written (every mask read into one float64
                stack with ``np.empty``, then a pass over the stacks per class), as a whole process;
  dlcv:         ``dlcv segment evaluate`` as a whole process (one 7x7 confusion matrix per image,
                decoded on threads, nothing stacked).

Both print per-class IoU and mIoU; this script checks that they agree to 1e-6 and reports the
wall time and peak memory (the process's own max RSS) of each, median of alternating rounds.

Usage: python benchmarks/seg_eval.py --predictions PRED_DIR --labels .../p2_data/validation [--rounds 3]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time

from machine import header

COURSE_STYLE = r'''
import os, resource, sys
import numpy as np
from PIL import Image  # the course used imageio.imread, which decodes PNGs with Pillow


def read_masks(filepath):
    file_list = [file for file in os.listdir(filepath) if file.endswith('.png')]
    file_list.sort()
    n_masks = len(file_list)
    masks = np.empty((n_masks, 512, 512))
    for i, file in enumerate(file_list):
        mask = np.asarray(Image.open(os.path.join(filepath, file)).convert('RGB'))
        mask = (mask >= 128).astype(int)
        mask = 4 * mask[:, :, 0] + 2 * mask[:, :, 1] + mask[:, :, 2]
        masks[i, mask == 3] = 0  # (Cyan: 011) Urban land
        masks[i, mask == 6] = 1  # (Yellow: 110) Agriculture land
        masks[i, mask == 5] = 2  # (Purple: 101) Rangeland
        masks[i, mask == 2] = 3  # (Green: 010) Forest land
        masks[i, mask == 1] = 4  # (Blue: 001) Water
        masks[i, mask == 7] = 5  # (White: 111) Barren land
        masks[i, mask == 0] = 6  # (Black: 000) Unknown
    return masks


def mean_iou_score(pred, labels):
    mean_iou = 0
    for i in range(6):
        tp_fp = np.sum(pred == i)
        tp_fn = np.sum(labels == i)
        tp = np.sum((pred == i) * (labels == i))
        iou = tp / (tp_fp + tp_fn - tp)
        mean_iou += iou / 6
        print('class #%d : %1.5f' % (i, iou))
    print('\nmean_iou: %f\n' % mean_iou)


pred = read_masks(sys.argv[1])
labels = read_masks(sys.argv[2])
mean_iou_score(pred, labels)
print('maxrss_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
'''

DLCV = r'''
import resource, sys
from dlcv.cli.main import main
from machine import header
code = main(["segment", "evaluate", "--predictions", sys.argv[1], "--labels", sys.argv[2]])
print('maxrss_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
sys.exit(code)
'''


def run(code: str, predictions: str, labels: str) -> tuple[float, int, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, predictions, labels], capture_output=True, text=True,
                          check=False)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(done.stderr)
    rss = int(re.search(r"maxrss_kb (\d+)", done.stderr).group(1))
    return seconds, rss, done.stdout


def parse(out: str) -> tuple[list[float], float]:
    ious = [float(v) for v in re.findall(r"class #\d : ([0-9.]+|nan)", out)]
    return ious, float(re.search(r"mean_iou: ([0-9.]+|nan)", out).group(1))


def main():
    header()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", required=True)
    parser.add_argument("--labels", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    times = {"course-style": [], "dlcv": []}
    rss = {"course-style": [], "dlcv": []}
    outputs = {}
    for _ in range(args.rounds):  # alternate, so a slow spell of the machine hits both
        for name, code in (("course-style", COURSE_STYLE), ("dlcv", DLCV)):
            seconds, peak, out = run(code, args.predictions, args.labels)
            times[name].append(seconds)
            rss[name].append(peak)
            outputs[name] = out
    course_ious, course_miou = parse(outputs["course-style"])
    ours_ious, ours_miou = parse(outputs["dlcv"])
    exact = re.search(r"mean_iou: ([0-9.]+)", outputs["dlcv"].strip().splitlines()[-1]).group(1)
    print(f"per-class IoU  course-style {course_ious}\n               dlcv         {ours_ious}")
    print(f"mIoU course-style {course_miou:.6f}  dlcv {exact}  |difference| {abs(course_miou - ours_miou):.1e} "
          f"(target <= 1e-6)")
    t_course, t_ours = statistics.median(times["course-style"]), statistics.median(times["dlcv"])
    m_course, m_ours = max(rss["course-style"]) / 1024, max(rss["dlcv"]) / 1024
    print(f"whole process, median of {args.rounds}: course-style {t_course:.2f} s  dlcv {t_ours:.2f} s  "
          f"speed-up {t_course / t_ours:.1f}x (target >= 4x)")
    print(f"peak memory: course-style {m_course:.0f} MiB  dlcv {m_ours:.0f} MiB  ratio {m_ours / m_course:.2f} "
          f"(target <= 0.25)")


if __name__ == "__main__":
    main()
