"""Two CPU processes (gloo): ``classify fit`` and ``ssl table`` (whose BYOL run is ``ssl pretrain``'s driver)
through torchrun, ``segment fit`` through Lightning's own launcher (``train.devices=2``).

Each run checks what a multi-process run must get right: every process trains a disjoint shard for
the same number of steps, metrics are gathered over both processes (the final scores equal a single
process's over the whole set), every file is written once and every line printed once, and the
table has the rows a single process gives.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY_SEG_RECIPE, need, run_cli, run_dlcv
from test_ssl import write_tiny_settings

from dlcv.data.batches import TensorBatches
from dlcv.data.synth import synth_p2, synth_ssl


@pytest.fixture(autouse=True)
def gloo():
    """Every test here runs torch.distributed's gloo backend."""
    need(torch.distributed.is_available() and torch.distributed.is_gloo_available(), "torch.distributed with gloo")

ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # two processes on a 2-core machine


def torchrun(*args, cwd: Path) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node 2 -m dlcv ARGS``, as a user launches it."""
    env = {**os.environ, **ONE_THREAD}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "dlcv", *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def metric_rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_training_shards_are_disjoint_and_equal_in_steps():
    """10 samples, 3 processes, batches of 2: unpadded shards of 4, 3, 3 would give one process a third
    batch to wait on for ever; padded, each takes 4 (two wrapped round) and every sample is seen."""
    images, labels = torch.zeros(10, 1), torch.arange(10)
    shards = [TensorBatches(images, labels, 2, shuffle=True, drop_last=True, seed=3, rank=r, world_size=3, pad=True)
              for r in range(3)]
    lengths = {len(s) for s in shards}
    seen = [torch.cat([y for _, y in s]).tolist() for s in shards]
    assert lengths == {2} and all(len(s) == 4 for s in seen)
    assert set().union(*seen) == set(range(10)) and sum(map(len, seen)) == 12
    evaluation = [TensorBatches(images, labels, 2, rank=r, world_size=3) for r in range(3)]
    scored = sorted(v for s in evaluation for _, y in s for v in y.tolist())
    assert scored == list(range(10))  # evaluation shards: each sample exactly once, no padding


def test_a_finished_command_closes_its_process_group(tmp_path, capsys):
    """Left open to the interpreter's exit, a gloo group's threads can abort a process that has done all
    its work (SIGABRT, "terminate called without an active exception", the run failing under torchrun)."""
    from dlcv.cli.main import main

    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert main(["keys", "classify"]) == 0
        assert not torch.distributed.is_initialized()
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_segment_fit_in_two_processes(tmp_path, capsys):
    data = synth_p2(tmp_path / "data", train=9, validation=4, size=96)
    recipe = tmp_path / "seg.yaml"
    recipe.write_text(TINY_SEG_RECIPE)
    # Lightning's own launcher (train.devices=2), as a recipe asks for two processes without torchrun.
    result = run_dlcv("segment", "fit", "--config", recipe, "--data", data, "--runs-dir", tmp_path / "runs",
                      "--set", "data.holdout=0.3", "--set", "train.precision=32-true", "--set", "train.accelerator=cpu",
                      "--set", "train.devices=2", "--set", "train.strategy=ddp", "--set", "train.epochs=10",
                      "--set", "optim.lr=0.03", env=ONE_THREAD, cwd=tmp_path)  # long enough to learn
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert result.stdout.count("trainer: 2 CPU device(s) x 1 node(s), strategy DDP") == 1
    run = tmp_path / "runs" / "seg_tiny"
    assert yaml.safe_load((run / "recipe.yaml").read_text())["train"]["devices"] == 2
    assert result.stdout.count("mIoU of the best checkpoint") == 1
    assert [r["epoch"] for r in metric_rows(run)] == [str(e) for e in range(1, 11)]
    # 6 training pairs (3 held out) in 2 shards of 3, batches of 4: one short batch an epoch each.
    assert torch.load(run / "last.ckpt", weights_only=True)["global_step"] == 10
    summary = json.loads((run / "summary.json").read_text())
    code, _, err = run_cli(capsys, "segment", "predict", "--checkpoint", run / "best.ckpt", "--images",
                           data / "validation", "--output", tmp_path / "pred")
    assert code == 0, err
    code, out, err = run_cli(capsys, "segment", "evaluate", "--predictions", tmp_path / "pred", "--labels",
                             data / "validation")
    assert code == 0, err
    single = float(out.strip().splitlines()[-1].split()[-1])
    assert single > 0.05  # (a model that learned nothing scores 0 on any share of the images)
    assert summary["final_validation"]["mean_iou"] == pytest.approx(single, abs=1e-4)


@pytest.mark.slow
def test_ssl_table_in_two_processes(tmp_path):
    from functools import partial

    from dlcv.data.augment import model_input
    from dlcv.data.office import monitor_sets
    from dlcv.models.transfer import load_backbone
    from dlcv.ssl_table import table
    from dlcv.tasks.byol import monitor_knn, trunk_features

    data = synth_ssl(tmp_path / "data", num_classes=3, mini=33, office_train_per_class=7, office_val_per_class=3,
                     arch="resnet18")
    two, one = tmp_path / "two", tmp_path / "one"
    for base in (two, one):
        base.mkdir()
        write_tiny_settings(base, "settings: [A, C]\n")
        for recipe in (base / "byol.yaml", base / "finetune.yaml"):  # float32: comparable with one process's
            recipe.write_text(recipe.read_text().replace("threads: 1}", "threads: 1, precision: 32-true, "
                                                                        "accelerator: cpu}"))
    result = torchrun("ssl", "table", "--config", two / "settings.yaml", "--data", data, "--runs-dir", two / "runs",
                      cwd=tmp_path)
    folder = two / "runs" / "tiny_table"
    assert result.stdout.count("setting C:") == 1 and result.stdout.count("kNN accuracy of the untrained") == 1
    for run in ("byol", "A", "C"):
        assert len(metric_rows(folder / run)) == 1, run
    # BYOL: 33 images in 2 shards of 17 (one wrapped round), batches of 16: 1 step in each process.
    assert torch.load(folder / "byol" / "last.ckpt", weights_only=True)["global_step"] == 1
    # The kNN monitor gathered both processes' features: a single process scoring the saved trunk on
    # the whole monitor set gets the same accuracy.
    recipe = yaml.safe_load((folder / "byol" / "recipe.yaml").read_text())
    trunk = load_backbone(folder / "byol" / "backbone.pt", "resnet18")
    images, rows = monitor_sets(data / "office", 32, int(recipe["monitor"]["max_bank"]), 0, use_cache=False)
    prepare = partial(model_input, mean=recipe["data"]["mean"], std=recipe["data"]["std"], size=recipe["views"]["size"])
    single = monitor_knn(trunk_features(trunk, images, prepare, 64), rows.numpy(), int(recipe["monitor"]["k"]))
    assert float(metric_rows(folder / "byol")[0]["knn_acc"]) == pytest.approx(single, abs=1e-6)

    table(one / "settings.yaml", data, runs_dir=one / "runs")
    got, expected = (json.loads((base / "runs" / "tiny_table" / "table.json").read_text()) for base in (two, one))
    keep = ("setting", "pretraining", "finetuning", "epochs")
    assert [{k: r[k] for k in keep} for r in got["rows"]] == [{k: r[k] for k in keep} for r in expected["rows"]]
    assert [Path(r["scored_on"]).name for r in got["rows"]] == [Path(r["scored_on"]).name for r in expected["rows"]]
    for row in got["rows"]:  # each setting's accuracy is its run's final scoring
        summary = json.loads((two / "runs" / "tiny_table" / row["setting"] / "summary.json").read_text())
        assert row["accuracy"] == summary["final_validation"]["accuracy"]


@pytest.mark.parametrize(("layout", "expected"), [("2", "2"), ("2(x3)", "2"), ("2(x2),2", "2"), ("3,1", None)])
def test_srun_ntasks_alone_names_the_tasks_per_node(monkeypatch, layout, expected):
    """``srun --ntasks N`` sets no SLURM_NTASKS_PER_NODE, the one variable Lightning reads: it is derived from
    SLURM's placement, and an uneven placement is refused in one line."""
    from dlcv.errors import DlcvError
    from dlcv.runtime import adopt_slurm_layout

    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_TASKS_PER_NODE", layout)
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "")  # recorded, so that what the code sets is undone too
    monkeypatch.delenv("SLURM_NTASKS_PER_NODE")
    if expected is None:
        with pytest.raises(DlcvError, match=r"SLURM placed 3,1 tasks .*--ntasks-per-node"):
            adopt_slurm_layout()
    else:
        adopt_slurm_layout()
        assert os.environ["SLURM_NTASKS_PER_NODE"] == expected
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "1")  # given: kept
    adopt_slurm_layout()
    assert os.environ["SLURM_NTASKS_PER_NODE"] == "1"


@pytest.mark.parametrize(("args", "pattern"), [
    ([], r"no command to run; give it after --"),
    (["--", "launch", "--", "models"], r"itself a launch"),
    (["--nnodes", "2", "--", "models"], r"--nnodes 2 needs --master HOST:PORT, .*can reach$"),
    (["--nnodes", "2", "--master", "10.0.0.1", "--", "models"], r"needs --master HOST:PORT, .*\(got '10.0.0.1'\)$"),
    (["--nnodes", "2", "--node-rank", "2", "--master", "h:1", "--", "models"], r"--node-rank 2 of --nnodes 2"),
    (["--nproc-per-node", "0", "--", "models"], r"need nodes and processes >= 1"),
    (["--join-timeout", "0", "--", "models"], r"--join-timeout 0: need a number of seconds >= 1"),
])
def test_launch_refuses_what_cannot_start_in_one_line(capsys, args, pattern):
    from conftest import expect_error

    expect_error(capsys, pattern, "launch", *args)


def test_launch_runs_the_command_in_each_process(tmp_path):
    """One node, two processes: each runs the command (``dlcv models`` prints its list twice)."""
    result = run_dlcv("launch", "--nproc-per-node", "2", "--", "models", env=ONE_THREAD, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("dlcv_net") == 2


def test_an_error_of_a_lone_process_is_not_a_lost_peer():
    from dlcv.runtime import lost_peer

    assert lost_peer(RuntimeError("gloo: Connection reset by peer")) is None  # no process group: not a run's peer
    assert lost_peer(ValueError("x")) is None
