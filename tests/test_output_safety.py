"""No command ever deletes what it did not write, and an output that cannot be written is one line.

Each test runs a command the way a careless user would and asserts: exit status 2, one line naming
the path, no traceback, and every file that existed before still there with its content.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import expect_error as expect_refusal
from conftest import run_cli

from dlcv.files import MANIFEST
from dlcv.io import mark_folder


def folder_digest(root: Path) -> dict[str, str]:
    """Every file below ``root`` (links not followed) by relative path -> sha256 of its bytes."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A user's folder holding a file of theirs, made the current folder."""
    work = tmp_path / "w"
    work.mkdir()
    (work / "notes.txt").write_text("keep")
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def p2_copy(tmp_path, p2_data) -> Path:
    return Path(shutil.copytree(p2_data, tmp_path / "p2_data"))


def _seg_predict(seg_run, images, output, *extra):
    return ("segment", "predict", "--checkpoint", seg_run / "best.ckpt", "--images", images, "--output", output,
            *extra)


# --- output folders ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("output", [".", ".."])
def test_predict_into_the_current_folder_or_its_parent_is_refused(capsys, workdir, seg_run, p2_copy, output):
    before = folder_digest(workdir.parent)
    expect_refusal(capsys, r"is the current folder or holds it", *_seg_predict(seg_run, p2_copy / "validation",
                                                                                 output, "--overwrite"))
    assert folder_digest(workdir.parent) == before


def test_predict_into_its_own_input_folder_is_refused(capsys, seg_run, p2_copy):
    before = folder_digest(p2_copy)
    images = p2_copy / "validation"
    expect_refusal(capsys, r"validation: is an input of this command",
                   *_seg_predict(seg_run, images, images, "--overwrite"))
    expect_refusal(capsys, r"p2_data: holds the input", *_seg_predict(seg_run, images, p2_copy, "--overwrite"))
    expect_refusal(capsys, r"validation/preds: lies inside the input folder",
                   *_seg_predict(seg_run, images, images / "preds"))
    assert folder_digest(p2_copy) == before


def test_predict_into_a_run_folder_holding_the_checkpoint_is_refused(capsys, seg_run, p2_data):
    before = folder_digest(seg_run)
    expect_refusal(capsys, r"holds the input .*best\.ckpt",
                   *_seg_predict(seg_run, p2_data / "validation", seg_run, "--overwrite"))
    assert folder_digest(seg_run) == before


def test_overwrite_refuses_a_folder_that_dlcv_did_not_write(capsys, tmp_path, seg_run, p2_data):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    expect_refusal(capsys, rf"mine: holds files that dlcv did not write \(no {MANIFEST}\)",
                   *_seg_predict(seg_run, p2_data / "validation", mine, "--overwrite"))
    assert (mine / "thesis.tex").read_text() == "years of work"


def test_an_output_that_is_a_link_is_refused(capsys, tmp_path, seg_run, p2_data):
    target = tmp_path / "real"
    target.mkdir()
    mark_folder(target, "set of predicted masks")
    (target / "0000_mask.png").write_bytes(b"kept")
    (tmp_path / "link").symlink_to(target)
    expect_refusal(capsys, r"link: is a link", *_seg_predict(seg_run, p2_data / "validation", tmp_path / "link",
                                                             "--overwrite"))
    assert (target / "0000_mask.png").read_bytes() == b"kept"


def test_overwrite_replaces_a_folder_that_dlcv_wrote_and_nothing_is_left_beside_it(capsys, tmp_path, seg_run,
                                                                                   p2_data):
    out = tmp_path / "pred"
    for _ in range(2):
        code, _, err = run_cli(capsys, *_seg_predict(seg_run, p2_data / "validation", out, "--overwrite"))
        assert code == 0, err
    assert (out / MANIFEST).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred"]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_staging_folder_left_by_a_killed_run_is_cleaned_by_the_next(capsys, tmp_path, seg_run, p2_data):
    out = tmp_path / "pred"
    left = tmp_path / f".pred.dlcv-staging-{_dead_pid()}"
    left.mkdir()
    mark_folder(left, "set of predicted masks")
    (left / "0000_mask.png").write_bytes(b"half")
    not_ours = tmp_path / ".pred.dlcv-staging-x"  # no pid, no manifest: not dlcv's, left alone
    not_ours.mkdir()
    code, _, err = run_cli(capsys, *_seg_predict(seg_run, p2_data / "validation", out))
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [not_ours.name, "pred"]


def test_sam_refine_into_its_predictions_folder_is_refused(capsys, tmp_path):
    preds = tmp_path / "preds"
    preds.mkdir()
    (preds / "0000_mask.png").write_bytes(b"a prediction")
    before = folder_digest(tmp_path)
    expect_refusal(capsys, r"preds: is an input of this command", "sam", "refine", "--sam-masks", tmp_path / "sam",
                   "--predictions", preds, "--output", preds, "--overwrite")
    assert folder_digest(tmp_path) == before


def test_a_report_never_replaces_its_runs_or_the_current_folder(capsys, workdir, trained_run, tmp_path):
    runs = tmp_path / "runs"
    for name in ("tiny", "other"):
        shutil.copytree(trained_run, runs / name, ignore=shutil.ignore_patterns("*.ckpt", "tensorboard"))
    before = folder_digest(tmp_path)
    expect_refusal(capsys, r"runs: is an input", "report", "--runs", runs, "--output", runs)
    expect_refusal(capsys, r"is the current folder", "report", "--runs", runs, "--output", ".")
    # A run is no report: never replaced, --overwrite or not.
    for extra in ((), ("--overwrite",)):
        expect_refusal(capsys, r"other: holds a run, not a report; choose another folder", "report", "--runs",
                       runs / "tiny", "--output", runs / "other", *extra)
    assert folder_digest(tmp_path) == before


# --- run folders ------------------------------------------------------------------------------------------
def test_fit_never_replaces_the_current_folder_or_a_folder_it_did_not_write(capsys, workdir, recipe, p1_data):
    before = folder_digest(workdir.parent)
    expect_refusal(capsys, r"is the current folder or holds it", "classify", "fit", "--config", recipe, "--data",
                   p1_data, "--runs-dir", "..", "--name", workdir.name, "--overwrite")
    (workdir / "results").mkdir()
    (workdir / "results" / "table.csv").write_text("mine")
    expect_refusal(capsys, r"results: holds files that dlcv did not write", "classify", "fit", "--config", recipe,
                   "--data", p1_data, "--runs-dir", ".", "--name", "results", "--overwrite")
    assert (workdir / "results" / "table.csv").read_text() == "mine"
    assert folder_digest(workdir.parent) == {**before, "w/results/table.csv": folder_digest(workdir)[
        "results/table.csv"]}


def test_fit_refuses_a_run_folder_inside_its_data(capsys, tmp_path, recipe, p1_data):
    data = Path(shutil.copytree(p1_data, tmp_path / "data"))
    before = folder_digest(data)
    expect_refusal(capsys, r"lies inside the input folder", "classify", "fit", "--config", recipe, "--data", data,
                   "--runs-dir", data / "train_50")
    assert folder_digest(data) == before


# --- synthetic data and the transfer split ----------------------------------------------------------------
def test_synth_never_replaces_a_course_data_folder(capsys, tmp_path):
    course = tmp_path / "hw1_data" / "p1_data"
    (course / "train_50").mkdir(parents=True)
    (course / "train_50" / "0_0.png").write_bytes(b"real image")
    (tmp_path / "hw1_data" / "p2_data" / "mini").mkdir(parents=True)
    (tmp_path / "hw1_data" / "p2_data" / "mini" / "a.jpg").write_bytes(b"real")
    before = folder_digest(tmp_path)
    for problems in ("p1", "p2", "ssl"):
        expect_refusal(capsys, r"hw1_data/p[12]_data: holds files that dlcv did not write", "data", "synth",
                       "--problems", problems, "--output", tmp_path / "hw1_data", "--overwrite")
    assert folder_digest(tmp_path) == before


def test_synth_problems_keep_each_others_data(tmp_path):
    from dlcv.data.synth import synth_p2, synth_ssl

    target = synth_p2(tmp_path, train=1, validation=1, size=32)
    synth_ssl(tmp_path, mini=2, office_train_per_class=1, office_val_per_class=1, arch="resnet18")
    satellite = folder_digest(target / "train")
    synth_p2(tmp_path, train=1, validation=1, size=32, seed=1, overwrite=True)
    assert (target / "mini" / "train").is_dir() and (target / "pretrain_model_SL.pt").is_file()
    assert folder_digest(target / "train") != satellite


def test_transfer_split_into_its_p1_folder_is_refused(capsys, tmp_path, p1_data):
    data = Path(shutil.copytree(p1_data, tmp_path / "p1_data"))
    before = folder_digest(data)
    expect_refusal(capsys, r"is an input", "data", "transfer-split", "--p1", data, "--output", data, "--overwrite")
    assert folder_digest(data) == before


# --- output files -----------------------------------------------------------------------------------------
def test_predict_never_writes_over_its_checkpoint_or_input(capsys, trained_run, p1_data, tmp_path):
    run = Path(shutil.copytree(trained_run, tmp_path / "run", ignore=shutil.ignore_patterns("tensorboard")))
    before = folder_digest(run)
    expect_refusal(capsys, r"best\.ckpt: is an input", "classify", "predict", "--checkpoint", run / "best.ckpt",
                   "--images", p1_data / "val_50", "--output", run / "best.ckpt")
    expect_refusal(capsys, r"val_50/p\.csv: lies inside the input folder", "classify", "predict", "--checkpoint",
                   run / "best.ckpt", "--images", p1_data / "val_50", "--output", p1_data / "val_50" / "p.csv")
    assert folder_digest(run) == before


def test_an_output_in_a_path_under_a_file_is_one_line(capsys, trained_run, p1_data, tmp_path):
    (tmp_path / "file").write_text("x")
    expect_refusal(capsys, r"file/p\.csv: the output folder .*file is not a folder", "classify", "predict",
                   "--checkpoint", trained_run / "best.ckpt", "--images", p1_data / "val_50",
                   "--output", tmp_path / "file" / "p.csv")


@pytest.mark.parametrize("failure", [errno.EACCES, errno.ENOSPC, errno.EROFS])
def test_an_output_that_cannot_be_written_is_one_line_and_leaves_nothing(capsys, monkeypatch, trained_run,
                                                                         p1_data, tmp_path, failure):
    """Read-only folders, full disks: (as root, permissions are not enforced, so the failing call is made to fail.)"""
    import tempfile

    real_replace = os.replace

    def fail(*args, **kwargs):
        raise OSError(failure, os.strerror(failure))

    out = tmp_path / "out"
    out.mkdir()
    (out / "p.csv").write_text("earlier predictions")
    if failure == errno.EACCES:  # nothing can be created in the folder
        monkeypatch.setattr(tempfile, "mkstemp", fail)
    else:  # the new file cannot be completed
        monkeypatch.setattr(os, "replace", lambda a, b: fail() if str(b).endswith("p.csv") else real_replace(a, b))
    expect_refusal(capsys, rf"out/p\.csv: cannot be written \({re.escape(os.strerror(failure))}\)", "classify",
                   "predict", "--checkpoint", trained_run / "best.ckpt", "--images", p1_data / "val_50",
                   "--output", out / "p.csv", "--overwrite")
    assert folder_digest(out) == {"p.csv": hashlib.sha256(b"earlier predictions").hexdigest()}


def test_a_folder_output_on_a_full_disk_is_one_line_and_leaves_nothing(capsys, monkeypatch, seg_run, p2_data,
                                                                       tmp_path):
    from PIL import Image

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Image.Image, "save", full)
    expect_refusal(capsys, r"pred.*: cannot be written \(No space left on device\)",
                   *_seg_predict(seg_run, p2_data / "validation", tmp_path / "pred"))
    assert list(tmp_path.iterdir()) == []


# --- special files, links, copied runs, names that look like patterns ---------------------------------------
def _kinds(root: Path) -> dict[str, tuple]:
    """Every entry below ``root`` (links not followed): its kind bits, a link's target, a file's digest."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(dirpath) / name
            mode = path.lstat().st_mode
            detail = (os.readlink(path) if stat.S_ISLNK(mode) else
                      hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(mode) else "")
            out[str(path.relative_to(root))] = (stat.S_IFMT(mode), detail)
    return out


@pytest.fixture
def specials(tmp_path) -> Path:
    """A folder holding a FIFO, a link to a file of the user's, a dangling link and (as root) a character
    device like /dev/null, each also under its name with ``.png``: outputs that a rename would replace with a
    regular file."""
    folder = tmp_path / "specials"
    folder.mkdir()
    (folder / "mine.csv").write_text("the user's own file")
    for suffix in ("", ".png"):
        os.mkfifo(folder / f"fifo{suffix}")
        (folder / f"link{suffix}").symlink_to(folder / "mine.csv")
        (folder / f"dangling{suffix}").symlink_to(folder / "nowhere.csv")
        try:
            os.mknod(folder / f"null{suffix}", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            pass
    return folder


def _file_writers(trained_run: Path, seg_run: Path, p1_data: Path, p2_data: Path, output: Path) -> list[tuple]:
    """Every command that writes a single file, writing it to ``output``."""
    val = p2_data / "validation"
    return [
        ("classify", "predict", "--checkpoint", trained_run / "best.ckpt", "--images", p1_data / "val_50",
         "--output", output),
        ("segment", "overlay", "--image", val / "0000_sat.jpg", "--mask", val / "0000_mask.png", "--output", output),
        ("segment", "progress", seg_run, "--output", output.with_name(output.name + ".png")),
        ("ssl", "export", "--checkpoint", trained_run / "best.ckpt", "--output", output),
    ]


@pytest.mark.parametrize("name", ["fifo", "link", "dangling", "null"])
def test_an_output_that_is_not_a_regular_file_is_refused_and_left_as_it_was(capsys, specials, trained_run, seg_run,
                                                                              p1_data, p2_data, name):
    if not os.path.lexists(specials / name):
        pytest.skip("creating a device file needs root")
    before = _kinds(specials)
    what = r"is a link; give the file itself" if "link" in name or name == "dangling" else \
        r"is a (FIFO|character device), expected a file name"
    for args in _file_writers(trained_run, seg_run, p1_data, p2_data, specials / name):
        expect_refusal(capsys, rf"{name}(\.png)?: {what}", *args)
    assert _kinds(specials) == before


def test_evaluate_refuses_a_special_file_as_its_confusion_figure(capsys, specials, tmp_path):
    (tmp_path / "pred.csv").write_text("filename,label\n0_0.png,0\n")
    (tmp_path / "labels.csv").write_text("filename,label\n0_0.png,0\n")
    before = _kinds(specials)
    expect_refusal(capsys, r"fifo: is a FIFO", "classify", "evaluate", "--predictions", tmp_path / "pred.csv",
                   "--labels", tmp_path / "labels.csv", "--confusion", specials / "fifo")
    assert _kinds(specials) == before


def test_an_output_folder_that_is_a_fifo_is_refused(capsys, specials, seg_run, p2_data):
    before = _kinds(specials)
    expect_refusal(capsys, r"fifo: is a FIFO, expected a folder",
                   *_seg_predict(seg_run, p2_data / "validation", specials / "fifo", "--overwrite"))
    assert _kinds(specials) == before


def test_embed_plot_never_writes_into_a_folder_of_the_users(capsys, tmp_path, trained_run):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "embedding_metrics.csv").write_text("my own table")
    expect_refusal(capsys, r"mine: holds files that dlcv did not write", "embed", "plot", trained_run, "--method",
                   "pca", "--output", mine)
    assert folder_digest(mine) == {"embedding_metrics.csv": hashlib.sha256(b"my own table").hexdigest()}
    expect_refusal(capsys, r"best\.ckpt: exists and is not a folder|is a regular file, expected a folder", "embed",
                   "plot", trained_run, "--method", "pca", "--output", trained_run / "best.ckpt")
    out = tmp_path / "figures"
    for _ in range(2):  # its own folder of figures it writes again
        code, _, err = run_cli(capsys, "embed", "plot", trained_run, "--method", "pca", "--output", out)
        assert code == 0, err
    assert (out / MANIFEST).is_file() and (out / "embedding_metrics.csv").is_file()


def test_a_copied_run_resumed_under_its_new_name_leaves_the_original_alone(capsys, tmp_path, recipe, p1_data):
    runs = tmp_path / "runs"
    code, _, err = run_cli(capsys, "classify", "fit", "--config", recipe, "--data", p1_data, "--runs-dir", runs,
                           "--set", "train.epochs=1")
    assert code == 0, err
    (runs / "tiny" / "summary.json").unlink()  # as if it had been interrupted after its last.ckpt
    shutil.copytree(runs / "tiny", runs / "copy")
    original = folder_digest(runs / "tiny")
    code, out, err = run_cli(capsys, "classify", "fit", "--config", recipe, "--data", p1_data, "--runs-dir", runs,
                             "--name", "copy", "--resume")
    assert code == 0, err
    assert f"run folder: {runs / 'copy'}" in out
    assert folder_digest(runs / "tiny") == original
    assert json.loads((runs / "copy" / "summary.json").read_text())["name"] == "copy"


def test_an_output_name_is_never_a_pattern(capsys, tmp_path, seg_run, p2_data):
    out = tmp_path / "o"
    out.mkdir()
    neighbour = out / f".ab.dlcv-old-{_dead_pid()}"  # what another output's interrupted replacement left
    neighbour.mkdir()
    mark_folder(neighbour, "set of predicted masks")
    (neighbour / "0000_mask.png").write_bytes(b"theirs")
    code, _, err = run_cli(capsys, *_seg_predict(seg_run, p2_data / "validation", out / "a*"))
    assert code == 0, err
    assert (neighbour / "0000_mask.png").read_bytes() == b"theirs"
    assert (out / "a*" / MANIFEST).is_file()
