"""The cluster paths, run for real on this one machine: a one-host SLURM (munge, slurmctld and slurmd started here
from a configuration written here, and stopped at the end) and two torchrun nodes on 127.0.0.1 (gloo), each node
one process on the CPU.

Every launcher gives the same run: one run folder, written once, and the same metrics as any other launcher with
the same processes; a run whose process was killed goes on with ``--resume`` to the metrics of one never killed;
a node that never comes ends in one line. (A single process with the same global batch takes the same steps
under the same schedule, but its metrics differ: batch norm's statistics are per process on CPUs.)
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from conftest import REPO, TINY_SEG_RECIPE, need

from dlcv.data.synth import synth_p1, synth_p2

pytestmark = pytest.mark.cluster

ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # two processes on a 2-core machine
RECIPE = """\
name: tiny
data: {batch_size: 8, eval_batch_size: 32, crop_padding: 0}
model: {name: dlcv_net, args: {widths: [8, 16, 16], stem_width: 8}}
optim: {lr: 0.05}
train: {epochs: 3, threads: 1, precision: 32-true, accelerator: cpu}
"""  # 48 images: 3 steps an epoch in each of 2 processes (batches of 8), as one process with batches of 16
PARKED = "dlcv-test: rank 1 parked, pid"
PARK_RANK_ONE = f"""
import os, sys, time
import lightning as L
import dlcv.trainer
from dlcv.cli.main import main

class Park(L.Callback):
    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_rank == 1 and (trainer.current_epoch, batch_idx) == (1, 0):
            print("{PARKED}", os.getpid(), flush=True)
            time.sleep(600)  # killed here by the test; rank 0 waits for it in the next gradient exchange

build = dlcv.trainer.build_trainer
dlcv.trainer.build_trainer = lambda *a, extra_callbacks=(), **k: build(*a, extra_callbacks=(*extra_callbacks, Park()),
                                                                       **k)
sys.exit(main(sys.argv[1:]))
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def started(command: list[str], announces: str) -> tuple[subprocess.Popen, list[str]]:
    """A daemon run in the foreground, once it has logged ``announces``; its log is read on from then (a full pipe
    would stop it) into the list returned."""
    daemon = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = []
    for line in daemon.stderr:
        log.append(line)
        if announces in line:
            threading.Thread(target=lambda: log.extend(daemon.stderr), daemon=True).start()
            return daemon, log
    raise AssertionError(f"{command[0]} ended before it was ready:\n{''.join(log)[-3000:]}")


SLURM_CONF = """\
ClusterName=dlcvtest
SlurmctldHost={host}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
AuthInfo=socket={root}/munge.socket
CredType=cred/munge
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
PlugStackConfig={root}/plugstack.conf
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
# sbatch --wait polls at 2, 10, 18 s... where the default (300) grows its wait to 32 s: a finished job stays 16 s
MinJobAge=16
"""


@pytest.fixture(scope="module")
def slurm(tmp_path_factory) -> dict:
    """A one-host SLURM, up for this module: what its commands add to the environment (``SLURM_CONF``)."""
    tools = ("munged", "slurmctld", "slurmd", "srun", "sbatch")
    need(all(shutil.which(t) or Path("/usr/sbin", t).exists() for t in tools), "slurm-wlm and munge")
    root = tmp_path_factory.mktemp("slurm")
    for folder in ("state", "spool"):
        (root / folder).mkdir()
    (root / "plugstack.conf").touch()
    (root / "munge.key").write_bytes(os.urandom(1024))
    (root / "munge.key").chmod(0o600)
    root.chmod(0o700)
    conf = root / "slurm.conf"
    conf.write_text(SLURM_CONF.format(host=socket.gethostname(), user=os.environ.get("USER") or "root", root=root,
                                      ctld_port=free_port(), d_port=free_port(), cpus=os.cpu_count()))
    sbin = lambda tool: shutil.which(tool) or f"/usr/sbin/{tool}"
    subprocess.run([sbin("munged"), "--force", f"--key-file={root}/munge.key", f"--socket={root}/munge.socket",
                    f"--pid-file={root}/munged.pid", f"--log-file={root}/munged.log",
                    f"--seed-file={root}/munged.seed"],
                   check=True, timeout=60)  # it returns once it serves
    daemons = []
    try:
        daemons.append(started([sbin("slurmctld"), "-D", "-i", "-f", str(conf)], "Running as primary controller"))
        daemons.append(started([sbin("slurmd"), "-D", "-f", str(conf)], "slurmd started"))
        ready = subprocess.run(["srun", "--ntasks", "1", "true"], env={**os.environ, "SLURM_CONF": str(conf)},
                               capture_output=True, text=True, timeout=120)
        assert ready.returncode == 0, ready.stderr + "".join(daemons[0][1][-20:]) + "".join(daemons[1][1][-20:])
        yield {"SLURM_CONF": str(conf), **ONE_THREAD}
    finally:
        for daemon, _ in daemons:
            daemon.terminate()
            daemon.wait(timeout=60)
        subprocess.run([sbin("munged"), "--stop", f"--socket={root}/munge.socket"], check=False, timeout=60,
                       capture_output=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return synth_p1(tmp_path_factory.mktemp("synth"), num_classes=4, train_per_class=12, val_per_class=4)


def dlcv(*args) -> list[str]:
    return [sys.executable, "-m", "dlcv", *map(str, args)]


def fit_args(data: Path, recipe: Path, runs: Path, *extra) -> list[str]:
    return ["classify", "fit", "--config", str(recipe), "--data", str(data), "--runs-dir", str(runs), *extra]


def finished(process: subprocess.Popen | subprocess.CompletedProcess, timeout: int = 300) -> str:
    """The stdout of a launch that must have succeeded."""
    out, err = process.communicate(timeout=timeout) if isinstance(process, subprocess.Popen) else \
        (process.stdout, process.stderr)
    assert process.returncode == 0, out[-3000:] + err[-5000:]
    return out


def rows(run: Path) -> list[dict]:
    """metrics.csv without its clock."""
    with open(run / "metrics.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def steps(run: Path) -> int:
    return torch.load(run / "last.ckpt", weights_only=True, map_location="cpu")["global_step"]


def two_nodes(args: list[str], port: int, cwd: Path, *prefix: str, timeout: int = 60) -> list[subprocess.Popen]:
    """``dlcv launch`` on node 0 and node 1 of two, on this machine (``prefix`` replaces ``python -m dlcv``)."""
    start = list(prefix) or dlcv()
    return [subprocess.Popen([*start, "launch", "--nnodes", "2", "--node-rank", str(rank), "--master",
                              f"127.0.0.1:{port}", "--join-timeout", str(timeout), "--", *args],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                             env={**os.environ, **ONE_THREAD}) for rank in (0, 1)]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "tiny.yaml"
    path.write_text(RECIPE)
    return path


@pytest.fixture(scope="module")
def srun_run(slurm, data, recipe, tmp_path_factory) -> tuple[Path, str]:
    """``srun --ntasks 2`` of ``classify fit``: its run folder and stdout."""
    runs = tmp_path_factory.mktemp("srun")
    result = subprocess.run(["srun", "--ntasks", "2", *dlcv(*fit_args(data, recipe, runs))],
                            env={**os.environ, **slurm}, cwd=runs, capture_output=True, text=True, timeout=300)
    return runs / "tiny", finished(result)


def test_srun_two_tasks_train_one_run(srun_run, data, recipe, tmp_path):
    run, out = srun_run
    assert out.count("trainer: 2 CPU device(s) x 1 node(s), strategy DDP") == 1
    assert out.count("best checkpoint:") == 1 and out.count("run folder:") == 1
    assert [r["epoch"] for r in rows(run)] == ["1", "2", "3"]
    assert sorted(p.name for p in run.parent.iterdir()) == ["tiny"]  # one folder, no second one of another process
    # The same global batch in one process: the same 9 steps under the same schedule.
    single = subprocess.run(dlcv(*fit_args(data, recipe, tmp_path, "--set", "data.batch_size=16")), cwd=tmp_path,
                            capture_output=True, text=True, timeout=300, env={**os.environ, **ONE_THREAD})
    finished(single)
    assert steps(run) == steps(tmp_path / "tiny") == 9
    assert [r["lr"] for r in rows(run)] == [r["lr"] for r in rows(tmp_path / "tiny")]
    # Validation gathered both processes' shares: one process scoring the best checkpoint (the same views) agrees.
    predicted = subprocess.run(dlcv("classify", "predict", "--checkpoint", run / "best.ckpt", "--images",
                                    data / "val_50", "--output", tmp_path / "pred.csv"), capture_output=True, text=True,
                               timeout=300)
    finished(predicted)
    with open(tmp_path / "pred.csv", newline="") as handle:
        labels = [(r["filename"], int(r["label"])) for r in csv.DictReader(handle)]
    accuracy = sum(int(name.split("_")[0]) == label for name, label in labels) / len(labels)
    assert json.loads((run / "summary.json").read_text())["best_val_acc"] == pytest.approx(accuracy)


def test_two_torchrun_nodes_train_as_two_slurm_tasks(srun_run, data, recipe, tmp_path):
    nodes = two_nodes(fit_args(data, recipe, tmp_path), free_port(), tmp_path)
    out0, out1 = (finished(node) for node in nodes)
    assert out0.count("trainer: 1 CPU device(s) x 2 node(s), strategy DDP") == 1 and out1 == ""
    assert rows(tmp_path / "tiny") == rows(srun_run[0])  # the same processes, the same arithmetic
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]


def test_sbatch_of_the_documented_script(slurm, tmp_path):
    """The SLURM script of docs/scaling.md, in small: two CPU tasks, a tiny recipe and synthetic data."""
    text = (REPO / "docs" / "scaling.md").read_text()
    script = text.split("```bash\n#!/bin/bash\n", 1)[1].split("```", 1)[0]
    assert "--gpus-per-node 4" in script and "configs/seg/gpu.yaml" in script and "hw1_data/p2_data" in script
    synth_p2(tmp_path / "hw1_data", train=6, validation=4, size=64)
    (tmp_path / "tiny.yaml").write_text(TINY_SEG_RECIPE)
    small = (script.replace("--ntasks-per-node 4", "--ntasks-per-node 2").replace(" --gpus-per-node 4", "")
             .replace("configs/seg/gpu.yaml", "tiny.yaml").replace("python -m dlcv", f"{sys.executable} -m dlcv"))
    (tmp_path / "job.sh").write_text("#!/bin/bash\n" + small.rstrip() + " --set train.accelerator=cpu\n")
    result = subprocess.run(["sbatch", "--wait", "--output", str(tmp_path / "job.out"), str(tmp_path / "job.sh")],
                            env={**os.environ, **slurm}, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out = (tmp_path / "job.out").read_text() if (tmp_path / "job.out").exists() else ""
    assert result.returncode == 0, result.stderr + out[-5000:]
    assert out.count("trainer: 2 CPU device(s) x 1 node(s), strategy DDP") == 1
    assert out.count("best checkpoint:") == 1
    assert [r["epoch"] for r in rows(tmp_path / "runs" / "seg_tiny")] == ["1", "2"]


def park_and_kill(launch: list[str], env: dict, cwd: Path) -> str:
    """Run ``launch`` (whose processes run PARK_RANK_ONE), kill rank 1 where it parks, and return what the launch
    printed once it has ended: rank 0 stops at the next gradient exchange, and the launcher with it."""
    process = subprocess.Popen(launch, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
    try:
        for line in process.stdout:
            if line.startswith(PARKED):
                os.kill(int(line.split()[-1]), signal.SIGKILL)
                break
        else:
            pytest.fail("the run ended before rank 1 parked:\n" + process.communicate()[1][-3000:])
        out, err = process.communicate(timeout=300)
    finally:
        process.kill()
        process.communicate()
    assert process.returncode != 0
    return out + err


def test_srun_run_whose_rank_was_killed_resumes_to_the_same_metrics(slurm, srun_run, data, recipe, tmp_path):
    (tmp_path / "park.py").write_text(PARK_RANK_ONE)
    args = fit_args(data, recipe, tmp_path)
    printed = park_and_kill(["srun", "--ntasks", "2", sys.executable, str(tmp_path / "park.py"), *args],
                            {**os.environ, **slurm}, tmp_path)
    assert "dlcv: error: process 0 of 2: another process of the run stopped (" in printed and "Traceback" not in printed
    assert steps(tmp_path / "tiny") == 3  # the first epoch's checkpoint
    resumed = subprocess.run(["srun", "--ntasks", "2", *dlcv(*args, "--resume")], env={**os.environ, **slurm},
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
    finished(resumed)
    assert steps(tmp_path / "tiny") == 9
    assert rows(tmp_path / "tiny") == rows(srun_run[0])  # as if never stopped


def test_two_nodes_whose_rank_was_killed_resume(data, recipe, srun_run, tmp_path):
    (tmp_path / "park.py").write_text(PARK_RANK_ONE)
    args = fit_args(data, recipe, tmp_path)
    port = free_port()
    launch = lambda rank, *extra: [
        *dlcv("launch", "--nnodes", "2", "--node-rank", rank, "--master", f"127.0.0.1:{port}", "--join-timeout", 60),
        "--", *extra]
    # Node 1 runs the parking script as its command (torchrun runs a script where dlcv's launch runs -m dlcv).
    node0 = subprocess.Popen(launch(0, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, **ONE_THREAD}, cwd=tmp_path)
    try:
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", "1", "--master-addr",
                   "127.0.0.1", "--master-port", str(port), "--nproc-per-node", "1", str(tmp_path / "park.py"), *args]
        park_and_kill(command, {**os.environ, **ONE_THREAD}, tmp_path)
        _, err0 = node0.communicate(timeout=300)
    finally:
        node0.kill()
        node0.communicate()
    assert node0.returncode == 2
    cause = err0.split("stopped (", 1)[1].split(")")[0]
    assert err0.strip().splitlines() == [  # rank 0's line, then its launcher's
        f"dlcv: error: process 0 of 2: another process of the run stopped ({cause}); "
        "the same command with --resume goes on from the last checkpoint",
        "dlcv: error: launch: a process ended early (rank 0: exit status 1); with a last.ckpt in its run folder, the "
        "same command with --resume goes on from there"], err0[-3000:]
    assert steps(tmp_path / "tiny") == 3
    for node in two_nodes([*args, "--resume"], free_port(), tmp_path):
        finished(node)
    assert rows(tmp_path / "tiny") == rows(srun_run[0])


@pytest.mark.parametrize("rank", [0, 1])
def test_a_node_that_never_comes_ends_in_one_line(rank, data, recipe, tmp_path):
    port = free_port()
    result = subprocess.run(dlcv("launch", "--nnodes", "2", "--node-rank", rank, "--master", f"127.0.0.1:{port}",
                                 "--join-timeout", "3", "--", *fit_args(data, recipe, tmp_path)),
                            capture_output=True, text=True, timeout=120, env={**os.environ, **ONE_THREAD})
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dlcv: error: launch: the 2 nodes did not all join within 3 s ("), \
        result.stderr[-3000:]
    assert not (tmp_path / "tiny").exists()
