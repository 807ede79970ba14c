"""Nothing lost, round three: single output files, a broken checkpoint on resume, locks and links, two commands
writing one new output, and the report's figures and the files a user added to it.

Each case hashes what exists before and after (and checks each path's kind), and expects exit 2 with one line
naming the file, or the contract's own change."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_RECIPE, copy_run, expect_error, run_cli

from dlcv.errors import DlcvError
from dlcv.files import read_manifest, written_by_dlcv
from dlcv.io import FolderLock, figures_folder


def snapshot(root: Path) -> dict[str, tuple[str, str]]:
    """Every path below ``root`` (links not followed) -> (its kind, the sha256 of a file's bytes or a link's
    target)."""
    out = {}
    for path in sorted(root.rglob("*")):
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            out[str(path.relative_to(root))] = ("link", os.readlink(path))
        elif stat.S_ISDIR(mode):
            out[str(path.relative_to(root))] = ("folder", "")
        else:
            out[str(path.relative_to(root))] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
    return out


@pytest.fixture
def world(tmp_path, trained_run, seg_run) -> Path:
    """A user's folder: two runs (copies), and a file of theirs."""
    copy_run(trained_run, tmp_path / "runs")
    copy_run(seg_run, tmp_path / "runs")
    (tmp_path / "thesis.tex").write_text("\\chapter{mine}\n")
    return tmp_path


def _predict(world: Path, p1_data: Path, output, *extra):
    return ("classify", "predict", "--checkpoint", world / "runs" / "tiny" / "best.ckpt", "--images",
            p1_data / "val_50", "--output", output, *extra)


# --- single output files ------------------------------------------------------------------------------------
@pytest.mark.parametrize("target, pattern", [
    ("runs/seg_tiny/best.ckpt", r"best\.ckpt: lies inside the run .*seg_tiny, which dlcv writes whole"),
    ("runs/tiny/metrics.csv", r"metrics\.csv: lies inside the run .*tiny, which dlcv writes whole"),
    ("runs/tiny/new.csv", r"new\.csv: lies inside the run .*tiny, which dlcv writes whole"),
    ("thesis.tex", r"thesis\.tex: exists and dlcv did not write it; pass --overwrite to replace it"),
])
def test_a_prediction_file_never_replaces_a_runs_file_or_a_users(capsys, world, p1_data, target, pattern):
    before = snapshot(world)
    expect_error(capsys, pattern, *_predict(world, p1_data, world / target))
    assert snapshot(world) == before


def test_a_file_inside_a_run_is_refused_even_with_overwrite_and_through_a_link(capsys, world, p1_data):
    (world / "alias").symlink_to(world / "runs" / "tiny")
    before = snapshot(world)
    expect_error(capsys, r"lies inside the run .*tiny, which dlcv writes whole",
                 *_predict(world, p1_data, world / "alias" / "metrics.csv", "--overwrite"))
    assert snapshot(world) == before


def test_a_file_dlcv_wrote_is_replaced_and_a_users_only_with_overwrite(capsys, world, p1_data):
    out = world / "pred.csv"
    for _ in range(2):  # the second replaces the first: dlcv wrote it
        code, _, err = run_cli(capsys, *_predict(world, p1_data, out))
        assert code == 0, err
    assert written_by_dlcv(out)
    with open(out, "a") as handle:  # edited in place (an answers template filled in): listed, but it is yours
        handle.write("my notes\n")
    expect_error(capsys, r"pred\.csv: exists and dlcv did not write it; pass --overwrite",
                 *_predict(world, p1_data, out))
    assert out.read_text().endswith("my notes\n")
    code, _, err = run_cli(capsys, *_predict(world, p1_data, world / "thesis.tex", "--overwrite"))
    assert code == 0, err
    assert (world / "thesis.tex").read_text().startswith("filename,label\n")


def test_every_option_that_names_an_output_file_follows_the_one_rule(capsys, world, p1_data, p2_data, seg_run):
    """--confusion, --breakdown, segment overlay --output, segment progress --output and ssl export --output."""
    mine = world / "mine.png"
    mine.write_bytes(b"my figure")
    code, _, err = run_cli(capsys, *_predict(world, p1_data, world / "pred.csv"))
    assert code == 0, err
    masks = world / "masks"
    code, _, err = run_cli(capsys, "segment", "predict", "--checkpoint", world / "runs" / "seg_tiny" / "best.ckpt",
                           "--images", p2_data / "validation", "--output", masks)
    assert code == 0, err
    before = snapshot(world)
    cases = [
        ("classify", "evaluate", "--predictions", world / "pred.csv", "--labels", p1_data / "val_gt.csv",
         "--confusion", mine),
        ("segment", "evaluate", "--predictions", masks, "--labels", p2_data / "validation", "--breakdown",
         world / "runs" / "tiny" / "recipe.yaml"),
        ("segment", "overlay", "--image", p2_data / "validation" / "0000_sat.jpg", "--mask",
         p2_data / "validation" / "0000_mask.png", "--output", mine),
        ("segment", "progress", world / "runs" / "seg_tiny", "--output", world / "mine"),
        ("ssl", "export", "--checkpoint", world / "runs" / "tiny" / "best.ckpt", "--output", world / "thesis.tex"),
    ]
    for args in cases:
        expect_error(capsys, r"(exists and dlcv did not write it; pass --overwrite|lies inside the run)", *args)
    assert snapshot(world) == before
    fresh = world / "fresh"
    fresh.mkdir()
    new_names = [fresh / "confusion.png", fresh / "breakdown.csv", fresh / "overlay.png", fresh / "progress"]
    for args, new in zip(cases, new_names):  # each output dlcv wrote is replaced by the command run again
        args = (*args[:-1], new)  # (ssl export's rerun: test_commands)
        for _ in range(2):
            code, _, err = run_cli(capsys, *args)
            assert code == 0, err
    assert sorted(read_manifest(fresh)["files"]) == ["breakdown.csv", "confusion.png", "overlay.png", "progress.pdf",
                                                       "progress.png"]


def test_a_file_is_dlcvs_by_its_folders_manifest_alone_on_any_file_system_and_through_a_copy(
        capsys, world, p1_data, monkeypatch):
    for name in ("setxattr", "getxattr"):  # a file system without extended attributes (a USB stick, a network drive)
        monkeypatch.setattr(os, name, _no_xattr, raising=False)
    mine = world / "mine"
    mine.mkdir()
    out = mine / "pred.csv"
    for _ in range(2):
        code, _, err = run_cli(capsys, *_predict(world, p1_data, out))
        assert code == 0, err
    manifest = read_manifest(mine)
    assert manifest["kind"] == "folder of yours"
    assert manifest["files"] == {"pred.csv": "sha256:" + hashlib.sha256(out.read_bytes()).hexdigest()}
    copied = world / "copied"
    shutil.copytree(mine, copied, copy_function=shutil.copy)  # new times, the same bytes: still dlcv's
    code, _, err = run_cli(capsys, *_predict(world, p1_data, copied / "pred.csv"))
    assert code == 0, err
    before = snapshot(world)  # a folder of the user's, where dlcv wrote one file: not a folder dlcv may replace
    expect_error(capsys, r"mine: holds files of yours, not a plain torch model \(dlcv only wrote some of them",
                 "export", world / "runs" / "tiny" / "best.ckpt", "--output", mine, "--overwrite")
    with pytest.raises(DlcvError, match=r"mine: holds files of yours \(dlcv only wrote some of them"):
        figures_folder(mine)
    assert snapshot(world) == before


@pytest.mark.parametrize("manifest", ["folder", "link"])
def test_a_manifest_that_is_not_a_file_is_refused_before_any_work(capsys, world, p1_data, manifest):
    mine = world / "mine"
    mine.mkdir()
    if manifest == "folder":
        (mine / ".dlcv-output").mkdir()
    else:
        (mine / ".dlcv-output").symlink_to(world / "runs" / "tiny" / ".dlcv-output")
    before = snapshot(world)
    expect_error(capsys, rf"mine/\.dlcv-output: is a {manifest}", *_predict(world, p1_data, mine / "pred.csv"))
    assert snapshot(world) == before


def _no_xattr(*args, **kwargs):
    raise OSError(95, "Operation not supported")


def test_two_commands_writing_files_into_one_folder_at_once_both_get_listed(tmp_path):
    code = """
import sys
from pathlib import Path
from dlcv.files import record_written
folder, tag = Path(sys.argv[1]), sys.argv[2]
sys.stdin.readline()  # both start together
for i in range(200):
    path = folder / f"{tag}{i}.csv"
    path.write_text(f"{tag} {i}")
    record_written(path, "test")
"""
    writers = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), tag], stdin=subprocess.PIPE, text=True)
               for tag in "ab"]
    for writer in writers:
        writer.stdin.write("go\n")
        writer.stdin.close()
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    listed = read_manifest(tmp_path)["files"]
    assert sorted(listed) == sorted(f"{t}{i}.csv" for t in "ab" for i in range(200))
    assert all(written_by_dlcv(tmp_path / name) for name in listed)


@pytest.mark.parametrize("ensemble", ["0", "-3"])
def test_an_ensemble_below_one_is_refused(capsys, world, p1_data, ensemble):
    expect_error(capsys, rf"--ensemble {ensemble}: give the number of best checkpoints to average, 1 or more",
                 *_predict(world, p1_data, world / "p.csv", "--ensemble", ensemble))
    assert not (world / "p.csv").exists()


# --- resume reads everything before it changes anything ------------------------------------------------------
@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_resume_from_a_broken_checkpoint_changes_nothing_and_names_it(capsys, world, p1_data, damage):
    run = world / "runs" / "tiny"
    last = run / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    recipe = world / "tiny.yaml"
    recipe.write_text(TINY_RECIPE)
    before = snapshot(world)
    expect_error(capsys, r"runs/tiny/last\.ckpt: (is empty, |not a PyTorch file .*, so |a damaged PyTorch file, )not a",
                 "classify", "fit", "--config", recipe, "--data", p1_data, "--runs-dir", world / "runs", "--resume",
                 "--set", "train.epochs=4")
    assert snapshot(world) == before


# --- locks and links ------------------------------------------------------------------------------------------
HOLD = """
import sys
from dlcv.io import FolderLock
FolderLock(sys.argv[1], what=sys.argv[2], option="--output").take(create=True)
print("held", flush=True)
sys.stdin.readline()
"""


def _hold(folder: Path, what: str) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), what], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_lock_file_that_is_a_link_is_never_followed(capsys, world, p1_data):
    victim = world / "thesis.tex"
    (world / "runs" / ".tiny.dlcv-lock").symlink_to(victim)
    recipe = world / "tiny.yaml"
    recipe.write_text(TINY_RECIPE)
    before = snapshot(world)
    expect_error(capsys, r"\.tiny\.dlcv-lock: is a link, not dlcv's lock file; remove it", "classify", "fit",
                 "--config", recipe, "--data", p1_data, "--runs-dir", world / "runs", "--resume",
                 "--set", "train.epochs=4")
    assert snapshot(world) == before and victim.read_text() == "\\chapter{mine}\n"


def test_a_run_reached_through_a_linked_name_is_locked_against_its_real_name(world):
    (world / "runs" / "alias").symlink_to(world / "runs" / "tiny")
    holder = _hold(world / "runs" / "alias", "run")
    try:
        with pytest.raises(Exception, match=rf"runs/tiny: another dlcv process \(pid {holder.pid}\) is writing"):
            FolderLock(world / "runs" / "tiny").take()
    finally:
        holder.kill()
        holder.communicate()


@pytest.mark.parametrize("command", ["handin", "segment predict"])
def test_a_second_command_into_a_new_output_being_written_is_refused(capsys, world, p2_data, command):
    output = world / "new_output"
    holder = _hold(output, "hand-in folder")  # the first command, mid-way: it holds the output's lock
    try:
        before = snapshot(world)
        args = (("handin", "--year", "2022", "--output", output, "--checkpoint",
                 f"p1={world / 'runs' / 'tiny' / 'best.ckpt'}", "--checkpoint",
                 f"seg={world / 'runs' / 'seg_tiny' / 'best.ckpt'}") if command == "handin" else
                ("segment", "predict", "--checkpoint", world / "runs" / "seg_tiny" / "best.ckpt", "--images",
                 p2_data / "validation", "--output", output))
        expect_error(capsys, rf"new_output: another dlcv process \(pid {holder.pid}\) is writing this .*; wait for "
                             r"it or choose another --output$", *args)
        assert snapshot(world) == before
    finally:
        holder.kill()
        holder.communicate()


# --- the report ------------------------------------------------------------------------------------------------
def test_runs_of_one_name_in_two_subfolders_keep_their_own_figures(capsys, tmp_path, trained_run):
    runs = tmp_path / "runs"
    copy_run(trained_run, runs / "a")
    copy_run(trained_run, runs / "b")
    metrics = runs / "b" / "tiny" / "metrics.csv"  # b's run learned differently: its curves differ from a's
    rows = metrics.read_text().splitlines()
    header = rows[0].split(",")
    loss = header.index("train_loss")
    changed = [rows[0]] + [",".join(str(float(v) * 2) if i == loss else v for i, v in enumerate(r.split(",")))
                           for r in rows[1:]]
    metrics.write_text("\n".join(changed) + "\n")
    code, _, err = run_cli(capsys, "report", "--runs", runs, "--output", tmp_path / "report", "--no-pdf")
    assert code == 0, err
    figures = sorted(p.name for p in (tmp_path / "report" / "figures").iterdir())
    curves = [name for name in figures if name.endswith("curves.png")]
    assert curves == ["b_tiny_curves.png", "tiny_curves.png"], figures
    first, second = ((tmp_path / "report" / "figures" / name).read_bytes() for name in curves)
    assert first != second
    page = (tmp_path / "report" / "index.html").read_text()
    assert page.count("<img") >= 2


def test_a_report_written_over_an_earlier_one_keeps_the_files_a_user_added(capsys, tmp_path, trained_run):
    runs = tmp_path / "runs"
    copy_run(trained_run, runs)
    report = tmp_path / "report"
    code, _, err = run_cli(capsys, "report", "--runs", runs, "--output", report, "--no-pdf")
    assert code == 0, err
    (report / "my_notes.md").write_text("notes")
    (report / "figures" / "my_sketch.png").write_bytes(b"sketch")
    code, _, err = run_cli(capsys, "report", "--runs", runs, "--output", report, "--no-pdf")
    assert code == 0, err
    assert (report / "my_notes.md").read_text() == "notes"
    assert (report / "figures" / "my_sketch.png").read_bytes() == b"sketch"
    assert (report / "index.html").is_file()
    page = (report / "report.md").read_text() + "my edit\n"
    (report / "report.md").write_text(page)  # a page of dlcv's edited since: the user's now, never written over
    before = snapshot(tmp_path)
    expect_error(capsys, r"report/report\.md: not written by dlcv or changed since, and the new report has a",
                 "report", "--runs", runs, "--output", report, "--no-pdf")
    assert snapshot(tmp_path) == before
    (report / "report.md").unlink()
    shutil.rmtree(report / "figures")  # a user's file of the name the report writes: refused, nothing changed
    (report / "figures").write_text("mine")
    before = snapshot(tmp_path)
    expect_error(capsys, r"report/figures: not written by dlcv or changed since, and the new report has a file of",
                 "report", "--runs", runs, "--output", report, "--no-pdf")
    assert snapshot(tmp_path) == before


# --- tracebacks and hangs: one line each, nothing left behind --------------------------------------------------
@pytest.mark.parametrize("setting, pattern", [
    ("train.accelerator=gpu", r"train\.accelerator=gpu: this machine has none that torch can use; give auto or cpu"),
    ("train.num_nodes=2", r"train\.num_nodes=2: this process was not started on 2 nodes; start it on each with "
                          r"torchrun --nnodes 2, or with srun on 2 nodes"),
    ("seed=4294967296", r"seed must be a whole number >= 0 and <= 4294967295"),
])
def test_what_a_fit_cannot_do_here_is_refused_before_anything_is_written(capsys, tmp_path, recipe, p1_data,
                                                                          setting, pattern, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # this machine, GPU or not
    expect_error(capsys, pattern, "classify", "fit", "--config", recipe, "--data", p1_data, "--runs-dir",
                 tmp_path / "runs", "--set", setting)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("budget", ["999999999999999999999999999999h", "1e9h", "5m5m", "30m1h", "8785h"])
def test_a_duration_that_is_not_one_is_refused(capsys, tmp_path, recipe, p1_data, budget):
    expect_error(capsys, rf"--budget '{budget}': give a duration such as 20m, 1h30m, 90s or 1\.5h \(up to a year\)",
                 "classify", "fit", "--config", recipe, "--data", p1_data, "--runs-dir", tmp_path / "runs",
                 "--budget", budget)
    assert not (tmp_path / "runs").exists()


def test_a_confusion_figure_of_an_unknown_kind_is_refused_before_any_work(capsys, world, p1_data):
    code, _, err = run_cli(capsys, *_predict(world, p1_data, world / "pred.csv"))
    assert code == 0, err
    before = snapshot(world)
    expect_error(capsys, r"--confusion .*cm\.tiff: give a figure file ending in \.png, \.pdf, \.svg, \.jpg",
                 "classify", "evaluate", "--predictions", world / "pred.csv", "--labels", p1_data / "val_gt.csv",
                 "--confusion", world / "cm.tiff")
    assert snapshot(world) == before


# --- options never silently ignored ------------------------------------------------------------------------------
def test_resume_and_overwrite_together_are_refused(capsys, world, p1_data):
    recipe = world / "tiny.yaml"
    recipe.write_text(TINY_RECIPE)
    before = snapshot(world)
    expect_error(capsys, r"--resume and --overwrite: give one", "classify", "fit", "--config", recipe, "--data",
                 p1_data, "--runs-dir", world / "runs", "--resume", "--overwrite")
    assert snapshot(world) == before


def test_a_resumed_run_without_a_budget_follows_its_saved_recipe_not_the_files(capsys, world, p1_data):
    recipe = world / "timed.yaml"
    recipe.write_text(TINY_RECIPE.replace("train: {", "train: {budget: 20m, "))  # the file has a budget, the run none
    code, out, err = run_cli(capsys, "classify", "fit", "--config", recipe, "--data", p1_data, "--runs-dir",
                             world / "runs", "--name", "tiny", "--resume", "--set", "train.epochs=3")
    assert code == 0, err
    assert [r.split(",")[0] for r in (world / "runs" / "tiny" / "metrics.csv").read_text().splitlines()[1:]] == \
        ["1", "2", "3"]


def test_a_checkpoint_for_a_problem_the_year_does_not_grade_is_refused(capsys, world):
    before = snapshot(world)
    expect_error(capsys, r"--checkpoint ssl=\.\.\.: the 2022 hand-in grades no ssl problem \(its scripts load p1, "
                         r"seg\)", "handin", "--year", "2022", "--output", world / "h", "--checkpoint",
                 f"ssl={world / 'runs' / 'tiny' / 'best.ckpt'}")
    assert snapshot(world) == before


def test_a_run_without_a_name_says_what_names_it(capsys, world, p1_data):
    recipe = world / "tiny.yaml"
    recipe.write_text(TINY_RECIPE)
    expect_error(capsys, r"the run needs a name: give --name NAME \(the recipe .*tiny\.yaml sets none\)", "classify",
                 "fit", "--config", recipe, "--data", p1_data, "--runs-dir", world / "runs", "--set", "name=null")


def test_the_report_says_which_linked_and_hidden_runs_it_left_out(capsys, tmp_path, trained_run):
    runs = tmp_path / "runs"
    copy_run(trained_run, runs)
    copy_run(trained_run, tmp_path / "elsewhere")
    (runs / "linked").symlink_to(tmp_path / "elsewhere" / "tiny")
    shutil.copytree(trained_run, runs / ".hidden")
    code, out, err = run_cli(capsys, "report", "--runs", runs, "--output", tmp_path / "report", "--no-pdf")
    assert code == 0, err
    assert "note: left out runs/.hidden: hidden (its name starts with a dot), not searched" in out
    assert "note: left out runs/linked: a link, not searched; give it as --runs to report it" in out


def test_a_chromium_that_fails_keeps_the_page_and_says_so(capsys, tmp_path, trained_run, monkeypatch):
    broken = tmp_path / "chromium"
    broken.write_text("#!/bin/sh\necho 'no display' >&2\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setenv("DLCV_CHROMIUM", str(broken))
    code, out, err = run_cli(capsys, "report", "--runs", copy_run(trained_run, tmp_path / "runs").parent,
                             "--output", tmp_path / "report")
    assert code == 0, err
    assert (tmp_path / "report" / "index.html").is_file() and (tmp_path / "report" / "report.md").is_file()
    assert not (tmp_path / "report" / "report.pdf").exists()
    assert "note: no report.pdf: " in out and "could not print the report to PDF (exit 3: no display)" in out
    assert "pass --no-pdf" in out


def test_a_summary_whose_figure_is_not_a_number_is_one_line_under_report(capsys, tmp_path, seg_run):
    import json

    run = copy_run(seg_run, tmp_path / "runs")
    summary = json.loads((run / "summary.json").read_text())
    summary["fit_seconds"] = "abc"
    (run / "summary.json").write_text(json.dumps(summary))
    expect_error(capsys, r"seg_tiny/summary\.json: fit_seconds is not a number: 'abc'", "report", "--runs",
                 tmp_path / "runs", "--output", tmp_path / "report", "--no-pdf")
    summary["fit_seconds"], summary["epochs"] = 1.0, "x"  # a field of several types: named as the file has it
    (run / "summary.json").write_text(json.dumps(summary))
    expect_error(capsys, r"seg_tiny/summary\.json: epochs is not a number: 'x'", "report", "--runs",
                 tmp_path / "runs", "--output", tmp_path / "report", "--no-pdf")
    assert not (tmp_path / "report").exists()


def test_a_refinement_whose_figure_is_not_a_number_is_one_line_under_report(capsys, tmp_path):
    """refine.json is read through its record (dlcv.records) as summary.json is: a field that is not a number is
    one line naming the file and the field, and no report is written."""
    import json

    folder = tmp_path / "runs" / "refined"
    folder.mkdir(parents=True)
    (folder / "refine.json").write_text(json.dumps({"images": 1, "mean_iou_before": 0.6, "mean_iou_after": "0.7"}))
    expect_error(capsys, r"refine\.json: mean_iou_after is not a number: '0\.7'", "report", "--runs",
                 tmp_path / "runs", "--output", tmp_path / "report", "--no-pdf")
    assert not (tmp_path / "report").exists()


def test_a_settings_table_row_that_is_not_a_number_is_one_line(tmp_path):
    import json

    from dlcv.errors import DlcvError
    from dlcv.records import SettingsTable

    (tmp_path / "table.json").write_text(json.dumps({"rows": [{"setting": "C", "accuracy": True}]}))
    with pytest.raises(DlcvError, match=r"table\.json: rows\.0\.accuracy is not a number: True"):
        SettingsTable.read(tmp_path / "table.json")
