"""Why dlcv writes checkpoints through its own ``CheckpointIO``: a save killed or out of disk, Lightning's and dlcv's.

Lightning's ``TorchCheckpointIO`` serialises to memory, then opens the path (emptying it) and writes; dlcv's
``RunCheckpointIO`` writes a temporary file beside it and renames it into place. Two cases, each printed per writer:

1. killed: a child process saves a checkpoint-sized dict (a ``--megabytes`` float32 tensor) to one path over and over,
   as a run saves ``last.ckpt`` each epoch; the parent kills it with SIGKILL after a random delay (the OOM killer, a
   preempted node), then loads the file: how many of ``--trials`` kills left a file that does not load;
2. out of disk (with ``--small-disk FOLDER``, on a file system with room for one checkpoint of ``--megabytes`` but
   not for one twice as large, e.g. a 64 MiB tmpfs for 40 MB): a checkpoint is saved, then one twice its size fails for
   want of space: whether the first still loads.

Usage: python benchmarks/killed_writes.py [--trials 20] [--megabytes 200] [--small-disk FOLDER [--small-megabytes 40]]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

CHILD = """
import sys, torch
from pathlib import Path
sys.path.insert(0, {src!r})
path, which, megabytes = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
if which == "lightning":
    from lightning.pytorch.plugins.io import TorchCheckpointIO
    writer = TorchCheckpointIO()
else:
    from dlcv.trainer import RunCheckpointIO
    writer = RunCheckpointIO(path)
weights = torch.randn(megabytes * 2**18)
step = 0
print("ready", flush=True)
while True:
    step += 1
    writer.save_checkpoint({{"state_dict": {{"w": weights}}, "global_step": step}}, path)
"""


def trial(which: str, folder: Path, megabytes: int, delay: float) -> bool:
    """Kill a saving child after ``delay`` seconds of saving; whether the file it leaves loads."""
    import torch

    path = folder / "last.ckpt"
    path.unlink(missing_ok=True)
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(src=str(REPO / "src")), str(path), which,
                              str(megabytes)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    while not path.exists():  # the first save has begun
        time.sleep(0.01)
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    child.wait()
    try:
        torch.load(path, weights_only=True)
        return True
    except Exception:  # noqa: BLE001 -- a truncated file fails in several ways
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--small-disk", type=Path, help="a folder on a file system too small for two checkpoints")
    parser.add_argument("--small-megabytes", type=int, default=40)
    args = parser.parse_args()
    from machine import header

    header()
    rng = random.Random(0)
    delays = [rng.uniform(0.2, 3.0) for _ in range(args.trials)]
    for which in ("lightning", "dlcv"):
        with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
            broken = sum(not trial(which, Path(tmp), args.megabytes, d) for d in delays)
        print(f"{which}: {broken} of {args.trials} kills left a checkpoint that does not load "
              f"({args.megabytes} MB, killed after {min(delays):.1f}-{max(delays):.1f} s of saving)", flush=True)
    if args.small_disk:
        for which in ("lightning", "dlcv"):
            print(f"{which}, out of disk: {out_of_disk(which, args.small_disk, args.small_megabytes)}", flush=True)
    return 0


def out_of_disk(which: str, folder: Path, megabytes: int) -> str:
    """Save a checkpoint into ``folder``, then a larger one that does not fit: what became of the first."""
    import torch

    from dlcv.errors import DlcvError

    path = folder / "last.ckpt"
    path.unlink(missing_ok=True)
    if which == "lightning":
        from lightning.pytorch.plugins.io import TorchCheckpointIO

        writer = TorchCheckpointIO()
    else:
        from dlcv.trainer import RunCheckpointIO

        writer = RunCheckpointIO(path)
    writer.save_checkpoint({"state_dict": {"w": torch.zeros(megabytes * 2**18)}, "global_step": 1}, path)
    try:
        writer.save_checkpoint({"state_dict": {"w": torch.zeros(megabytes * 2**18 * 2)}, "global_step": 2}, path)
        return "the larger save fitted: give a smaller file system"
    except (OSError, DlcvError) as exc:
        failed = f"the larger save failed ({type(exc).__name__})"
    try:
        step = torch.load(path, weights_only=True)["global_step"]
        return f"{failed}; the earlier checkpoint loads (step {step})"
    except Exception as exc:  # noqa: BLE001 -- a truncated file fails in several ways
        return f"{failed}; the earlier checkpoint is lost ({type(exc).__name__}: {str(exc)[:60]})"


if __name__ == "__main__":
    sys.exit(main())
