"""Nothing lost, round four: every write a rename in its own folder (checkpoints too), --overwrite that keeps the
earlier run until the new one has a checkpoint, a resume that checks before it changes, and signals that end a fit
with one line and an exit status that says so."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import tempfile

import lightning as L
import pytest
import torch
from conftest import copy_run, expect_error, run_cli
from test_nothing_lost import snapshot

import dlcv.cli.main
import dlcv.trainer
from dlcv.errors import DlcvError
from dlcv.io import save_torch
from dlcv.run_setup import REPLACED, settle_replaced
from dlcv.runs import RunFolder
from dlcv.trainer import RunCheckpointIO


# --- every write is a rename in the same folder -------------------------------------------------------------
def test_a_checkpoint_is_a_new_file_renamed_in_its_folder_whatever_tmpdir_is(tmp_path, monkeypatch):
    """Lightning's own writer went through a temporary file in TMPDIR: across file systems its move rewrote
    last.ckpt in place, so a hard-linked backup of it changed too."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-tmpdir"))
    last = tmp_path / "run" / "last.ckpt"
    io = RunCheckpointIO(last)
    io.save_checkpoint({"epoch": 1, "state_dict": {"w": torch.zeros(3)}}, last)
    os.link(last, tmp_path / "backup.ckpt")
    io.save_checkpoint({"epoch": 2, "state_dict": {"w": torch.ones(3)}}, last)
    assert torch.load(tmp_path / "backup.ckpt", weights_only=True)["epoch"] == 1  # the backup kept its own bytes
    assert torch.load(last, weights_only=True)["epoch"] == 2
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]  # no temporary file left beside it


def test_best_holds_no_resume_state_and_last_holds_it(tmp_path):
    run = tmp_path / "run"
    io = RunCheckpointIO(run / "last.ckpt")
    state = {"state_dict": {"w": torch.zeros(1)}, "optimizer_states": [{"m": 1}], "loops": {}}
    io.save_checkpoint(state, run / "best.ckpt")
    io.save_checkpoint(state, run / "top" / "epoch001.ckpt")  # top/ made on its first checkpoint
    io.save_checkpoint(state, run / "last.ckpt")
    assert "optimizer_states" not in torch.load(run / "best.ckpt", weights_only=True)
    assert "optimizer_states" not in torch.load(run / "top" / "epoch001.ckpt", weights_only=True)
    assert "optimizer_states" in torch.load(run / "last.ckpt", weights_only=True)


@pytest.fixture
def small_file_limit():
    """Writes past 64 KB fail with EFBIG, as under ``ulimit -f`` (Python ignores SIGXFSZ), till the test ends."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_write_past_the_file_size_limit_names_the_file_and_keeps_the_earlier_one(tmp_path, small_file_limit):
    """torch.save reported it as an unnamed RuntimeError ('unexpected pos 704 vs 598'), a traceback."""
    target = tmp_path / "weights.pth"
    save_torch({"w": torch.zeros(10)}, target)
    before = target.read_bytes()
    with pytest.raises(DlcvError, match=rf"^{target}: cannot be written \(File too large\)$"):
        save_torch({"w": torch.zeros(100_000)}, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["weights.pth"]


def test_an_export_past_the_file_size_limit_is_one_line_and_leaves_no_folder(capsys, trained_run, tmp_path,
                                                                                small_file_limit):
    out = tmp_path / "exported"
    # The tiny model's weights are a few KB: a limit below them stands in for a full disk.
    resource.setrlimit(resource.RLIMIT_FSIZE, (2048, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    expect_error(capsys, rf"{out}: cannot be written \(File too large\)", "export",
                 trained_run / "best.ckpt", "--output", out)
    assert not out.exists() and list(tmp_path.iterdir()) == []


# --- replace only on success ----------------------------------------------------------------------------
class StopAtFirstBatch(L.Callback):
    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        raise DlcvError("the new run stopped (a stand-in for a NaN loss)")


def test_overwrite_keeps_the_finished_run_when_the_new_one_fails_before_its_first_checkpoint(
        capsys, trained_run, recipe, p1_data, tmp_path, monkeypatch):
    copy_run(trained_run, tmp_path / "runs")
    before = snapshot(tmp_path / "runs")
    build = dlcv.trainer.build_trainer
    monkeypatch.setattr(dlcv.trainer, "build_trainer", lambda *a, extra_callbacks=(), **k: build(
        *a, extra_callbacks=(*extra_callbacks, StopAtFirstBatch()), **k))
    code, _, err = run_cli(capsys, "classify", "fit", "--config", recipe, "--data", p1_data, "--runs-dir",
                           tmp_path / "runs", "--overwrite")
    assert code == 2 and "the new run stopped" in err
    assert "the run it was to replace is back" in err
    assert snapshot(tmp_path / "runs") == before  # the earlier run whole, nothing beside it


def test_a_new_run_that_stops_before_its_first_checkpoint_leaves_no_folder_and_runs_again(
        capsys, recipe, p1_data, tmp_path, monkeypatch):
    build = dlcv.trainer.build_trainer
    monkeypatch.setattr(dlcv.trainer, "build_trainer", lambda *a, extra_callbacks=(), **k: build(
        *a, extra_callbacks=(*extra_callbacks, StopAtFirstBatch()), **k))
    code, _, err = run_cli(capsys, "classify", "fit", "--config", recipe, "--data", p1_data, "--runs-dir",
                           tmp_path / "runs")
    assert code == 2 and "the new run stopped" in err
    assert list((tmp_path / "runs").iterdir()) == []
    monkeypatch.setattr(dlcv.trainer, "build_trainer", build)
    assert run_cli(capsys, "classify", "fit", "--config", recipe, "--data", p1_data, "--runs-dir",
                   tmp_path / "runs")[0] == 0  # no --overwrite needed


def test_an_overwrite_killed_before_its_first_checkpoint_gives_the_earlier_run_back_at_the_next_command(tmp_path):
    runs = tmp_path / "runs"
    (runs / "tiny").mkdir(parents=True)
    (runs / "tiny" / "recipe.yaml").write_text("name: tiny\n")  # the new run: its recipe, no checkpoint yet
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    aside = runs / f".tiny.{REPLACED}-{dead}"
    aside.mkdir()
    (aside / "last.ckpt").write_bytes(b"the earlier run")
    settle_replaced(runs / "tiny")
    assert (runs / "tiny" / "last.ckpt").read_bytes() == b"the earlier run" and not aside.exists()
    # Once the new run has a checkpoint, what was set aside goes.
    aside.mkdir()
    settle_replaced(runs / "tiny")
    assert not aside.exists() and (runs / "tiny" / "last.ckpt").is_file()


def test_a_live_processs_run_set_aside_is_left_alone(tmp_path):
    (tmp_path / "tiny").mkdir()
    aside = tmp_path / f".tiny.{REPLACED}-1"  # pid 1 runs
    aside.mkdir()
    settle_replaced(tmp_path / "tiny")
    assert aside.is_dir()


# --- check, then change -----------------------------------------------------------------------------------
@pytest.mark.parametrize("epoch", ["1.5", "x", "-1", "inf"])
def test_a_resume_with_malformed_metrics_changes_nothing(capsys, trained_run, recipe, p1_data, tmp_path, epoch):
    run = copy_run(trained_run, tmp_path / "runs")
    lines = (run / "metrics.csv").read_text().splitlines()
    lines[1] = epoch + lines[1][lines[1].index(","):]
    (run / "metrics.csv").write_text("\n".join(lines) + "\n")
    before = snapshot(tmp_path / "runs")
    expect_error(capsys, r"metrics\.csv:2: (epoch is not a whole number|epoch is not a number)", "classify", "fit",
                 "--config", recipe, "--data", p1_data, "--runs-dir", tmp_path / "runs", "--resume", "--set",
                 "train.epochs=3")
    assert snapshot(tmp_path / "runs") == before  # summary.json and recipe.yaml as they were


# --- signals ------------------------------------------------------------------------------------------------
class SignalAt(L.Callback):
    """At the first batch of ``epoch`` (from 0): SIGTERM delivered to this process, or Ctrl-C as Python's own SIGINT
    handler gives it (a KeyboardInterrupt). A real SIGTERM to a separate process: test_training_knobs' resume."""

    def __init__(self, signum: int, epoch: int):
        self.signum, self.epoch = signum, epoch

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if (trainer.current_epoch, batch_idx) == (self.epoch, 0):
            if self.signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.raise_signal(self.signum)


@pytest.mark.parametrize("signum, epoch", [(signal.SIGTERM, 1), (signal.SIGINT, 0)])
def test_a_signal_ends_a_fit_with_one_line_and_its_exit_status(capsys, p1_data, recipe, tmp_path, monkeypatch,
                                                                signum, epoch):
    """SIGTERM ended a fit with exit status 0 and no word; SIGINT with 1, silently."""
    runs = tmp_path / "runs"
    build = dlcv.trainer.build_trainer
    monkeypatch.setattr(dlcv.trainer, "build_trainer", lambda *a, extra_callbacks=(), **k: build(
        *a, extra_callbacks=(*extra_callbacks, SignalAt(signum, epoch)), **k))
    code, _, err = run_cli(capsys, "classify", "fit", "--config", recipe, "--data", p1_data, "--runs-dir", runs)
    assert code == 128 + signum, err
    name = signal.Signals(signum).name
    last = err.strip().splitlines()[-1]
    if epoch:
        assert last == f"dlcv: {runs / 'tiny'}: stopped by {name} at epoch 2; --resume continues from its last " \
                       "checkpoint"
        assert RunFolder(runs / "tiny").resumable and not RunFolder(runs / "tiny").finished
    else:
        assert last == f"dlcv: {runs / 'tiny'}: stopped by {name} at epoch 1; it had no checkpoint yet: run the " \
                       "command again"
        assert not (runs / "tiny").exists()  # nothing left to block the rerun
    assert "Traceback" not in err
    assert not list(runs.rglob(".*.tmp"))
    assert signal.getsignal(signal.SIGTERM) is not dlcv.cli.main.stop_on_signal  # the handler ends with the command


def test_a_sigterm_in_the_middle_of_a_prediction_leaves_the_earlier_masks_whole(capsys, seg_run, p2_data, tmp_path,
                                                                                  monkeypatch):
    import dlcv.segment

    out = tmp_path / "masks"
    assert run_cli(capsys, "segment", "predict", "--checkpoint", seg_run / "best.ckpt", "--images",
                   p2_data / "validation", "--output", out)[0] == 0
    before = snapshot(tmp_path)
    written = []
    write = dlcv.segment.write_mask

    def write_then_terminate(path, mask):  # the signal arrives after the second new mask is written
        write(path, mask)
        written.append(path)
        if len(written) == 2:
            signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(dlcv.segment, "write_mask", write_then_terminate)
    code, _, err = run_cli(capsys, "segment", "predict", "--checkpoint", seg_run / "best.ckpt", "--images",
                           p2_data / "validation", "--output", out, "--overwrite")
    assert code == 143, err
    assert err.strip() == ("dlcv: stopped by SIGTERM before the command ended; what it had not "
                                           "finished was not written")
    assert snapshot(tmp_path) == before  # no new mask among the old, nothing staged left beside


class FullDiskInAThread(L.Callback):
    """TensorBoard's writer thread on a full disk: the thread raises, and the main thread's next write re-raises the
    same error, which names no file."""

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        import errno
        import threading

        error = OSError(errno.ENOSPC, "No space left on device")

        def write():
            raise error

        thread = threading.Thread(target=write)
        thread.start()
        thread.join()
        raise error


def test_a_full_disk_met_by_a_writer_thread_is_one_line_naming_the_run(capsys, recipe, p1_data, tmp_path, monkeypatch):
    build = dlcv.trainer.build_trainer
    monkeypatch.setattr(dlcv.trainer, "build_trainer", lambda *a, extra_callbacks=(), **k: build(
        *a, extra_callbacks=(*extra_callbacks, FullDiskInAThread()), **k))
    code, _, err = run_cli(capsys, "classify", "fit", "--config", recipe, "--data", p1_data, "--runs-dir",
                           tmp_path / "runs")
    assert code == 2, err
    assert err.strip().splitlines()[-1] == f"dlcv: error: {tmp_path / 'runs' / 'tiny'}: cannot be written (No space " \
                                           "left on device)"
    assert "Traceback" not in err and "Exception in thread" not in err
