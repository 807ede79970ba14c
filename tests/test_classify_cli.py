"""Problem 1 through the command line: synth, fit, predict, evaluate, and the course's wrappers."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
import yaml
from conftest import REPO, TINY_RECIPE, run_cli, run_dlcv


@pytest.mark.slow
def test_synth_fit_predict_evaluate_end_to_end(tmp_path):
    """The README's flow, each step a separate `dlcv` process as a user runs it."""
    env = {"DLCV_CACHE": str(tmp_path / "cache")}
    done = run_dlcv("data", "synth", "--output", tmp_path / "demo_data", "--classes", "3",
                    "--train-per-class", "10", "--val-per-class", "4", env=env)
    assert done.returncode == 0, done.stderr
    data = tmp_path / "demo_data" / "p1_data"
    recipe = tmp_path / "small.yaml"
    recipe.write_text("model: {name: dlcv_net, args: {widths: [8, 16, 16], stem_width: 8}}\n"
                      "data: {batch_size: 10}\ntrain: {epochs: 2, threads: 1}\n")
    done = run_dlcv("classify", "fit", "--config", recipe, "--data", data, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "best checkpoint: runs/small/best.ckpt" in done.stdout
    done = run_dlcv("classify", "predict", "--checkpoint", "runs/small/best.ckpt", "--images",
                    data / "val_50", "--output", "pred.csv", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    done = run_dlcv("classify", "evaluate", "--predictions", "pred.csv", "--labels", data / "val_gt.csv",
                    env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    with open(tmp_path / "pred.csv", newline="") as handle:
        predicted = {r["filename"]: r["label"] for r in csv.DictReader(handle)}
    with open(data / "val_gt.csv", newline="") as handle:
        truth = {r["filename"]: r["label"] for r in csv.DictReader(handle)}
    assert last == f"accuracy: {sum(predicted[f] == truth[f] for f in truth) / len(truth):.4f}"
    assert (tmp_path / "pred_confusion.png").stat().st_size > 1000


def test_run_folder_holds_recipe_checkpoints_metrics_and_tensorboard(trained_run):
    names = {p.name for p in trained_run.iterdir()}
    assert {"recipe.yaml", "resolved.json", "best.ckpt", "last.ckpt", "metrics.csv", "summary.json",
            "tensorboard"} <= names
    recipe = yaml.safe_load((trained_run / "recipe.yaml").read_text())
    # The recipe as loaded; what the run derived from the data and the hardware is beside it.
    assert recipe["model"]["name"] == "dlcv_net" and recipe["data"]["num_classes"] is None
    assert recipe["train"]["precision"] == "32-true"  # the test recipes' (auto has its own tests)
    resolved = json.loads((trained_run / "resolved.json").read_text())
    assert resolved["num_classes"] == 4 and resolved["precision"] == "32-true"
    with open(trained_run / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr"} <= set(rows[0])
    assert any(p.name.startswith("events.out.tfevents") for p in (trained_run / "tensorboard").rglob("*"))


def test_predict_writes_every_image_sorted_by_name(capsys, trained_run, p1_data, tmp_path):
    out = tmp_path / "pred.csv"
    code, stdout, _ = run_cli(capsys, "classify", "predict", "--checkpoint", trained_run / "best.ckpt",
                              "--images", p1_data / "val_50", "--output", out)
    assert code == 0 and "wrote 16 predictions" in stdout
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["filename", "label"]
    names = [r[0] for r in rows[1:]]
    assert names == sorted(os.listdir(p1_data / "val_50"))
    assert all(0 <= int(r[1]) < 4 for r in rows[1:])


def test_predict_can_write_the_2021_header(capsys, trained_run, p1_data, tmp_path):
    out = tmp_path / "pred.csv"
    assert run_cli(capsys, "classify", "predict", "--checkpoint", trained_run / "best.ckpt", "--images",
                   p1_data / "val_50", "--output", out, "--id-column", "image_id")[0] == 0
    assert out.read_text().splitlines()[0] == "image_id,label"


def test_evaluate_prints_per_class_accuracy_and_ends_with_accuracy(capsys, p1_data, tmp_path):
    pred = tmp_path / "pred.csv"
    rows = [line.split(",") for line in (p1_data / "val_gt.csv").read_text().splitlines()[1:]]
    # Every image right except the first two, predicted as class 3.
    pred.write_text("filename,label\n" + "".join(f"{n},{3 if i < 2 else l}\n" for i, (n, l) in enumerate(rows)))
    code, out, _ = run_cli(capsys, "classify", "evaluate", "--predictions", pred, "--labels", p1_data / "val_gt.csv")
    assert code == 0
    assert out.strip().splitlines()[-1] == f"accuracy: {14 / 16:.4f}"
    assert "0: 0.5000 / 4" in out and "3: 1.0000 / 4" in out
    assert (tmp_path / "pred_confusion.png").exists()


def test_evaluate_accepts_the_2021_header_and_a_labelled_folder(capsys, p1_data, tmp_path):
    pred = tmp_path / "pred.csv"
    names = sorted(os.listdir(p1_data / "val_50"))
    pred.write_text("image_id,label\n" + "".join(f"{n},{n.split('_')[0]}\n" for n in names))
    code, out, _ = run_cli(capsys, "classify", "evaluate", "--predictions", pred, "--labels", p1_data / "val_50")
    assert code == 0 and out.strip().endswith("accuracy: 1.0000")


def test_evaluate_does_not_import_torch(p1_data, tmp_path):
    pred = tmp_path / "pred.csv"
    pred.write_text((p1_data / "val_gt.csv").read_text())
    code = ("import sys; from dlcv.cli.main import main; "
            f"rc = main(['classify', 'evaluate', '--predictions', r'{pred}', "
            f"'--labels', r'{p1_data / 'val_gt.csv'}']); "
            "assert rc == 0; assert 'torch' not in sys.modules and 'lightning' not in sys.modules, 'heavy import'")
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_prediction_does_not_import_lightning(trained_run, seg_run, p1_data, p2_data, tmp_path):
    """``predict`` (and the hand-in scripts, which call it) needs torch and the model, not the training stack:
    Lightning and torchmetrics take seconds to import."""
    code = ("import sys; from dlcv.cli.main import main\n"
            f"assert main(['classify', 'predict', '--checkpoint', r'{trained_run / 'best.ckpt'}', '--images', "
            f"r'{p1_data / 'val_50'}', '--output', r'{tmp_path / 'p1.csv'}']) == 0\n"
            f"assert main(['segment', 'predict', '--checkpoint', r'{seg_run / 'best.ckpt'}', '--images', "
            f"r'{p2_data / 'validation'}', '--output', r'{tmp_path / 'masks'}']) == 0\n"
            "heavy = [m for m in ('lightning', 'torchmetrics') if m in sys.modules]\n"
            "assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_help_does_not_import_torch():
    done = subprocess.run([sys.executable, "-c", ("import sys; from dlcv.cli.main import main\n"
                           "try: main(['--help'])\nexcept SystemExit: pass\nassert 'torch' not in sys.modules")],
                          check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_course_wrappers_write_the_years_format(trained_run, p1_data, tmp_path):
    env = {**os.environ, "DLCV_P1_CHECKPOINT": str(trained_run / "best.ckpt"), "DLCV_PYTHON": sys.executable}
    for year, header in (("2021", "image_id,label"), ("2022", "filename,label"), ("2023", "filename,label")):
        out = tmp_path / f"{year}.csv"
        done = subprocess.run(["bash", str(REPO / "scripts" / year / "hw1_1.sh"), str(p1_data / "val_50"), str(out)],
                              check=False, capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
        lines = out.read_text().splitlines()
        assert lines[0] == header and len(lines) == 17


@pytest.mark.parametrize("classes, switch, wanted", [(6, "true", True), (6, "false", False), (4, "true", False)])
def test_top5_accuracy_is_logged_per_epoch_and_scored_at_the_end_where_asked(capsys, tmp_path, classes, switch,
                                                                             wanted):
    """The task's one MetricCollection, cloned per stage: top-5 beside accuracy in training, validation and the final
    scoring (off by the recipe's switch, and below six classes)."""
    import json

    from dlcv.data.synth import synth_p1

    data = synth_p1(tmp_path / "data", num_classes=classes, train_per_class=4, val_per_class=2)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY_RECIPE.replace("batch_size: 16", "batch_size: 4, holdout: 0.25")
                      .replace("epochs: 2", "epochs: 1")
                      .replace("precision: 32-true}", f"precision: 32-true, top5_accuracy: {switch}}}"))
    code, out, err = run_cli(capsys, "classify", "fit", "--config", recipe, "--data", data, "--runs-dir",
                             tmp_path / "runs")
    assert code == 0, err
    header = (tmp_path / "runs" / "tiny" / "metrics.csv").read_text().splitlines()[0].split(",")
    final = json.loads((tmp_path / "runs" / "tiny" / "summary.json").read_text())["final_validation"]
    assert ({"train_top5_acc", "val_top5_acc"} <= set(header)) is wanted
    assert ("top5_accuracy" in final) is wanted and {"train_acc", "val_acc"} <= set(header)
    if wanted:
        assert final["accuracy"] <= final["top5_accuracy"] <= 1 and ", top-5 " in out
