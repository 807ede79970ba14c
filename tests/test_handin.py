"""dlcv handin: a year's course scripts and the checkpoints they load in one folder, run from there with
nothing but dlcv installed; their outputs in the course's formats. And the scripts' choice of checkpoint."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_cli
from PIL import Image

from dlcv.data.masks import CLASS_COLOURS
from dlcv.io import MANIFEST

SCRIPTS = {2021: ("p1", "seg"), 2022: ("p1", "seg"), 2023: ("p1", "ssl", "seg"), 2024: ("ssl", "seg")}


@pytest.fixture(scope="module")
def office(tmp_path_factory) -> Path:
    """An Office-Home-like test CSV (id,filename,label with empty labels) and its images."""
    root = tmp_path_factory.mktemp("office")
    (root / "test").mkdir()
    rng = np.random.default_rng(0)
    with open(root / "test.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "filename", "label"])
        for i in (3, 1, 2, 0):  # the output keeps the CSV's order
            Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(root / "test" / f"{i}.jpg")
            writer.writerow([i, f"{i}.jpg", ""])
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory, trained_run, seg_run) -> Path:
    """A runs folder as a student's: model A and model B's CPU run (copies of one tiny run), seg_cpu."""
    root = tmp_path_factory.mktemp("runs")
    for name in ("p1_model_a", "p1_model_b_cpu"):
        (root / name).mkdir()
        shutil.copy(trained_run / "best.ckpt", root / name / "best.ckpt")
    (root / "seg_cpu").mkdir()
    shutil.copy(seg_run / "best.ckpt", root / "seg_cpu" / "best.ckpt")
    return root


def _script(folder: Path, script: str, *args, cwd: Path) -> subprocess.CompletedProcess:
    """Run a hand-in script as a student's machine would: dlcv on the PATH, no DLCV_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLCV_")}
    env["PATH"] = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    return subprocess.run(["bash", str(folder / script), *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300, check=False)


def _check_output(name: str, year: int, hand: Path, script: str, work: Path, p1_data: Path, p2_data: Path,
                  office: Path) -> None:
    """Run ``script`` of a hand-in folder on synthetic data and check its output by the course's format."""
    if name == "p1":
        done = _script(hand, script, p1_data / "val_50", work / "pred.csv", cwd=work)
        assert done.returncode == 0, done.stderr
        rows = list(csv.reader(open(work / "pred.csv")))
        assert rows[0] == (["image_id", "label"] if year == 2021 else ["filename", "label"])
        assert sorted(r[0] for r in rows[1:]) == sorted(p.name for p in (p1_data / "val_50").iterdir())
    elif name == "seg":
        done = _script(hand, script, p2_data / "validation", work / "masks", cwd=work)
        assert done.returncode == 0, done.stderr
        images = sorted(p.name[:4] for p in (p2_data / "validation").glob("*_sat.jpg"))
        assert sorted(p.name[:4] for p in (work / "masks").glob("*_mask.png")) == images
        mask = Image.open(work / "masks" / f"{images[0]}_mask.png")
        assert mask.mode == "RGB" and mask.size == Image.open(p2_data / "validation" / f"{images[0]}_sat.jpg").size
        colours = np.unique(np.asarray(mask).reshape(-1, 3), axis=0)
        assert all((CLASS_COLOURS == c).all(axis=1).any() for c in colours)
    else:
        done = _script(hand, script, office / "test.csv", office / "test", work / "ssl.csv", cwd=work)
        assert done.returncode == 0, done.stderr
        rows = list(csv.reader(open(work / "ssl.csv")))
        assert rows[0] == ["id", "filename", "label"]
        assert [r[:2] for r in rows[1:]] == [[str(i), f"{i}.jpg"] for i in (3, 1, 2, 0)]
        assert all(r[2].isdigit() for r in rows[1:])


@pytest.mark.slow
def test_each_years_handin_folder_runs_its_scripts_with_only_dlcv_installed(capsys, tmp_path, runs, trained_run,
                                                                          p1_data, p2_data, office):
    """Every year's folder is gathered and checked; a script is run where its command was not already run
    from an earlier year's folder (each takes seconds to start torch)."""
    ran = set()
    for year, names in SCRIPTS.items():
        hand = tmp_path / f"handin_{year}"
        code, out, err = run_cli(capsys, "handin", "--year", year, "--output", hand, "--runs", runs,
                                 "--checkpoint", f"ssl={trained_run / 'best.ckpt'}")
        assert code == 0, err
        assert sorted(p.name for p in hand.iterdir()) == sorted(
            [MANIFEST, "checkpoints", "common.sh", *(f"hw1_{i}.sh" for i in range(1, len(names) + 1))])
        assert sorted(p.name for p in (hand / "checkpoints").iterdir()) == sorted(f"{n}.ckpt" for n in names)
        for name in names:  # each file with its size
            assert f"checkpoints/{name}.ckpt" in out
        if "p1" in names:  # model B before model A, weights only
            assert f"from {runs / 'p1_model_b_cpu' / 'best.ckpt'}" in out
            assert (hand / "checkpoints" / "p1.ckpt").stat().st_size < (runs / "p1_model_a" / "best.ckpt").stat().st_size
        for number, name in enumerate(names, start=1):
            script = f"hw1_{number}.sh"
            command = (hand / script).read_text().splitlines()[-1]
            assert 'source "$(dirname "${BASH_SOURCE[0]}")/common.sh"' in (hand / script).read_text()
            if command in ran:
                continue
            ran.add(command)
            work = tmp_path / f"work_{year}_{number}"
            work.mkdir()
            _check_output(name, year, hand, script, work, p1_data, p2_data, office)
    assert len(ran) == 4  # classification with either header, segmentation, self-supervision


def test_handin_refuses_what_it_cannot_gather_in_one_line(capsys, tmp_path, runs):
    from conftest import expect_error

    expect_error(capsys, r"no ssl checkpoint for the scripts \(none of .*ssl_table/C/best\.ckpt", "handin", "--year",
                 2024, "--output", tmp_path / "h", "--runs", runs)
    expect_error(capsys, r"--year 2019: choose among 2021, 2022, 2023, 2024", "handin", "--year", 2019,
                 "--output", tmp_path / "h")
    expect_error(capsys, r"--checkpoint p9=\.\.\.: name one of p1, ssl, seg", "handin", "--year", 2021,
                 "--output", tmp_path / "h", "--checkpoint", "p9=x.ckpt")
    expect_error(capsys, r"--checkpoint p1=.*nothing\.ckpt: no such file", "handin", "--year", 2021,
                 "--output", tmp_path / "h", "--runs", runs, "--checkpoint", f"p1={tmp_path / 'nothing.ckpt'}")
    assert not (tmp_path / "h").exists()


def test_the_repository_scripts_take_the_best_run_there_is(tmp_path):
    """``checkpoint VAR NAME CANDIDATE...`` of scripts/common.sh: the variable, else the hand-in folder's file,
    else the first candidate that exists under the repository."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "scripts", repo / "scripts")
    for run in ("p1_model_a", "p1_model_b_cpu"):
        (repo / "runs" / run).mkdir(parents=True)
        (repo / "runs" / run / "best.ckpt").write_bytes(b"x")
    ask = ("source scripts/common.sh; checkpoint DLCV_P1_CHECKPOINT p1 runs/p1_model_b/best.ckpt "
           "runs/p1_model_b_cpu/best.ckpt runs/p1_model_a/best.ckpt")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLCV_")}

    def chosen(**extra) -> str:
        done = subprocess.run(["bash", "-c", ask], cwd=repo, capture_output=True, text=True, env={**env, **extra},
                              check=True)
        return done.stdout.strip()

    assert chosen() == str(repo / "runs" / "p1_model_b_cpu" / "best.ckpt")
    assert chosen(DLCV_P1_CHECKPOINT="/x/y.ckpt") == "/x/y.ckpt"
    (repo / "scripts" / "checkpoints").mkdir()
    (repo / "scripts" / "checkpoints" / "p1.ckpt").write_bytes(b"x")
    assert chosen() == str(repo / "scripts" / "checkpoints" / "p1.ckpt")
