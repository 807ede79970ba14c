"""Shared fixtures: tiny synthetic p1 data, a seconds-long recipe, and ways to run the CLI."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest


def share_cores() -> int | None:
    """Under pytest-xdist, each worker (and every process its tests start) computes on its share of the cores:
    torch's threads on every core in each worker oversubscribe the CPU, and OpenMP's waiting threads spin. Returns
    the share, or None where it left the threads as they were (one worker, or OMP_NUM_THREADS given)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        share = max(1, len(os.sched_getaffinity(0)) // workers)
        os.environ["OMP_NUM_THREADS"] = str(share)
        if "torch" in sys.modules:  # imported already (by a plugin): its pool is set, not read again
            sys.modules["torch"].set_num_threads(share)
        return share
    return None


SHARED_THREADS = share_cores()  # before torch is imported: it reads OMP_NUM_THREADS once

from dlcv.cli.main import main  # noqa: E402
from dlcv.data.synth import synth_p1, synth_p2, synth_ssl  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# The course's data: ../shared/data/hw1_data beside the repository, or where DLCV_COURSE_DATA says.
COURSE_DATA = Path(os.environ.get("DLCV_COURSE_DATA") or REPO.parent / "shared" / "data" / "hw1_data")
REAL_P1, REAL_P2 = COURSE_DATA / "p1_data", COURSE_DATA / "p2_data"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")  # .ci/run sets it: it installs every tool


def need(present: bool, what: str) -> None:
    """Skip the test where ``what`` (a tool it runs) is missing, saying so; in CI, which installs every tool
    (``.ci/run``), fail instead: a broken install never becomes a skip there."""
    if not present:
        (pytest.fail if IN_CI else pytest.skip)(f"needs {what}" + ("" if IN_CI else " (.ci/run installs it)"))


def need_module(name: str, what: str):
    """The module ``name``, imported; a missing one as ``need`` says."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        need(False, what)


def pytest_report_header(config):
    if COURSE_DATA.is_dir():
        return f"course data: {COURSE_DATA} (the real_data tests read it)"
    return f"course data: not at {COURSE_DATA} (set DLCV_COURSE_DATA): the real_data tests are skipped"

TINY_RECIPE = """\
name: tiny
data: {batch_size: 16, eval_batch_size: 32}
model: {name: dlcv_net, args: {widths: [8, 16, 16], stem_width: 8}}
optim: {lr: 0.05}
train: {epochs: 2, threads: 1, precision: 32-true}
"""

TINY_SEG_RECIPE = """\
name: seg_tiny
data: {batch_size: 4, eval_batch_size: 4, train_size: 64, eval_size: 64}
model: {name: unet_small, args: {width: 4, depth: 2}}
optim: {name: adamw, lr: 0.01}
train: {epochs: 2, threads: 1, precision: 32-true}
progress: {images: ["0001", "0003"]}
"""


CLUSTER_SECONDS: list[float] = []


HEAVY_MARKS = ("timing", "cluster", "slow")


def pytest_collection_modifyitems(config, items):
    """Hand the workers the files with the most long tests first (longest processing time first).

    ``--dist loadfile`` keeps a file's tests on one worker, one after another: a long file collected last (by name,
    ``test_timing.py``) would leave the other worker idle while it runs.
    """
    def file_of(item) -> str:
        return item.nodeid.split("::")[0]

    heavy = Counter(file_of(item) for item in items if any(item.get_closest_marker(m) for m in HEAVY_MARKS))
    items.sort(key=lambda item: -heavy[file_of(item)])  # stable: each file's own order kept


def pytest_runtest_logreport(report):
    if "cluster" in report.keywords:
        CLUSTER_SECONDS.append(report.duration)


def pytest_terminal_summary(terminalreporter):
    """The cluster group's own time (its setup, calls and teardown), which CI reports beside the suite's."""
    if CLUSTER_SECONDS:
        terminalreporter.write_line(f"cluster group: {sum(CLUSTER_SECONDS):.0f} s")


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts from the same random state: a model or tensor a test builds without a seed of its own is
    the same in every run, on every worker, in any order."""
    import random

    import numpy as np
    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


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


DEBIAN_PYTHON = Path("/usr/bin/python3")  # Debian's own, with python3-torch: the grading machine's stand-in


@pytest.fixture(scope="session")
def course_python() -> Path:
    """Debian's python3 with torch 1.13 and the course's packages, and without dlcv."""
    ok = DEBIAN_PYTHON.is_file() and subprocess.run(
        [str(DEBIAN_PYTHON), "-c", "import torch, torchvision, numpy, PIL"], capture_output=True).returncode == 0
    need(ok, "Debian's python3-torch, python3-torchvision, python3-numpy and python3-pil (the grading stand-in)")
    assert subprocess.run([str(DEBIAN_PYTHON), "-c", "import dlcv"], capture_output=True).returncode != 0
    return DEBIAN_PYTHON


def run_script(folder: Path, script: str, *args, cwd: Path, path: str = "/usr/bin:/bin",
               env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a hand-in script as the course's machine would: Debian's python3 first on the ``path``, no dlcv, no
    DLCV_* variables (only those of ``env``), from another folder."""
    env = {"PATH": path, "HOME": str(cwd), "LANG": "C.UTF-8", **(env or {})}
    return subprocess.run(["bash", str(folder / script), *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600, check=False)


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


def budget_fit(data: Path, recipe: Path, runs: Path, *extra: str, park: tuple[int, int] | str | None = None
               ) -> subprocess.Popen:
    """``dlcv classify fit`` as a separate process, with its own image cache, its output piped. With ``park`` it
    stops at a point of the run and announces it on stdout, so that a test kills it there (``wait_parked``), never
    after a guessed time: ``(epoch, batch)`` (both counted from 0) after that batch; ``"plan"`` (a budget run) at
    the first batch past half its planned steps, once an epoch has ended (its ``last.ckpt`` written)."""
    env = {**os.environ, "DLCV_CACHE": str(runs / "cache")}
    where = ([park] if isinstance(park, str) else list(map(str, park))) if park else []
    start = ["-c", PARKED_FIT, *where, "--"] if park else ["-m", "dlcv"]
    return subprocess.Popen([sys.executable, *start, "classify", "fit", "--config", str(recipe), "--data",
                             str(data), "--runs-dir", str(runs), *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


PARKED = "dlcv-test: parked"
PARKED_FIT = f"""
import sys, time
import lightning as L
import dlcv.trainer
from dlcv.budget import TimeBudget
from dlcv.cli.main import main

split = sys.argv.index("--")
where, argv = sys.argv[1:split], sys.argv[split + 1:]

class Park(L.Callback):
    def due(self, trainer, batch_idx):
        if where == ["plan"]:
            budget = next(c for c in trainer.callbacks if isinstance(c, TimeBudget))
            return (budget.planned and trainer.current_epoch >= 1
                    and trainer.global_step >= budget.plan.total_steps // 2)
        return (trainer.current_epoch, batch_idx) == tuple(map(int, where))

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.due(trainer, batch_idx):
            print("{PARKED}", flush=True)
            time.sleep(600)  # killed here by the test

build = dlcv.trainer.build_trainer
dlcv.trainer.build_trainer = lambda *a, extra_callbacks=(), **k: build(*a, extra_callbacks=(*extra_callbacks, Park()),
                                                                       **k)
sys.exit(main(argv))
"""


def wait_parked(process: subprocess.Popen, signum: int = signal.SIGKILL) -> str:
    """Read ``process``'s stdout (a ``budget_fit`` with ``park``) until it announces that it has parked, then end it
    there by ``signum`` (SIGTERM: as SLURM preempts a job, which dlcv ends with exit status 143); returns what it
    printed. A process that ends without parking fails the test with its stderr."""
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if line.strip() == PARKED:
                break
        else:
            pytest.fail("the run ended before its parking point:\n" + process.communicate()[1][-2000:])
    finally:
        process.send_signal(signum)
        err = process.communicate(timeout=120)[1]
    assert process.returncode == (-signum if signum == signal.SIGKILL else 128 + signum), err[-2000:]
    return "".join(lines)


@pytest.fixture(scope="session")
def one_second_fit(p1_data, tmp_path_factory) -> tuple[str, str, Path]:
    """A fit of BUDGET_RECIPE with a 1 s budget, which the setup alone uses up (its stdout, stderr and run
    folder)."""
    runs = tmp_path_factory.mktemp("one_second")
    recipe = runs / "timed.yaml"
    recipe.write_text(BUDGET_RECIPE)
    out, err = budget_fit(p1_data, recipe, runs, "--budget", "1s").communicate(timeout=300)
    return out, err, runs / "timed"


def copy_run(run: Path, runs: Path) -> Path:
    """A copy of the run folder ``run`` in ``runs``."""
    target = runs / run.name
    shutil.copytree(run, target)
    return target


@pytest.fixture
def spent_run(one_second_fit, tmp_path) -> tuple[Path, Path]:
    """A copy of a finished run whose 1 s budget its setup spent, and the recipe it was trained from."""
    recipe = tmp_path / "timed.yaml"
    recipe.write_text(BUDGET_RECIPE)
    return copy_run(one_second_fit[2], tmp_path / "runs"), recipe


@pytest.fixture(scope="session")
def ssl_data(tmp_path_factory):
    """Synthetic p2_data with mini/ (32 images), office/ (3 classes) and a resnet18 pretrain_model_SL.pt."""
    return synth_ssl(tmp_path_factory.mktemp("ssl"), num_classes=3, mini=32, office_train_per_class=8,
                     office_val_per_class=3, arch="resnet18")
