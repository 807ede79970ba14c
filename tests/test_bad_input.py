"""Bad input: one clear line naming the file and the problem, exit status 2, nothing half-written."""

from __future__ import annotations

import shutil

import pytest
import torch
from conftest import expect_error as _expect_error


@pytest.fixture
def data_copy(tmp_path, p1_data):
    target = tmp_path / "p1_data"
    shutil.copytree(p1_data, target)
    return target


def test_fit_with_a_truncated_png(capsys, recipe, data_copy, tmp_path):
    bad = data_copy / "train_50" / "1_3.png"
    bad.write_bytes(bad.read_bytes()[:40])
    _expect_error(capsys, r"train_50/1_3\.png: not a readable image", "classify", "fit", "--config", recipe,
                  "--data", data_copy, "--runs-dir", tmp_path / "runs")
    assert not (tmp_path / "runs").exists()  # nothing was started


def test_fit_with_a_file_name_without_class(capsys, recipe, data_copy, tmp_path):
    shutil.copy(data_copy / "train_50" / "1_3.png", data_copy / "train_50" / "holiday.png")
    _expect_error(capsys, r"holiday\.png: the file name has no class prefix", "classify", "fit", "--config",
                  recipe, "--data", data_copy, "--runs-dir", tmp_path / "runs")


def test_fit_with_an_empty_training_folder(capsys, recipe, data_copy, tmp_path):
    shutil.rmtree(data_copy / "train_50")
    (data_copy / "train_50").mkdir()
    _expect_error(capsys, r"train_50: the folder holds no images", "classify", "fit", "--config", recipe,
                  "--data", data_copy, "--runs-dir", tmp_path / "runs")


def test_fit_with_a_missing_recipe(capsys, p1_data, tmp_path):
    _expect_error(capsys, r"nope\.yaml: no such recipe file", "classify", "fit", "--config",
                  tmp_path / "nope.yaml", "--data", p1_data)


def test_fit_refuses_to_replace_an_earlier_run(capsys, recipe, p1_data, tmp_path):
    from dlcv.io import mark_folder

    run = tmp_path / "runs" / "tiny"
    run.mkdir(parents=True)
    mark_folder(run, "run")
    (run / "best.ckpt").write_text("precious")
    _expect_error(capsys, r"runs/tiny: already holds a run; pass --overwrite", "classify", "fit", "--config",
                  recipe, "--data", p1_data, "--runs-dir", tmp_path / "runs")
    assert (run / "best.ckpt").read_text() == "precious"


def test_predict_with_a_missing_checkpoint(capsys, p1_data, tmp_path):
    _expect_error(capsys, r"missing\.ckpt: no such checkpoint", "classify", "predict", "--checkpoint",
                  tmp_path / "missing.ckpt", "--images", p1_data / "val_50", "--output", tmp_path / "p.csv")
    (tmp_path / "folder.ckpt").mkdir()
    _expect_error(capsys, r"folder\.ckpt: a folder, not a checkpoint", "classify", "predict", "--checkpoint",
                  tmp_path / "folder.ckpt", "--images", p1_data / "val_50", "--output", tmp_path / "p.csv")
    assert not (tmp_path / "p.csv").exists()


def test_predict_with_a_checkpoint_that_is_not_dlcvs(capsys, p1_data, tmp_path):
    foreign = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(3)}, foreign)
    _expect_error(capsys, r"resnet\.pt: a plain state_dict, not a dlcv checkpoint", "classify", "predict",
                  "--checkpoint", foreign, "--images", p1_data / "val_50", "--output", tmp_path / "p.csv")


def test_predict_with_a_checkpoint_of_another_architecture(capsys, trained_run, p1_data, tmp_path):
    ckpt = torch.load(trained_run / "best.ckpt", map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"]["model"] = {"name": "cnn3", "args": {}}
    other = tmp_path / "other.ckpt"
    torch.save(ckpt, other)
    _expect_error(capsys, r"other\.ckpt: its weights do not fit model 'cnn3'", "classify", "predict",
                  "--checkpoint", other, "--images", p1_data / "val_50", "--output", tmp_path / "p.csv")
    assert not (tmp_path / "p.csv").exists()


class Payload:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_predict_refuses_a_checkpoint_with_pickled_code(capsys, p1_data, tmp_path):
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": Payload()}, evil)
    line = _expect_error(capsys, r"evil\.ckpt: refused to load", "classify", "predict", "--checkpoint", evil,
                         "--images", p1_data / "val_50", "--output", tmp_path / "p.csv")
    assert "pickled code ran" not in line


def test_predict_into_a_missing_folder(capsys, trained_run, p1_data, tmp_path):
    _expect_error(capsys, r"the output folder .*nowhere does not exist", "classify", "predict", "--checkpoint",
                  trained_run / "best.ckpt", "--images", p1_data / "val_50", "--output", tmp_path / "nowhere" / "p.csv")


def test_predict_keeps_an_old_output_when_it_fails(capsys, trained_run, data_copy, tmp_path):
    out = tmp_path / "p.csv"
    out.write_text("old predictions\n")
    bad = data_copy / "val_50" / "2_14.png"
    bad.write_text("not a png")
    _expect_error(capsys, r"2_14\.png: not a readable image", "classify", "predict", "--checkpoint",
                  trained_run / "best.ckpt", "--images", data_copy / "val_50", "--output", out, "--overwrite")
    assert out.read_text() == "old predictions\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".p.csv")] == []


def test_evaluate_with_missing_columns(capsys, p1_data, tmp_path):
    pred = tmp_path / "pred.csv"
    pred.write_text("filename,prediction\n0_12.png,0\n")
    _expect_error(capsys, r"pred\.csv: missing column\(s\) label", "classify", "evaluate", "--predictions", pred,
                  "--labels", p1_data / "val_gt.csv")


def test_evaluate_names_images_without_prediction(capsys, p1_data, tmp_path):
    pred = tmp_path / "pred.csv"
    pred.write_text("filename,label\n0_12.png,0\n")
    _expect_error(capsys, r"pred\.csv: no prediction for 15 labelled image\(s\): 0_13\.png", "classify",
                  "evaluate", "--predictions", pred, "--labels", p1_data / "val_gt.csv")


def test_evaluate_names_predictions_for_unknown_images(capsys, p1_data, tmp_path):
    pred = tmp_path / "pred.csv"
    pred.write_text((p1_data / "val_gt.csv").read_text() + "9_999.png,9\n")
    _expect_error(capsys, r"1 prediction\(s\) for images not in .*val_gt\.csv: 9_999\.png", "classify",
                  "evaluate", "--predictions", pred, "--labels", p1_data / "val_gt.csv")


def test_evaluate_with_a_label_that_is_not_a_number(capsys, p1_data, tmp_path):
    pred = tmp_path / "pred.csv"
    pred.write_text("filename,label\n0_12.png,cat\n")
    _expect_error(capsys, r"pred\.csv:2: label 'cat' is not a whole number", "classify", "evaluate",
                  "--predictions", pred, "--labels", p1_data / "val_gt.csv")


def test_synth_refuses_to_replace_data(capsys, tmp_path):
    (tmp_path / "p1_data" / "train_50").mkdir(parents=True)
    _expect_error(capsys, r"p1_data: already holds train_50; pass --overwrite", "data", "synth", "--output", tmp_path)


def test_outputs_get_the_usual_file_mode(tmp_path):
    import os

    from dlcv.files import atomic_write

    with atomic_write(tmp_path / "out.txt") as handle:
        handle.write("x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == 0o666 & ~mask


def test_fit_without_a_validation_folder_or_a_holdout_share(capsys, recipe, data_copy, p2_data, tmp_path):
    """Classification and segmentation refuse it alike, naming the folder, before a run folder exists."""
    from conftest import TINY_SEG_RECIPE

    shutil.rmtree(data_copy / "val_50")
    _expect_error(capsys, r"p1_data/val_50: no validation folder, and the recipe keeps no holdout share of train "
                  r"\(data\.holdout\)", "classify", "fit", "--config", recipe, "--data", data_copy,
                  "--runs-dir", tmp_path / "runs")
    pairs = tmp_path / "p2_data"
    shutil.copytree(p2_data / "train", pairs / "train")
    seg = tmp_path / "seg.yaml"
    seg.write_text(TINY_SEG_RECIPE)
    _expect_error(capsys, r"p2_data/validation: no validation folder", "segment", "fit", "--config", seg,
                  "--data", pairs, "--runs-dir", tmp_path / "runs")
    assert not (tmp_path / "runs").exists()
