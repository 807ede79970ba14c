"""Shared fixtures: tiny synthetic p1 data, a seconds-long recipe, and ways to run the CLI."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dlcv.cli.main import main
from dlcv.data.synth import synth_p1, synth_p2
from dlcv.runtime import usable_cpus

REPO = Path(__file__).resolve().parents[1]
REAL_P1 = REPO.parent / "shared" / "data" / "hw1_data" / "p1_data"

TINY_RECIPE = """\
name: tiny
data: {batch_size: 16, eval_batch_size: 32}
model: {name: dlcv_net, args: {widths: [8, 16, 16], stem_width: 8}}
optim: {lr: 0.05}
train: {epochs: 2, threads: 1}
"""

TINY_SEG_RECIPE = """\
name: seg_tiny
data: {batch_size: 4, eval_batch_size: 4, train_size: 64, eval_size: 64}
model: {name: unet_small, args: {width: 4, depth: 2}}
optim: {name: adamw, lr: 0.01}
train: {epochs: 2, threads: 1}
progress: {images: ["0001", "0003"]}
"""


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own image cache, so none sees another's files."""
    monkeypatch.setenv("DLCV_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def p1_data(tmp_path_factory) -> Path:
    """Synthetic p1_data: 4 classes, 12 training and 4 validation images each (read-only use)."""
    return synth_p1(tmp_path_factory.mktemp("synth"), num_classes=4, train_per_class=12, val_per_class=4)


@pytest.fixture
def recipe(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_RECIPE)
    return path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, p1_data) -> Path:
    """A finished tiny run folder (trained once per session)."""
    base = tmp_path_factory.mktemp("trained")
    recipe = base / "tiny.yaml"
    recipe.write_text(TINY_RECIPE)
    os.environ.setdefault("DLCV_CACHE", str(base / "cache"))
    assert main(["classify", "fit", "--config", str(recipe), "--data", str(p1_data),
                 "--runs-dir", str(base / "runs")]) == 0
    return base / "runs" / "tiny"


@pytest.fixture(scope="session")
def p2_data(tmp_path_factory) -> Path:
    """Synthetic p2_data: 6 training and 4 validation pairs of 96x96 (read-only use)."""
    return synth_p2(tmp_path_factory.mktemp("synth_p2"), train=6, validation=4, size=96)


@pytest.fixture(scope="session")
def seg_run(tmp_path_factory, p2_data) -> Path:
    """A finished tiny segmentation run folder (trained once per session)."""
    base = tmp_path_factory.mktemp("seg_trained")
    recipe = base / "tiny.yaml"
    recipe.write_text(TINY_SEG_RECIPE)
    assert main(["segment", "fit", "--config", str(recipe), "--data", str(p2_data), "--runs-dir", str(base)]) == 0
    return base / "seg_tiny"


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``dlcv ARGS`` in this process: (exit status, stdout, stderr)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def expect_error(capsys, pattern: str, *args) -> str:
    """Run ``dlcv ARGS`` expecting the promise for bad input: exit 2, no traceback, one line
    ``dlcv: error: ...`` matching ``pattern``; returns that line."""
    import re

    code, out, err = run_cli(capsys, *args)
    assert code == 2, (out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dlcv: error: "), err
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def run_dlcv(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``dlcv ARGS`` as a separate process, the way a user does."""
    return subprocess.run([sys.executable, "-m", "dlcv", *map(str, args)], check=False, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=600)


BUDGET_RECIPE = TINY_RECIPE.replace("name: tiny", "name: timed") \
    .replace("batch_size: 16", "batch_size: 4, holdout: 0.25") + \
    "schedule: {name: cosine, min_lr_fraction: 0.0}\nembed: {epochs: \"first,middle,last\"}\n"
SETUP_ALLOWED = 5.0  # the wall-clock budget tests leave this much of their budgets for a command's setup


def budget_fit(data: Path, recipe: Path, runs: Path, *extra: str,
               park: tuple[Path, int, int] | None = None) -> subprocess.Popen:
    """``dlcv classify fit`` as a separate process, with its own image cache, its output piped. With ``park``
    ``(file, epoch, batch)`` it writes ``file`` after that batch (both counted from 0) and waits there, so
    that a test kills it at a point it chose, never after a guessed time (see ``wait_parked``)."""
    env = {**os.environ, "DLCV_CACHE": str(runs / "cache")}
    start = ["-c", PARKED_FIT, *map(str, park)] if park else ["-m", "dlcv"]
    return subprocess.Popen([sys.executable, *start, "classify", "fit", "--config", str(recipe), "--data",
                             str(data), "--runs-dir", str(runs), *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


PARKED_FIT = """
import pathlib, sys, time
import lightning as L
import dlcv.trainer
from dlcv.cli.main import main

marker, at = pathlib.Path(sys.argv[1]), (int(sys.argv[2]), int(sys.argv[3]))

class Park(L.Callback):
    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if (trainer.current_epoch, batch_idx) == at:
            marker.write_text("parked")
            time.sleep(600)

build = dlcv.trainer.build_trainer
dlcv.trainer.build_trainer = lambda *a, extra_callbacks=(), **k: build(*a, extra_callbacks=(*extra_callbacks, Park()),
                                                                       **k)
sys.exit(main(sys.argv[4:]))
"""


def wait_parked(process: subprocess.Popen, marker: Path, timeout: float = 300) -> None:
    """Wait until ``process`` (a ``budget_fit`` with ``park``) has parked, then kill it there."""
    deadline = time.time() + timeout
    while time.time() < deadline and not marker.exists() and process.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), process.communicate()[1][-2000:]
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL


@pytest.fixture(scope="session")
def one_second_fit(p1_data, tmp_path_factory) -> tuple[str, str, Path]:
    """A fit of BUDGET_RECIPE with a 1 s budget, which the setup alone uses up (its stdout, stderr and run
    folder). It measures this machine's setup before a first step: importing lightning, timm and torchmetrics
    took 15 s on a lent GPU machine's image (2026-11-26) against 4 s here."""
    runs = tmp_path_factory.mktemp("one_second")
    recipe = runs / "timed.yaml"
    recipe.write_text(BUDGET_RECIPE)
    out, err = budget_fit(p1_data, recipe, runs, "--budget", "1s").communicate(timeout=300)
    return out, err, runs / "timed"


@pytest.fixture
def setup_topped(one_second_fit):
    """``setup_topped(seconds, setups=1)``: a budget for a command meant to train for ``seconds`` less
    SETUP_ALLOWED, on this machine: where the measured setup is longer, the budget grows by the difference
    for each setup the command pays (a resumed run pays it again)."""
    summary = json.loads((one_second_fit[2] / "summary.json").read_text())
    extra = max(0.0, summary["budget"]["setup_seconds"] - SETUP_ALLOWED)
    return lambda seconds, setups=1: int(math.ceil(seconds + setups * extra))


def skip_if_overloaded(budget: dict, seconds: float) -> None:
    """These tests hold a whole command to a budget of seconds, which a machine running several times more
    work than it has CPUs (a parallel suite, other jobs) cannot meet even in its setup: there they cannot
    say anything about the plan, and are skipped with what was measured. An idle machine never skips."""
    load, cpus = os.getloadavg()[0], usable_cpus()
    if budget["setup_seconds"] > seconds / 2 and load > 2 * cpus:
        pytest.skip(f"this machine is overloaded (load {load:.1f} on {cpus} CPUs): the setup alone took "
                    f"{budget['setup_seconds']} s of the {seconds:.1f} s the command had")
