"""Where and when a benchmark ran: the lines every benchmark prints first.

CPU model and its vector flags (from /proc/cpuinfo), cores, the GPU, torch's version, the date and the git
revision (with ``+changes`` when the tree differs from it). Python scripts call ``header()``; shell scripts run
``python benchmarks/machine.py``.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import time
from pathlib import Path

VECTOR_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "neon", "sve")


def cpu() -> str:
    """``MODEL, N cores, flags ...`` from /proc/cpuinfo (the machine's name where it has none)."""
    model, flags = platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model") and model == platform.machine():
                model = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    shown = " ".join(f for f in VECTOR_FLAGS if f in flags) or "none of " + "/".join(VECTOR_FLAGS)
    return f"{model}, {cores} cores, flags {shown}"


def revision() -> str:
    """The git revision of the repository this file lies in, ``+changes`` when the work tree differs from it."""
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("+changes" if dirty else "")


def gpu() -> str:
    try:
        import torch
    except ImportError:
        return "torch not installed"
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    return f"{name}; torch {torch.__version__}"


def best_of(repeats: int, fn) -> tuple:
    """(value, fastest seconds) of ``fn()`` over ``repeats`` runs."""
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return value, min(times)


def header() -> str:
    """The lines, printed and returned."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = f"machine: {cpu()}\ngpu: {gpu()}\nwhen: {now}, revision {revision()}"
    print(text, flush=True)
    return text


if __name__ == "__main__":
    header()
