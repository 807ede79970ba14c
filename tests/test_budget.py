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
from conftest import BUDGET_RECIPE

from dlcv.budget import TAIL, WARM_STEPS, TimeBudget, latest_step_seconds, plan_steps
from dlcv.plan import Plan
from dlcv.recipes import Schedule, format_duration, parse_duration
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


class Clock:
    """The budget's time function in a test: it moves only when the test advances it."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class _Scorer(torch.nn.Module):
    """A task whose final prediction of a batch (its test-time augmentation) takes ``final`` seconds of ``clock``."""

    def __init__(self, clock: Clock, final: float = 0.0):
        super().__init__()
        self.clock, self.final, self.calls, self.device = clock, final, 0, torch.device("cpu")

    def final_predictions(self, x, y):
        self.calls += 1
        self.clock.advance(self.final)
        return y


def _validate(budget: TimeBudget, trainer, task, step: float, batches: int = 2) -> None:
    """One validation of ``batches`` batches of ``step`` seconds, with Lightning's order of the callback's hooks."""
    task.trainer = trainer
    budget.on_validation_epoch_start(trainer, task)
    for i in range(batches):
        budget.on_validation_batch_start(trainer, task, (None, None), i)
        budget.clock.advance(step)
        budget.on_validation_batch_end(trainer, task, None, (None, None), i)
    budget.on_validation_epoch_end(trainer, task)


def _trainer(**fields):
    from contextlib import nullcontext
    from types import SimpleNamespace

    return SimpleNamespace(sanity_checking=False, precision_plugin=SimpleNamespace(test_step_context=nullcontext),
                           global_step=0, current_epoch=0, should_stop=False,
                           strategy=SimpleNamespace(broadcast=lambda value, src=0: value), **fields)


def test_the_final_scoring_is_priced_from_a_timed_validation_batch():
    from types import SimpleNamespace

    clock = Clock()
    trainer, task = _trainer(), _Scorer(clock, final=0.15)
    budget = TimeBudget(600, clock(), Plan(0, 0), val_guess=0.1, final_ratio=20.0, final_images=2.5, clock=clock)
    tail = TAIL[0] + TAIL[1] * 600  # no epoch has ended: nothing else is reserved
    _validate(budget, trainer, task, step=0.05, batches=1)  # one batch, cold: priced by the first guess
    assert task.calls == 0 and budget.final_per_val is None
    assert budget.val_seconds == pytest.approx(0.05) and budget.reserve() - tail == pytest.approx(0.05 * 20.0)
    _validate(budget, trainer, task, step=0.05, batches=3)  # warm: its first batch is also predicted as at the end
    assert task.calls == 1 and budget.final_per_val == pytest.approx(4.0)  # 1 + 0.15 s over 0.05 s
    assert budget.val_seconds == pytest.approx(0.15)  # three batches of 0.05 s: the probe's 0.15 s is not counted
    assert budget.reserve() - tail == pytest.approx(0.15 * 2.5 * 4.0)
    _validate(budget, trainer, task, step=0.05)  # measured once
    assert task.calls == 1
    assert budget.summary(SimpleNamespace(global_step=0))["final_scoring_validations"] == 10.0
    # A first validation of several batches is measured on its second, the first warm one.
    first = TimeBudget(600, clock(), Plan(0, 0), val_guess=0.1, final_ratio=20.0, final_images=1.0, clock=clock)
    _validate(first, trainer, task, step=0.05, batches=2)
    assert task.calls == 2 and first.final_per_val == pytest.approx(4.0)
    # No final set (a BYOL run; a fit validated on the final folder itself): nothing is predicted.
    idle = TimeBudget(600, clock(), Plan(0, 0), val_guess=0.1, final_ratio=0.0, clock=clock)
    for _ in range(2):
        _validate(idle, trainer, task, step=0.0)
    assert task.calls == 2 and idle.final_per_val is None


def _train(budget: TimeBudget, trainer, task, step_seconds, epochs: int | None = None, epoch_end: float = 0.0):
    """Run ``budget``'s hooks over training steps of ``step_seconds(global_step)`` seconds each, epoch by epoch
    (``epoch_end`` seconds of validation at each end) for ``epochs`` epochs, or until it stops the run."""
    budget.on_train_start(trainer, task)
    while not trainer.should_stop and (epochs is None or trainer.current_epoch < epochs):
        budget.on_train_epoch_start(trainer, task)
        for i in range(budget.plan.steps_per_epoch):
            budget.clock.advance(step_seconds(trainer.global_step))
            trainer.global_step += 1
            budget.on_train_batch_end(trainer, task, None, None, i)
            if trainer.should_stop:
                break
        budget.clock.advance(epoch_end)
        budget.on_train_epoch_end(trainer, task)
        trainer.current_epoch += 1


def test_slow_first_steps_do_not_fix_a_plan_that_ends_before_the_first_epoch():
    """First steps ten times slower than the rest (another process starting) would plan a run that stops
    long before its deadline; measured again as the steps double, the plan grows to what the speed allows."""
    clock = Clock()
    trainer, task, plan = _trainer(), _Scorer(clock), Plan(total_steps=10_000, steps_per_epoch=10_000)
    began = clock()
    plans = []
    budget = TimeBudget(4.0, began, plan, val_guess=0.0, final_ratio=0.0, print_line=lambda *_: None, clock=clock)
    budget.replan = lambda trainer, replan=budget.replan: (replan(trainer), plans.append(plan.total_steps))
    _train(budget, trainer, task, lambda step: 0.02 if step < 12 else 0.002)
    # The tail leaves 4 - 2.54 s to plan (nothing is scored). Measured from step 2 to step 22 (10 steps of 0.02 s,
    # 10 of 0.002): 0.011 s a step, 1.2 s left at 0.26 s -> 22 + 109 steps; then again at steps 44, 88, 176 and 352.
    assert plans == [131, 227, 348, 469, 566]
    assert trainer.global_step == plan.total_steps == 566
    assert clock() - began == pytest.approx(0.92 + 214 * 0.002)  # 1.348 s of the 1.46 s plannable


def test_the_first_steps_one_off_cost_is_not_counted_as_the_speed():
    """A command's first steps choose kernels and load them (6 s on a GPU where a step then took 0.02 s):
    after the first epoch the plan goes on at the speed of the steps, not of the first epoch's average."""
    clock = Clock()
    trainer, task, plan = _trainer(), _Scorer(clock), Plan(total_steps=1_000, steps_per_epoch=20)
    budget = TimeBudget(60.0, clock(), plan, val_guess=0.0, final_ratio=0.0, print_line=lambda *_: None, clock=clock)
    _train(budget, trainer, task, lambda step: 0.4 if step < WARM_STEPS else 0.005, epochs=2, epoch_end=0.125)
    assert budget.epoch_steps == [(20 - WARM_STEPS, pytest.approx(18 * 0.005)), (20, pytest.approx(20 * 0.005))]
    assert budget.step_seconds == pytest.approx(0.005) and budget.epoch_costs == pytest.approx([0.125, 0.125])
    # 60 s - 0.8 s of warm-up - 38 steps of 0.005 s - 2 epoch ends - the tail (3.1 s) = 55.66 s: 247 whole epochs
    # of 0.225 s, and 0.085 s, too little for a partial epoch's end; 40 done. At the first epoch's average (0.045 s
    # a step) it would have been 1,200.
    assert plan.total_steps == 40 + 247 * 20


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
@pytest.mark.parametrize("reference, warned", [(50, True), (5, False), (None, False)])
def test_the_first_plan_says_when_the_recipes_figure_needed_more_epochs(reference, warned):
    """A slow machine (a T4 on a budget measured on an H100) learns at once that the figure may not be reached."""
    from types import SimpleNamespace

    trainer = SimpleNamespace(global_step=0, current_epoch=0,
                              strategy=SimpleNamespace(broadcast=lambda value, src=0: value))
    lines = []
    budget = TimeBudget(30.0, time.perf_counter(), Plan(0, 10), val_guess=0.0, final_ratio=0.0,
                        print_line=lines.append, reference_epochs=reference)
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
                        print_line=lambda *_: None)
    budget.step_seconds = 0.1  # a validation guessed at 0.01 x 1000 steps x 0.1 s = 1 s; the final scoring, 5 of them
    assert budget.reserve() == pytest.approx(5.0 + TAIL[0] + TAIL[1] * 30.0)
