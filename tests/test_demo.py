"""The README's main job, ``dlcv demo``, run once as a user runs it (a separate process) and read by each test.

The tests share one run (``--dist loadfile`` keeps them on one worker). How firmly the demo's self-supervised
effects hold over seeds and precisions is measured by ``benchmarks/demo_ssl_seeds.py``; here they need only be
better than chance."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import run_dlcv

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> tuple[Path, list[str]]:
    """The demo's folder and its printed lines."""
    folder = tmp_path_factory.mktemp("demo") / "demo"
    done = run_dlcv("demo", "--output", folder, env={"DLCV_CACHE": str(folder.parent / "cache")})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return folder, done.stdout.strip().splitlines()


def _printed(lines: list[str], prefix: str) -> str:
    """What the demo printed after ``prefix`` (its closing lines are indented)."""
    return next(line.strip() for line in lines if line.strip().startswith(prefix))[len(prefix):].strip()


def test_the_demo_learns_each_problem_and_prints_what_its_files_hold(demo):
    folder, lines = demo
    assert lines[-1].startswith("accuracy: ") and lines[-2].startswith("mean_iou: ")
    accuracy, mean_iou = float(_printed(lines, "accuracy:")), float(_printed(lines, "mean_iou:"))
    assert accuracy > 0.8 and mean_iou > 0.5  # chance: 0.1 and about 0.17
    # The printed accuracy is the predictions' against the labels, and the run's own final scoring agrees.
    with open(folder / "p1_predictions.csv", newline="") as handle:
        predicted = {r["filename"]: r["label"] for r in csv.DictReader(handle)}
    with open(folder / "data" / "p1_data" / "val_gt.csv", newline="") as handle:
        truth = {r["filename"]: r["label"] for r in csv.DictReader(handle)}
    assert predicted.keys() == truth.keys()
    assert f"{sum(predicted[f] == truth[f] for f in truth) / len(truth):.4f}" == f"{accuracy:.4f}"
    # The printed mIoU is the predicted masks' against the ground truth, as the course grades it.
    from dlcv.segment import evaluate

    graded = evaluate(folder / "p2_pred_masks", folder / "data" / "p2_data" / "validation")
    assert f"{graded['mean_iou']:.6f}" == f"{mean_iou:.6f}"


def test_the_demo_writes_every_problems_files(demo):
    folder, lines = demo
    run = folder / "runs" / "p1_demo"
    assert (run / "best.ckpt").is_file() and (run / "figures" / "tsne_panels.png").is_file()
    seg = folder / "runs" / "p2_demo"
    assert (seg / "figures" / "masks_through_training.png").is_file()
    assert len(list((folder / "p2_pred_masks").glob("*_mask.png"))) == 8
    report = folder / "report" / "index.html"
    assert _printed(lines, "report:").startswith(str(report))
    page = report.read_text()
    assert 'id="classification"' in page and 'id="segmentation"' in page and 'id="ssl"' in page
    summary = json.loads((run / "summary.json").read_text())
    assert f"{summary['best_val_acc']:.4f}" in page


def test_the_demos_self_supervision_does_better_than_chance(demo):
    folder, lines = demo
    table_dir = folder / "runs" / "ssl_table_demo"
    table = json.loads((table_dir / "table.json").read_text())
    assert [r["setting"] for r in table["rows"]] == ["A", "B", "C", "D", "E"]
    printed = dict(zip(*[iter(_printed(lines, "ssl:").split())] * 2))
    assert printed == {r["setting"]: f"{r['accuracy']:.3f}" for r in table["rows"]}
    assert f"{table['rows'][2]['accuracy']:.4f}" in (folder / "report" / "index.html").read_text()
    with open(folder / "data" / "p2_data" / "office" / "val.csv", newline="") as handle:
        classes = len({r["label"] for r in csv.DictReader(handle)})
    byol = json.loads((table_dir / "byol" / "summary.json").read_text())
    assert byol["final_knn_acc"] > 1.5 / classes and table["rows"][2]["accuracy"] > 1.5 / classes
    assert _printed(lines, "BYOL kNN monitor:").startswith(
        f"{byol['knn_acc_at_init']:.3f} untrained -> {byol['final_knn_acc']:.3f}")


def test_a_second_demo_into_the_same_folder_is_refused_and_changes_nothing(demo, capsys):
    from conftest import expect_error

    folder, _ = demo
    before = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    expect_error(capsys, r"already holds a demo; pass --overwrite", "demo", "--output", folder)
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == before


def test_demo_overwrite_takes_an_earlier_demo_and_never_a_folder_of_other_files(demo, capsys, tmp_path, monkeypatch):
    """The gate of ``demo --overwrite`` (the demo itself runs once, above: here its work is recorded, not redone)."""
    import shutil

    from conftest import expect_error, run_cli

    import dlcv.demo

    # The gate reads the folder's manifest, not its checkpoints (a gigabyte the copy need not take).
    earlier = shutil.copytree(demo[0], tmp_path / "demo", symlinks=True, ignore=shutil.ignore_patterns("*.ckpt"))
    ran = []
    monkeypatch.setattr(dlcv.demo, "_run_demo", lambda output: ran.append(output) or output)
    code, _, err = run_cli(capsys, "demo", "--output", earlier, "--overwrite")
    assert code == 0, err
    assert [p.resolve() for p in ran] == [earlier.resolve()]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    expect_error(capsys, r"mine", "demo", "--output", mine, "--overwrite")
    assert (mine / "notes.txt").read_text() == "keep" and len(ran) == 1
