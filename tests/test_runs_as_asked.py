"""Runs that do what was asked: ``--resume`` of a finished or spent run trains nothing (or within a new
budget, or to more epochs), other ``--set`` keys on ``--resume`` are refused, a run folder being written
is locked against a second process, and satellite files whose ids collide are refused."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TINY_RECIPE, copy_run, expect_error, run_cli

from dlcv.data.masks import MASK_NAME
from dlcv.data.p2 import find_images, find_pairs
from dlcv.errors import DlcvError
from dlcv.files import unique_ids
from dlcv.io import FolderLock


def digest(root: Path) -> dict[str, tuple[str, int]]:
    """Every file below ``root`` -> (sha256 of its bytes, its modification time in ns): rewritten is changed."""
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            out[str(path.relative_to(root))] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
    return out


def _fit(config: Path, data: Path, runs: Path, *extra) -> tuple:
    return ("classify", "fit", "--config", config, "--data", data, "--runs-dir", runs, *extra)


# --- resume of a run with nothing left to train -------------------------------------------------------------
@pytest.mark.parametrize("finished", [True, False])
def test_resume_of_a_spent_budget_trains_nothing_and_leaves_the_run_as_it_was(spent_run, p1_data, capsys, finished):
    run, recipe = spent_run
    if not finished:  # as if killed after its last checkpoint: the time spent is the checkpoint's
        (run / "summary.json").unlink()
    before = digest(run)
    ended = "the run finished and " if finished else ""
    expect_error(capsys, rf"runs/timed: nothing to resume: {ended}its budget of 1s is spent \(\d+s used\); "
                         r"give --budget DURATION to train on within a new budget",
                 *_fit(recipe, p1_data, run.parent, "--resume"))
    expect_error(capsys, r"nothing to resume: .*its budget of 1s is spent",
                 *_fit(recipe, p1_data, run.parent, "--resume", "--set", "train.epochs=9"))
    assert digest(run) == before
    assert sorted(p.name for p in run.parent.iterdir()) == ["timed"]  # no lock file left beside it


# --- --set on --resume ------------------------------------------------------------------------------------
@pytest.fixture
def finished_run(trained_run, tmp_path) -> tuple[Path, Path]:
    """A copy of a finished two-epoch run without a budget, and its recipe."""
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY_RECIPE)
    return copy_run(trained_run, tmp_path / "runs"), recipe


@pytest.mark.parametrize("setting,pattern", [
    (None, r"runs/tiny: nothing to resume: the run finished its 2 epoch\(s\) \(summary\.json\); give "
           r"--set train\.epochs=N above 2 to train on, or start afresh with --overwrite$"),
    ("optim.lr=0.1", r"--resume keeps the run's saved recipe; optim\.lr cannot change on resume$"),
    ("model={name: cnn3, args: {hidden: 8}}", r"--resume keeps the run's saved recipe; model cannot change on resume$"),
    ("train.epochs=1", r"runs/tiny: train\.epochs=1 on --resume: the run has trained 2 epoch\(s\) already; give "
                       r"more to train on$"),
])
def test_resume_refuses_what_it_would_ignore_and_changes_nothing(finished_run, p1_data, capsys, setting, pattern):
    run, recipe = finished_run
    before = digest(run)
    extra = ("--set", setting) if setting else ()
    expect_error(capsys, pattern, *_fit(recipe, p1_data, run.parent, "--resume", *extra))
    assert digest(run) == before


def test_resume_with_more_epochs_trains_them(finished_run, p1_data, capsys):
    run, recipe = finished_run
    code, out, err = run_cli(capsys, *_fit(recipe, p1_data, run.parent, "--resume", "--set", "train.epochs=3",
                                           "--set", "optim.lr=0.05"))  # the saved value: no change
    assert code == 0, err
    assert "resuming from" in out
    rows = (run / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]
    assert json.loads((run / "summary.json").read_text())["epochs"] == 3
    assert yaml.safe_load((run / "recipe.yaml").read_text())["train"]["epochs"] == 3


# --- one process writes a run folder at a time ------------------------------------------------------------
HOLD_LOCK = """
import sys
from dlcv.io import FolderLock
FolderLock(sys.argv[1]).take(create=True)
print("held", flush=True)
sys.stdin.readline()  # held until the test kills it
"""

HELD_FIT = """
import sys
import lightning as L
import dlcv.trainer
from dlcv.cli.main import main


class Hold(L.Callback):
    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step == 1:
            print("held", flush=True)
            sys.stdin.readline()  # until the test says go

build = dlcv.trainer.build_trainer
dlcv.trainer.build_trainer = lambda *a, extra_callbacks=(), **k: build(*a, extra_callbacks=(*extra_callbacks, Hold()),
                                                                       **k)
sys.exit(main(sys.argv[1:]))
"""


def test_a_run_lock_names_its_holder_and_one_left_by_a_killed_process_blocks_nothing(tmp_path, monkeypatch):
    folder = tmp_path / "runs" / "x"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        message = rf"{re.escape(str(folder))}: another dlcv process \(pid {holder.pid}\) is writing this run; wait " \
                  r"for it or choose another --name"
        with pytest.raises(DlcvError, match=message):
            FolderLock(folder).take()
        with monkeypatch.context() as env:  # another process of a multi-process run writes nothing: no lock
            env.setenv("LOCAL_RANK", "1")
            assert FolderLock(folder).take().fd is None
    finally:
        holder.kill()
        holder.communicate()
    lock_file = tmp_path / "runs" / ".x.dlcv-lock"
    assert lock_file.exists()  # the killed process could not remove it ...
    with FolderLock(folder) as lock:
        assert lock.take().fd is not None  # ... and it blocks nothing
    assert not lock_file.exists()


def test_a_second_fit_to_a_run_being_written_is_refused_and_the_first_keeps_its_results(p1_data, recipe, tmp_path,
                                                                                        capsys):
    runs = tmp_path / "runs"
    first = subprocess.Popen([sys.executable, "-c", HELD_FIT, *map(str, _fit(recipe, p1_data, runs))],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "DLCV_CACHE": str(tmp_path / "cache")})
    try:
        printed = []
        for line in first.stdout:  # until the first run announces that it holds its run folder mid-epoch
            printed.append(line)
            if line.strip() == "held":
                break
        assert printed and printed[-1].strip() == "held", "".join(printed) + first.communicate()[1][-2000:]
        expect_error(capsys, rf"runs/tiny: another dlcv process \(pid {first.pid}\) is writing this run; wait for it "
                             r"or choose another --name$", *_fit(recipe, p1_data, runs, "--overwrite"))
        out, err = first.communicate("go\n", timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 0, err
    run = runs / "tiny"
    assert json.loads((run / "summary.json").read_text())["epochs"] == 2
    assert [r.split(",")[0] for r in (run / "metrics.csv").read_text().splitlines()[1:]] == ["1", "2"]
    assert sorted(p.name for p in runs.iterdir()) == ["tiny"]  # the lock file went with its process


# --- satellite files whose ids collide --------------------------------------------------------------------
@pytest.mark.parametrize("first,second", [("0001_SAT.jpg", "0001_sat.jpg"), ("0001_sat.jpg", "0001_sat.png"),
                                          ("AB_sat.jpg", "ab_sat.jpg")])
def test_satellite_images_of_one_id_are_refused_naming_both(tmp_path, first, second):
    for name in (first, second, "0002_sat.jpg"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(DlcvError, match=rf"{re.escape(first)} and {re.escape(second)} have the same id"):
        find_images(tmp_path)


def test_masks_of_one_id_are_refused_naming_both(tmp_path):
    for name in ("0001_MASK.png", "0001_mask.png", "0001_sat.jpg"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(DlcvError, match=r"0001_MASK\.png and 0001_mask\.png have the same id '0001'"):
        find_pairs(tmp_path)
    (tmp_path / "0001_MASK.png").unlink()
    assert list(unique_ids(tmp_path, MASK_NAME)) == ["0001"]


@pytest.fixture
def colliding_p2(p2_data, tmp_path) -> Path:
    """A copy of p2_data whose training and validation folders each hold a second file of one id."""
    data = tmp_path / "p2"
    shutil.copytree(p2_data, data)
    shutil.copy(data / "train" / "0001_sat.jpg", data / "train" / "0001_sat.png")
    shutil.copy(data / "validation" / "0000_sat.jpg", data / "validation" / "0000_SAT.jpg")
    shutil.copy(data / "validation" / "0000_mask.png", data / "validation" / "0000_MASK.png")
    return data


def test_segment_fit_predict_and_evaluate_refuse_ids_that_collide(colliding_p2, tmp_path, capsys):
    (tmp_path / "seg.yaml").write_text("name: seg\nmodel: {name: unet_small, args: {width: 4, depth: 2}}\n")
    expect_error(capsys, r"train: 0001_sat\.jpg and 0001_sat\.png have the same id '0001'; keep one of them$",
                 "segment", "fit", "--config", tmp_path / "seg.yaml", "--data", colliding_p2, "--runs-dir",
                 tmp_path / "runs")
    assert not (tmp_path / "runs").exists()
    (tmp_path / "model.ckpt").write_bytes(b"")  # the images are listed before the checkpoint is read
    expect_error(capsys, r"validation: 0000_SAT\.jpg and 0000_sat\.jpg have the same id '0000'", "segment",
                 "predict", "--checkpoint", tmp_path / "model.ckpt", "--images", colliding_p2 / "validation",
                 "--output", tmp_path / "pred")
    assert not (tmp_path / "pred").exists()
    expect_error(capsys, r"0000_MASK\.png and 0000_mask\.png have the same id", "segment", "evaluate",
                 "--predictions", colliding_p2 / "train", "--labels", colliding_p2 / "validation")


def test_sam_masks_and_refine_refuse_ids_that_collide(colliding_p2, tmp_path, capsys):
    (tmp_path / "sam.pth").write_bytes(b"")  # the images are listed before the checkpoint is read
    expect_error(capsys, r"0000_SAT\.jpg and 0000_sat\.jpg have the same id", "sam", "masks", "--checkpoint",
                 tmp_path / "sam.pth", "--model", "vit_tiny", "--images", colliding_p2 / "validation",
                 "--output", tmp_path / "sam")
    (tmp_path / "jsons").mkdir()
    expect_error(capsys, r"0000_MASK\.png and 0000_mask\.png have the same id", "sam", "refine", "--sam-masks",
                 tmp_path / "jsons", "--predictions", colliding_p2 / "validation", "--output", tmp_path / "refined")
    expect_error(capsys, r"0000_SAT\.jpg and 0000_sat\.jpg have the same id", "sam", "refine", "--checkpoint",
                 tmp_path / "sam.pth", "--model", "vit_tiny", "--images", colliding_p2 / "validation",
                 "--predictions", colliding_p2 / "train", "--output", tmp_path / "refined")
    assert not (tmp_path / "sam").exists() and not (tmp_path / "refined").exists()
