"""Issue 17, part 1: training to a time budget.

The plan (how many steps fit in the time left), the schedules over a plan that moves, the
first/middle/last choices that follow the plan, the shares of ``ssl table``, and whole commands that
end within their budget, resumed ones included.
"""

from __future__ import annotations

import json
import math
import time

import pytest
import torch
from conftest import BUDGET_RECIPE, budget_fit, skip_if_overloaded, wait_parked

from dlcv.budget import TAIL, WARM_STEPS, TimeBudget, latest_step_seconds, plan_steps
from dlcv.recipes import Schedule, format_duration, parse_duration
from dlcv.plan import Plan
from dlcv.tasks.optim import build_scheduler


# --- the plan -------------------------------------------------------------------------------------------
def simulate(seconds: float, step: float, epoch: float, done: int, per_epoch: int) -> int:
    """The plan by brute force: add steps one by one while the time they and their epochs' ends take fits."""
    best = done
    for total in range(done + 1, done + 10_000):
        ends = math.ceil(total / per_epoch) - done // per_epoch  # epoch ends from here to the last (partial) one
        if (total - done) * step + ends * epoch > seconds + 1e-9:
            break
        best = total
    return best


@pytest.mark.parametrize("seconds", [0.5, 3.0, 9.99, 10.0, 41.3, 100.0])
@pytest.mark.parametrize("done", [0, 3, 10, 17])
def test_the_plan_is_the_most_steps_that_fit(seconds, done):
    assert plan_steps(seconds, 0.5, 1.2, done, 10) == simulate(seconds, 0.5, 1.2, done, 10)


def test_the_plan_never_goes_back_and_stops_when_nothing_fits():
    assert plan_steps(-5.0, 0.1, 1.0, 42, 10) == 42
    assert plan_steps(0.5, 0.1, 1.0, 42, 10) == 42  # not even the current epoch's end fits
    assert plan_steps(1.0e6, 0.1, 1.0, 0, 10) == 10 * math.floor(1.0e6 / 2.0)  # whole epochs, closed form


def test_the_step_time_is_taken_over_enough_recent_steps():
    assert latest_step_seconds([(100, 50.0), (100, 10.0)]) == pytest.approx(0.1)  # the latest epoch alone
    assert latest_step_seconds([(40, 40.0), (40, 4.0), (40, 4.0)]) == pytest.approx(0.1)  # two small ones
    assert latest_step_seconds([(10, 5.0)]) == pytest.approx(0.5)


class _Scorer(torch.nn.Module):
    """A task whose final prediction of a batch (its test-time augmentation) takes ``final`` seconds."""

    def __init__(self, final: float):
        super().__init__()
        self.final, self.calls, self.device = final, 0, torch.device("cpu")

    def final_predictions(self, x, y):
        self.calls += 1
        time.sleep(self.final)
        return y


def _validate(budget: TimeBudget, trainer, task, step: float, batches: int = 2) -> None:
    budget.on_validation_epoch_start(trainer, task)
    for i in range(batches):
        budget.on_validation_batch_start(trainer, task, (None, None), i)
        time.sleep(step)
        budget.on_validation_batch_end(trainer, task, None, (None, None), i)
    budget.on_validation_epoch_end(trainer, task)


def test_the_final_scoring_is_priced_from_a_timed_validation_batch():
    from contextlib import nullcontext
    from types import SimpleNamespace

    trainer = SimpleNamespace(sanity_checking=False, precision_plugin=SimpleNamespace(test_step_context=nullcontext))
    task = _Scorer(final=0.15)
    budget = TimeBudget(600, time.perf_counter(), Plan(0, 0), val_guess=0.1, final_ratio=20.0, final_images=2.5)
    tail = TAIL[0] + TAIL[1] * 600  # no epoch has ended: nothing else is reserved
    _validate(budget, trainer, task, step=0.05, batches=1)  # one batch, cold: priced by the first guess
    assert task.calls == 0 and budget.final_per_val is None
    assert budget.reserve() - tail == pytest.approx(budget.val_seconds * 20.0)
    _validate(budget, trainer, task, step=0.05, batches=3)  # warm: its first batch is also predicted as at the end
    assert task.calls == 1 and 3.0 < budget.final_per_val < 5.5  # 1 + 0.15 s over 0.05 s
    assert 0.14 < budget.val_seconds < 0.25  # three batches of 0.05 s: the probe's 0.15 s is not the validation's
    assert budget.reserve() - tail == pytest.approx(budget.val_seconds * 2.5 * budget.final_per_val)
    _validate(budget, trainer, task, step=0.05)  # measured once
    assert task.calls == 1
    assert budget.summary(SimpleNamespace(global_step=0))["final_scoring_validations"] == pytest.approx(
        2.5 * budget.final_per_val, abs=0.01)
    # A first validation of several batches is measured on its second, the first warm one.
    first = TimeBudget(600, time.perf_counter(), Plan(0, 0), val_guess=0.1, final_ratio=20.0, final_images=1.0)
    _validate(first, trainer, task, step=0.05, batches=2)
    assert task.calls == 2 and 3.0 < first.final_per_val < 5.5
    # No final set (a BYOL run; a fit validated on the final folder itself): nothing is predicted.
    idle = TimeBudget(600, time.perf_counter(), Plan(0, 0), val_guess=0.1, final_ratio=0.0)
    for _ in range(2):
        _validate(idle, trainer, task, step=0.0)
    assert task.calls == 2 and idle.final_per_val is None


def test_slow_first_steps_do_not_fix_a_plan_that_ends_before_the_first_epoch():
    """First steps ten times slower than the rest (another process starting) would plan a run that stops
    long before its deadline; measured again as the steps double, the plan grows to what the speed allows."""
    from types import SimpleNamespace

    trainer = SimpleNamespace(global_step=0, current_epoch=0, should_stop=False,
                              strategy=SimpleNamespace(broadcast=lambda value, src=0: value))
    task, plan = _Scorer(final=0.0), Plan(total_steps=10_000, steps_per_epoch=10_000)
    began = time.perf_counter()
    budget = TimeBudget(4.0, began, plan, val_guess=0.0, final_ratio=0.0, say=lambda *_: None)
    budget.on_train_start(trainer, task)
    budget.on_train_epoch_start(trainer, task)
    first_plan = None
    while not trainer.should_stop:
        time.sleep(0.02 if trainer.global_step < 12 else 0.002)
        trainer.global_step += 1
        budget.on_train_batch_end(trainer, task, None, None, trainer.global_step - 1)
        first_plan = first_plan or (plan.total_steps if budget.planned else None)
    plannable = 4.0 - TAIL[0] - TAIL[1] * 4.0  # no epoch ends, nothing is scored: the rest is the tail
    assert first_plan < 150 and plan.total_steps > 2 * first_plan  # 0.011 s a step over the first 20 steps
    assert trainer.global_step == plan.total_steps
    assert 0.6 * plannable < time.perf_counter() - began <= plannable + 0.1


def test_the_first_steps_one_off_cost_is_not_counted_as_the_speed():
    """A command's first steps choose kernels and load them (6 s on a GPU where a step then took 0.02 s):
    after the first epoch the plan goes on at the speed of the steps, not of the first epoch's average."""
    from types import SimpleNamespace

    trainer = SimpleNamespace(global_step=0, current_epoch=0, should_stop=False,
                              strategy=SimpleNamespace(broadcast=lambda value, src=0: value))
    task, plan = _Scorer(final=0.0), Plan(total_steps=1_000, steps_per_epoch=20)
    budget = TimeBudget(60.0, time.perf_counter(), plan, val_guess=0.0, final_ratio=0.0, say=lambda *_: None)
    budget.on_train_start(trainer, task)
    for epoch in range(2):
        trainer.current_epoch = epoch
        budget.on_train_epoch_start(trainer, task)
        for i in range(20):
            time.sleep(0.4 if trainer.global_step < WARM_STEPS else 0.005)
            trainer.global_step += 1
            budget.on_train_batch_end(trainer, task, None, None, i)
        budget.on_train_epoch_end(trainer, task)
        assert budget.step_seconds < 0.012 and budget.epoch_cost(20) < 0.05, (budget.step_seconds, budget.epoch_costs)
    assert budget.epoch_steps[0][0] == 20 - WARM_STEPS and budget.epoch_steps[1][0] == 20
    assert plan.total_steps > 2_000  # about (60 - 0.8 spent - the tail) / 0.006 s; 0.045 s a step would give 1,200


def test_durations_read_and_write():
    assert parse_duration("20m") == 1200 and parse_duration("1h30m") == 5400 and parse_duration("1.5h") == 5400
    assert parse_duration("90s") == 90 and parse_duration("2m30s") == 150
    for bad in ("20", "m", "20 minutes", "", "0s", 20, None):
        assert parse_duration(bad) is None
    assert format_duration(5400) == "1h30m" and format_duration(150.4) == "2m30s" and format_duration(45) == "45s"
    assert format_duration(-7.2) == "-7s" and format_duration(-3725) == "-1h2m5s"  # a budget overrun, not 1h59m53s


def test_middle_and_last_follow_the_plan_as_it_moves():
    """The chosen-epoch callbacks read the plan they were given: a re-plan from 4 to 6 epochs moves the middle
    from epoch 2 to 3 and the last from 4 to 6."""
    from types import SimpleNamespace

    from dlcv.tasks.snapshots import ChosenEpochs

    plan = Plan()
    plan.begin(10, 4)
    chosen = ChosenEpochs([1, "middle", "last"], plan)
    trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True, should_stop=False, current_epoch=0)
    due = []
    for epoch in range(6):
        if epoch == 1:
            plan.total_steps = 60
        trainer.current_epoch = epoch
        due.append(chosen.due(trainer))
    assert due == [True, False, True, False, False, True]


# --- schedules over the plan ---------------------------------------------------------------------------
def _lrs(schedule: dict, plan: Plan, steps: int, moves: dict[int, int] | None = None) -> list[float]:
    cfg = Schedule(**schedule)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(optimizer, cfg, plan)["scheduler"]
    out = []
    for step in range(steps):
        if moves and step in moves:
            plan.total_steps = moves[step]
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


@pytest.mark.parametrize("anneal", ["linear", "cos"])
@pytest.mark.parametrize("total", [2, 3, 7, 100])
def test_onecycle_is_torchs_over_a_fixed_plan(anneal, total):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    pct = 0.25 if 0.25 * total > 1 else 1.5 / total
    reference = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1.0, total_steps=total, pct_start=pct,
                                                    anneal_strategy=anneal, div_factor=10, final_div_factor=100,
                                                    cycle_momentum=False)
    expected = []
    for step in range(total):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if step < total - 1:
            reference.step()
    got = _lrs({"name": "onecycle", "pct_start": 0.25, "anneal": anneal}, Plan(total, 1), total)
    assert got == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("name", ["onecycle", "cosine", "linear", "poly"])
def test_every_schedule_finishes_where_a_moved_plan_ends(name):
    """The plan moves from 100 steps to 60 at step 30: the schedule reaches its floor at step 59, not 99."""
    lrs = _lrs({"name": name, "min_lr_fraction": 0.0}, Plan(100, 10), 60, moves={30: 60})
    assert lrs[-1] < 0.03 and max(lrs[:30]) > 0.5  # poly: (1 / 60) ** 0.9 = 0.025


def test_multistep_milestones_as_shares_move_with_the_plan():
    lrs = _lrs({"name": "multistep", "milestones": [0.5, 0.75], "gamma": 0.1}, Plan(100, 10), 80,
               moves={10: 80})
    assert lrs[39] == pytest.approx(1.0) and lrs[40] == pytest.approx(0.1) and lrs[60] == pytest.approx(0.01)
    epochs = _lrs({"name": "multistep", "milestones": [3], "gamma": 0.1}, Plan(100, 10), 40)
    assert epochs[29] == pytest.approx(1.0) and epochs[30] == pytest.approx(0.1)  # 1 and more: epochs


def test_a_budget_refuses_milestones_in_epochs(recipe, p1_data, capsys):
    from dlcv.cli.main import main

    code = main(["classify", "fit", "--config", str(recipe), "--data", str(p1_data), "--budget", "1m",
                 "--set", "schedule.name=multistep", "--set", "schedule.milestones=[5, 8]"])
    assert code == 2 and "shares of the run" in capsys.readouterr().err
    code = main(["classify", "fit", "--config", str(recipe), "--data", str(p1_data), "--budget", "20 minutes"])
    assert code == 2 and "--budget '20 minutes': give a duration such as 20m" in capsys.readouterr().err


# --- ssl table's shares ---------------------------------------------------------------------------------------
def test_the_table_shares_what_is_left_among_the_runs_still_to_train():
    from dlcv.recipes import TableRecipe
    from dlcv.ssl_table import TableClock

    recipe = TableRecipe(budget="100s", settings=["A", "C", "E"])
    clock = TableClock(recipe, {"none", "self_supervised"}, time.perf_counter())
    assert set(clock.shares) == {"byol", "A", "C", "E"}  # no supervised backbone needed
    byol = parse_duration(clock.budget("byol")[0].split("=")[1])
    assert byol == pytest.approx((100 - clock.TAIL) * 0.5 / (0.5 + 0.4), abs=1)
    clock.skip("A")  # reused: the two settings left share what is left evenly
    c = parse_duration(clock.budget("C")[0].split("=")[1])
    assert c == pytest.approx((100 - clock.TAIL) / 2, abs=1)
    assert TableClock(recipe.model_copy(update={"budget": None}), {"none"}, 0.0).budget("A") == ()


# --- whole commands -------------------------------------------------------------------------------------------
def test_a_fit_ends_within_its_budget_with_the_schedule_finished(p1_data, tmp_path, setup_topped):
    recipe = tmp_path / "timed.yaml"
    recipe.write_text(BUDGET_RECIPE)
    seconds = setup_topped(25)  # 25 s where the setup takes 5 s or less, more where it takes longer
    began = time.perf_counter()
    proc = budget_fit(p1_data, recipe, tmp_path, "--budget", f"{seconds}s")
    out, err = proc.communicate(timeout=300)
    wall = time.perf_counter() - began
    assert proc.returncode == 0, err
    run = tmp_path / "timed"
    summary = json.loads((run / "summary.json").read_text())
    budget = summary["budget"]
    skip_if_overloaded(budget, seconds)
    assert wall <= seconds + 1.5, out  # the interpreter's start is outside the plan's clock: a little slack
    assert budget["seconds"] == seconds and budget["steps_per_epoch"] == 9  # 36 of 48 images (12 held out), batches of 4
    assert summary["epochs"] == pytest.approx(budget["steps"] / 9, abs=0.01) and summary["epochs"] > 3, out
    assert budget["final_scoring_validations"] > 0  # val_50 (16 images, flip) priced by a timed holdout batch
    assert summary["final_validation"]["accuracy"] is not None
    assert f"budget {format_duration(seconds)}:" in out and "epochs;" in out
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
    assert 0 < summary["budget"]["setup_seconds"] <= summary["fit_seconds"]  # both rounded to 0.1 s
    assert summary["final_validation"]["accuracy"] is not None and (run / "best.ckpt").is_file()


def test_a_resumed_budget_goes_on_with_what_is_left(p1_data, tmp_path, setup_topped):
    recipe = tmp_path / "timed.yaml"
    recipe.write_text(BUDGET_RECIPE)
    seconds = setup_topped(30, setups=2)  # the resumed command pays its setup again
    victim = budget_fit(p1_data, recipe, tmp_path, "--budget", f"{seconds}s", park=(tmp_path / "parked", 30, 0))
    wait_parked(victim, tmp_path / "parked")
    began = time.perf_counter()
    resumed = budget_fit(p1_data, recipe, tmp_path, "--resume")
    out, err = resumed.communicate(timeout=300)
    wall = time.perf_counter() - began
    assert resumed.returncode == 0, err
    budget = json.loads((tmp_path / "timed" / "summary.json").read_text())["budget"]
    skip_if_overloaded(budget, seconds - budget["spent_before"])
    assert budget["spent_before"] > 3
    assert wall <= seconds - budget["spent_before"] + 1.5, out


@pytest.mark.parametrize("reference, warned", [(50, True), (5, False), (None, False)])
def test_the_first_plan_says_when_the_recipes_figure_needed_more_epochs(reference, warned):
    """A slow machine (a T4 on a budget measured on an H100) learns at once that the figure may not be reached."""
    from types import SimpleNamespace

    trainer = SimpleNamespace(global_step=0, current_epoch=0,
                              strategy=SimpleNamespace(broadcast=lambda value, src=0: value))
    lines = []
    budget = TimeBudget(30.0, time.perf_counter(), Plan(0, 10), val_guess=0.0, final_ratio=0.0,
                        say=lines.append, reference_epochs=reference)
    budget.step_seconds = 0.1  # 30 s at 0.1 s a step, 10 steps an epoch: under 30 epochs
    budget.replan(trainer)
    assert lines[0].startswith("budget 30s: 0.100 s a step")
    assert len(lines) == (2 if warned else 1)
    if warned:
        assert lines[1].startswith(f"note: the recipe's figure (docs/results.md) was reached in {reference} epochs "
                                   "or more; at this speed the budget affords ")
        assert lines[1].endswith("so it may not be reached: give a larger --budget")


def test_epochs_asked_of_a_budget_recipe_are_refused_and_budget_none_trains_by_epochs(capsys, p1_data, tmp_path):
    from conftest import expect_error, run_cli

    recipe = tmp_path / "timed.yaml"
    recipe.write_text(BUDGET_RECIPE.replace("train: {", "train: {budget: 20m, "))
    runs = tmp_path / "runs"
    expect_error(capsys, r"--set train\.epochs=1: the recipe trains to a time budget \(train\.budget 20m, from .*"
                 r"timed\.yaml\) and plans its epochs from the measured speed; add --budget none to train by epochs",
                 "classify", "fit", "--config", recipe, "--data", p1_data, "--runs-dir", runs,
                 "--set", "train.epochs=1")
    assert not runs.exists()
    code, out, err = run_cli(capsys, "classify", "fit", "--config", recipe, "--data", p1_data, "--runs-dir", runs,
                             "--set", "train.epochs=1", "--budget", "none")
    assert code == 0, err
    summary = json.loads((runs / "timed" / "summary.json").read_text())
    assert summary["epochs"] == 1 and "budget" not in summary


def test_a_budget_shorter_than_an_epoch_reserves_the_final_scoring_from_its_first_plan():
    """No validation has been timed when a short budget makes its only plan: the final scoring is priced from
    the first guess at a validation (an epoch's end), not left out."""
    budget = TimeBudget(30.0, time.perf_counter(), Plan(0, 1000), val_guess=0.01, final_ratio=5.0,
                        say=lambda *_: None)
    budget.step_seconds = 0.1  # a validation guessed at 0.01 x 1000 steps x 0.1 s = 1 s; the final scoring, 5 of them
    assert budget.reserve() == pytest.approx(5.0 + TAIL[0] + TAIL[1] * 30.0)
