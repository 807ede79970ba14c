"""Whole commands held to a time budget: each asserts on the command's own clock (``summary.json``'s
``budget.used_seconds``, from the fit's start to its summary), never on the test's. They run one after another on
one worker (``--dist loadfile`` keeps a file together), so that none of them is the load of another; the budget's
logic itself is tested with a clock the test advances (``test_budget.py``)."""

from __future__ import annotations

import csv
import json
import time

import numpy as np
import pytest
import torch
import yaml
from conftest import BUDGET_RECIPE, TINY_RECIPE, budget_fit, need, run_cli, wait_parked
from test_multiprocess import metric_rows, torchrun
from test_runs_as_asked import _fit
from test_ssl import write_tiny_settings

from dlcv.budget import WARM_STEPS
from dlcv.data.synth import synth_p1
from dlcv.recipes import format_duration

pytestmark = pytest.mark.timing
TIMING_STEPS = WARM_STEPS + 3  # the steps any budget run takes to time its speed before its first plan


def assert_within(budget: dict, seconds: float, out: str, steps_before: int = 0) -> None:
    """The command ended within ``seconds`` by its own clock; or, where its setup alone had used up what was left
    (an overloaded machine), it said so and took only the steps that time its speed: the budget's documented
    overrun, never a plan that ran past its deadline."""
    if budget["used_seconds"] <= seconds:
        return
    assert "no time for more steps" in out, out
    assert budget["steps"] - steps_before <= TIMING_STEPS, out


# --- from test_budget ------------------------------------------------------------
def test_a_fit_ends_within_its_budget_with_the_schedule_finished(p1_data, tmp_path):
    """The whole command within 30 s by its own clock (from the fit's start to its summary); the interpreter's start
    and exit around that clock, measured here, are printed on failure."""
    recipe = tmp_path / "timed.yaml"
    recipe.write_text(BUDGET_RECIPE)
    launched = time.perf_counter()
    proc = budget_fit(p1_data, recipe, tmp_path, "--budget", "30s")
    out, err = proc.communicate(timeout=300)
    wall = time.perf_counter() - launched
    assert proc.returncode == 0, err
    run = tmp_path / "timed"
    summary = json.loads((run / "summary.json").read_text())
    budget = summary["budget"]
    outside = f"start and exit outside the command's clock: {wall - budget['used_seconds']:.1f} s"
    assert budget["seconds"] == 30
    assert_within(budget, 30, out + outside)
    assert budget["steps_per_epoch"] == 9  # 36 of 48 images (12 held out), batches of 4
    assert summary["epochs"] == pytest.approx(budget["steps"] / 9, abs=0.01) and summary["epochs"] > 3, out
    assert budget["final_scoring_validations"] > 0  # val_50 (16 images, flip) priced by a timed holdout batch
    assert summary["final_validation"]["accuracy"] is not None
    assert "budget 30s:" in out and "epochs;" in out
    # The schedule ran over the planned steps: the last epoch's rate is near the floor (0).
    rows = (run / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    last_lr, first_lr = (float(rows[i].split(",")[header.index("lr")]) for i in (-1, 1))
    assert last_lr < 0.25 * first_lr
    # first, middle and last follow the plan: the last snapshot is the last epoch trained.
    epochs = sorted(int(p.stem.split("_")[1]) for p in (run / "embeddings").glob("epoch_*.npz"))
    assert len(epochs) == 3 and epochs[0] == 1 and epochs[-1] == len(rows) - 1


def test_a_budget_spent_before_the_first_steps_stops_there_and_says_so(one_second_fit):
    """A budget that the setup alone uses up (here 1 s; on an overloaded machine a larger one) cannot be
    met: the run stops at its first measurement, says why, and still scores and summarises what it trained."""
    out, err, run = one_second_fit
    assert "no time for more steps, training stops here and the final scoring follows" in out, out + err
    assert "1h59m" not in out  # the time left is negative, and printed so
    summary = json.loads((run / "summary.json").read_text())
    assert summary["budget"]["steps"] == 5  # the 2 warm-up steps and 3 timed ones of the first measurement
    assert 0 < summary["budget"]["setup_seconds"] <= summary["fit_seconds"] <= summary["budget"]["used_seconds"]
    assert summary["final_validation"]["accuracy"] is not None and (run / "best.ckpt").is_file()


def test_a_resumed_budget_goes_on_with_what_is_left(p1_data, tmp_path):
    """Killed halfway through its plan, the run resumes with the time its checkpoint says was spent, and the two
    commands together end within the one budget by the run's own clock."""
    recipe = tmp_path / "timed.yaml"
    recipe.write_text(BUDGET_RECIPE)
    wait_parked(budget_fit(p1_data, recipe, tmp_path, "--budget", "30s", park="plan"))
    state = torch.load(tmp_path / "timed" / "last.ckpt", map_location="cpu", weights_only=False)
    saved = next(v for k, v in state["callbacks"].items() if k.startswith("TimeBudget"))
    resumed = budget_fit(p1_data, recipe, tmp_path, "--resume")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    budget = json.loads((tmp_path / "timed" / "summary.json").read_text())["budget"]
    assert saved["seconds"] == 30 and budget["spent_before"] == round(saved["spent"], 1) > 0
    assert budget["steps"] > state["global_step"]
    assert_within(budget, 30, out, steps_before=state["global_step"])


# --- from test_runs_as_asked ------------------------------------------------------------
def test_resume_with_a_new_budget_plans_within_it_from_the_resumes_start(spent_run, p1_data, capsys):
    run, recipe = spent_run
    seconds = 15
    code, out, err = run_cli(capsys, *_fit(recipe, p1_data, run.parent, "--resume", "--budget", f"{seconds}s"))
    assert code == 0, err
    assert f"with the run's saved recipe, within a new budget of {seconds}s from now" in out
    budget = json.loads((run / "summary.json").read_text())["budget"]
    assert budget["seconds"] == seconds and budget["spent_before"] == 0
    assert yaml.safe_load((run / "recipe.yaml").read_text())["train"]["budget"] == f"{seconds}s"
    assert_within(budget, seconds, out, steps_before=5)  # by the command's own clock, from the resume's start
    assert budget["steps"] > 5, out  # the first command's 5 steps, and more


# --- from test_ssl ------------------------------------------------------------
def test_a_table_budget_is_shared_among_its_runs(ssl_data, tmp_path, capsys):
    """BYOL and settings A and C share 30 s by the recipe's shares (0.5 : 0.2 : 0.2, the settings' 0.4 split
    in two): each run's recipe carries its budget, each fits in it, and the whole table in the 30 s (each by its
    own clock)."""
    from dlcv.recipes import parse_duration
    from dlcv.ssl_table import table

    folder = table(write_tiny_settings(tmp_path, "settings: [A, C]\n"), ssl_data, runs_dir=tmp_path / "runs",
                   overrides=("budget=30s",))
    out = capsys.readouterr().out
    budgets = {run: parse_duration(yaml.safe_load((folder / run / "recipe.yaml").read_text())["train"]["budget"])
               for run in ("byol", "A", "C")}
    assert 12 <= budgets["byol"] <= 17 and budgets["A"] >= 4 and budgets["C"] >= 4
    for run in ("A", "C"):
        summary = json.loads((folder / run / "summary.json").read_text())
        assert summary["budget"]["seconds"] == budgets[run] and summary["epochs"] > 0
        assert_within(summary["budget"], budgets[run], out)
    if "no time for more steps" not in out:  # no run's setup overran its share: nor did the table
        assert json.loads((folder / "table.json").read_text())["seconds"] <= 30


# --- from test_multiprocess ------------------------------------------------------------
def test_classify_fit_in_two_processes_follows_one_budget_plan(tmp_path, capsys):
    """torchrun, two processes, one budget: the first process plans (mid-epoch, then at every epoch's end) and both
    follow its plan (a process stopping one step before the other would wait for its gradients for ever); every
    file and line is written once; validation and the final scoring are gathered over both processes."""
    need(torch.distributed.is_gloo_available(), "torch.distributed with gloo")
    data = synth_p1(tmp_path / "data", num_classes=4, train_per_class=9, val_per_class=4)  # 36 training images
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY_RECIPE.replace("batch_size: 16", "batch_size: 2"))  # 9 steps an epoch a process
    seconds = 30
    result = torchrun("classify", "fit", "--config", recipe, "--data", data, "--runs-dir", tmp_path / "runs",
                      "--set", "train.accelerator=cpu", "--budget", f"{seconds}s", cwd=tmp_path)
    run = tmp_path / "runs" / "tiny"
    assert result.stdout.count("trainer: 2 CPU device(s) x 1 node(s), strategy DDP") == 1
    assert result.stdout.count("run folder:") == 1 and result.stdout.count("best checkpoint:") == 1
    assert result.stdout.count(f"budget {format_duration(seconds)}:") == 2  # the plan's and the closing line, once
    rows = metric_rows(run)
    assert [r["epoch"] for r in rows] == [str(e) for e in range(1, len(rows) + 1)]  # one row an epoch, one writer
    # The final scoring covered every validation image, from both processes, and agrees with a single process
    # predicting with the same checkpoint and with the best epoch's validation accuracy (over the whole set
    # too: 16 images, where a shard of 8 would differ).
    with open(run / "confusion.csv", newline="") as handle:
        matrix = np.array([[int(v) for v in row[1:]] for row in list(csv.reader(handle))[1:]])
    assert matrix.sum() == 16
    code, _, err = run_cli(capsys, "classify", "predict", "--checkpoint", run / "best.ckpt", "--images",
                           data / "val_50", "--output", tmp_path / "pred.csv")
    assert code == 0, err
    with open(tmp_path / "pred.csv", newline="") as handle:
        predicted = list(csv.DictReader(handle))
    correct = sum(int(r["label"]) == int(r["filename"].split("_")[0]) for r in predicted)
    assert np.trace(matrix) == correct
    assert max(float(r["val_acc"]) for r in rows) == pytest.approx(correct / 16, abs=1e-6)
    summary = json.loads((run / "summary.json").read_text())
    assert_within(summary["budget"], seconds, result.stdout)  # by the first process's own clock
    assert summary["budget"]["steps_per_epoch"] == 9 and summary["epochs"] > 2, result.stdout
    assert torch.load(run / "last.ckpt", weights_only=True)["global_step"] == summary["budget"]["steps"]


