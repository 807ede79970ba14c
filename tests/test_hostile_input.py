"""Numbers read from files are bounded, and images of every kind are read faithfully or refused:
each case is one line naming the file, exit status 2, no traceback, and the data left as it was."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import expect_error, run_cli
from PIL import Image
from test_output_safety import folder_digest

from dlcv.errors import DlcvError
from dlcv.files import decode_image


@pytest.fixture
def data_copy(tmp_path, p1_data) -> Path:
    return Path(shutil.copytree(p1_data, tmp_path / "p1_data"))


def _fit(recipe, data, tmp_path):
    return ("classify", "fit", "--config", recipe, "--data", data, "--runs-dir", tmp_path / "runs")


# --- numbers from files -----------------------------------------------------------------------------------
def test_an_absurd_class_in_a_file_name_is_refused_at_once(capsys, recipe, data_copy, tmp_path):
    shutil.copy(data_copy / "train_50" / "1_3.png", data_copy / "train_50" / "99999999999_0.png")
    before = folder_digest(data_copy)
    expect_error(capsys, r"99999999999_0\.png: class 99999999999 in the file name is out of range",
                 *_fit(recipe, data_copy, tmp_path))
    assert folder_digest(data_copy) == before and not (tmp_path / "runs").exists()


def test_a_stray_class_far_above_the_others_is_refused(capsys, recipe, data_copy, tmp_path):
    shutil.copy(data_copy / "train_50" / "1_3.png", data_copy / "train_50" / "99999_0.png")
    expect_error(capsys, r"train_50: labels run up to 99999 but only 5 different ones occur",
                 *_fit(recipe, data_copy, tmp_path))
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("row,pattern", [
    ("0_12.png,0,7", r"pred\.csv:2: 3 field\(s\), but the header has 2"),
    ("0_12.png", r"pred\.csv:2: 1 field\(s\), but the header has 2"),
    ("0_12.png,123456789012345678901234567890", r"pred\.csv:2: label '12345678901234567890' \(30 characters\) is out"),
    ("0_12.png," + "9" * 5000, r"pred\.csv:2: label '9{20}' \(5000 characters\) is out of range"),
    ("0_12.png,100000", r"pred\.csv:2: label 100000 is out of range \(classes are 0\.\.\.99999\)"),
    ("\n0_12.png,0,1", r"pred\.csv:3: 3 field\(s\)"),  # the line in the file, blank lines counted
])
def test_a_csv_row_of_the_wrong_shape_or_an_absurd_label_is_named(capsys, p1_data, tmp_path, row, pattern):
    pred = tmp_path / "pred.csv"
    pred.write_text(f"filename,label\n{row}\n")
    expect_error(capsys, pattern, "classify", "evaluate", "--predictions", pred, "--labels", p1_data / "val_gt.csv")


def test_a_header_naming_a_column_twice_is_refused(capsys, p1_data, tmp_path):
    pred = tmp_path / "pred.csv"
    pred.write_text("filename,label,label\n0_12.png,0,1\n")
    expect_error(capsys, r"pred\.csv: the header names column\(s\) label more than once", "classify", "evaluate",
                 "--predictions", pred, "--labels", p1_data / "val_gt.csv")


def test_a_predicted_class_the_labels_do_not_have_is_named(capsys, p1_data, tmp_path):
    rows = (p1_data / "val_gt.csv").read_text().splitlines()
    rows[1] = rows[1].rsplit(",", 1)[0] + ",99999"
    pred = tmp_path / "pred.csv"
    pred.write_text("\n".join(rows) + "\n")
    expect_error(capsys, r"pred\.csv: 0_12\.png is predicted as class 99999, but the labels .* are classes 0\.\.\.3",
                 "classify", "evaluate", "--predictions", pred, "--labels", p1_data / "val_gt.csv")


def test_evaluate_beside_read_only_predictions_prints_the_accuracy_and_says_where_no_figure_went(
        capsys, monkeypatch, p1_data, tmp_path):
    """The figure's default place (beside the predictions) may be read-only: the accuracy is the answer asked for."""
    import errno

    import dlcv.files

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(dlcv.files.tempfile, "mkstemp", read_only)
    gt = Path(shutil.copy(p1_data / "val_gt.csv", tmp_path))
    code, out, err = run_cli(capsys, "classify", "evaluate", "--predictions", gt, "--labels", gt)
    assert code == 0, err
    assert "accuracy: 1.0000" in out and "images: 16" in out
    assert "confusion matrix: not written: " in out and "(Read-only file system) (give --confusion to write" in out
    assert not list(tmp_path.glob("*.png"))
    expect_error(capsys, r"c\.png: cannot be written \(Read-only file system\)", "classify", "evaluate",
                 "--predictions", gt, "--labels", gt, "--confusion", tmp_path / "c.png")


def test_an_office_csv_row_with_a_missing_field_is_named(tmp_path):
    from dlcv.data.office import read_office_csv

    (tmp_path / "train").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "train" / "0_0.jpg")
    (tmp_path / "train.csv").write_text("id,filename,label\n0,0_0.jpg\n")
    with pytest.raises(DlcvError, match=r"train\.csv:2: 2 field\(s\), but the header has 3"):
        read_office_csv(tmp_path / "train.csv", tmp_path / "train")


# --- images of any kind -----------------------------------------------------------------------------------
def test_16_bit_grey_is_scaled_to_8_bits_not_clipped_to_white(tmp_path):
    ramp = np.linspace(0, 65535, 256).round().astype(np.uint16)[None, :].repeat(2, 0)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    assert Image.open(tmp_path / "ramp.png").mode.startswith("I")
    rgb = decode_image(tmp_path / "ramp.png")
    assert rgb.shape == (2, 256, 3) and (rgb[..., 0] == rgb[..., 2]).all()
    assert np.abs(rgb[0, :, 0].astype(int) - np.arange(256)).max() <= 1  # the 8-bit ramp


@pytest.mark.parametrize("mode", ["L", "LA", "P", "P transparent", "RGBA", "CMYK", "1"])
def test_every_common_mode_decodes_to_rgb_without_warnings(tmp_path, mode):
    rgb = np.random.default_rng(0).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    image = Image.fromarray(rgb).convert(mode.split()[0])
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    image.save(path, **({"transparency": 0} if "transparent" in mode else {}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = decode_image(path)
    assert out.shape == (6, 6, 3) and out.dtype == np.uint8
    if mode in ("RGBA", "P transparent", "P"):
        assert np.array_equal(out, np.asarray(image.convert("RGBA").convert("RGB")))


def test_a_floating_point_image_is_refused(tmp_path):
    Image.fromarray(np.ones((4, 4), np.float32)).save(tmp_path / "x.tiff")
    with pytest.raises(DlcvError, match=r"x\.tiff: a floating-point image"):
        decode_image(tmp_path / "x.tiff")


def test_a_decompression_bomb_is_refused_with_one_line(capsys, monkeypatch, recipe, data_copy, tmp_path):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # 32x32 = 1024 pixels: twice the limit or more
    expect_error(capsys, r"train_50/0_0\.png: more pixels than an image dlcv reads", *_fit(recipe, data_copy, tmp_path))


def test_the_odd_size_is_named_even_when_it_is_read_first(capsys, recipe, data_copy, tmp_path):
    Image.new("RGB", (16, 16)).save(data_copy / "train_50" / "0_0.png")  # sorts first
    expect_error(capsys, r"train_50/0_0\.png: image is 16x16, but 47 of the 48 images here are 32x32",
                 *_fit(recipe, data_copy, tmp_path))


@pytest.mark.parametrize("mode", ["P", "L", "RGBA"])
def test_a_mask_that_is_not_rgb_is_refused(capsys, p2_data, tmp_path, mode):
    labels = Path(shutil.copytree(p2_data / "validation", tmp_path / "labels"))
    preds = Path(shutil.copytree(p2_data / "validation", tmp_path / "preds", ignore=shutil.ignore_patterns("*.jpg")))
    Image.open(preds / "0002_mask.png").convert(mode).save(preds / "0002_mask.png")
    expect_error(capsys, rf"preds/0002_mask\.png: a {mode} image, but masks must be RGB", "segment", "evaluate",
                 "--predictions", preds, "--labels", labels)


# --- links ------------------------------------------------------------------------------------------------
def test_an_image_that_is_a_link_out_of_its_folder_is_refused(capsys, recipe, data_copy, tmp_path):
    secret = tmp_path / "elsewhere.png"
    shutil.copy(data_copy / "train_50" / "1_3.png", secret)
    (data_copy / "train_50" / "1_99.png").symlink_to(secret)
    expect_error(capsys, r"train_50/1_99\.png is a link to .*elsewhere\.png, outside the folder",
                 *_fit(recipe, data_copy, tmp_path))


def test_a_csv_name_reached_through_a_link_out_of_the_folder_is_refused(tmp_path):
    from dlcv.data.p1 import read_image_folder

    (tmp_path / "images").mkdir()
    (tmp_path / "outside").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "outside" / "x.png")
    (tmp_path / "images" / "sub").symlink_to(tmp_path / "outside")
    (tmp_path / "labels.csv").write_text("filename,label\nsub/x.png,0\n")
    with pytest.raises(DlcvError, match=r"labels\.csv:2: x\.png is a link to .*outside/x\.png, outside the folder"):
        read_image_folder(tmp_path / "images", tmp_path / "labels.csv")


def test_a_link_inside_the_folder_is_read(tmp_path):
    from dlcv.files import list_images

    Image.new("RGB", (8, 8)).save(tmp_path / "0_0.png")
    (tmp_path / "0_1.png").symlink_to(tmp_path / "0_0.png")
    assert [p.name for p in list_images(tmp_path)] == ["0_0.png", "0_1.png"]


# --- found by an exploratory pass: each once a traceback, an out-of-memory kill or a silent loss --------------
def test_images_that_would_not_fit_in_memory_are_refused_before_decoding(capsys, monkeypatch, recipe, data_copy,
                                                                          tmp_path):
    import dlcv.data.images as images

    monkeypatch.setattr(images, "available_memory", lambda: 1000)  # bytes: not one image at 96 px
    expect_error(capsys, r"train_50: \d+ decoded images at data\.image_size 96 need .* GiB, more than the 0\.0 GiB "
                 r"of memory free", *_fit(recipe, data_copy, tmp_path), "--set", "data.image_size=96",
                 "--set", "data.crop_padding=4")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("arrays, pattern", [
    ({"features": np.ones((4, 3)), "labels": np.array([0, 1, 0, 10**9])}, r"'labels' must be classes 0 to 99999"),
    ({"features": np.ones((4, 3)), "labels": np.array([0, -1, 0, 1])}, r"'labels' must be classes 0 to 99999"),
    ({"features": np.ones((4, 1)), "labels": np.array([0, 1, 0, 1])}, r"must be N x D with N >= 3 and D >= 2"),
    (None, r"one array \(\.npy\), not a feature file"),
])
def test_a_feature_file_with_absurd_labels_one_dimension_or_one_array_is_named(capsys, tmp_path, arrays, pattern):
    if arrays is None:
        path = tmp_path / "plain.npy"
        np.save(path, np.ones((4, 3)))
    else:
        path = tmp_path / "bad.npz"
        np.savez(path, **arrays)
    expect_error(capsys, pattern, "embed", "plot", path, "--method", "pca", "--output", tmp_path / "figs")
    assert not (tmp_path / "figs").exists()


def test_a_file_name_that_is_not_text_is_refused_before_prediction(capsys, trained_run, p1_data, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(next((p1_data / "val_50").glob("*.png")), folder / "3_\udcff.png")  # bytes 0xff: no UTF-8 text
    expect_error(capsys, r"images/3_\\udcff\.png': not a UTF-8 name; rename it",
                 "classify", "predict", "--checkpoint", trained_run / "best.ckpt", "--images", folder,
                 "--output", tmp_path / "pred.csv")
    assert not (tmp_path / "pred.csv").exists()


def test_a_checkpoint_with_nan_weights_predicts_and_exports_nothing(capsys, trained_run, p1_data, tmp_path):
    import torch

    ckpt = torch.load(trained_run / "best.ckpt", map_location="cpu", weights_only=False)
    first = next(k for k, v in ckpt["state_dict"].items() if k.startswith("model.") and v.is_floating_point())
    ckpt["state_dict"][first].fill_(float("nan"))
    torch.save(ckpt, tmp_path / "nan.ckpt")
    pattern = r"nan\.ckpt: its weights hold NaN or infinite values"
    expect_error(capsys, pattern, "classify", "predict", "--checkpoint", tmp_path / "nan.ckpt", "--images",
                 p1_data / "val_50", "--output", tmp_path / "pred.csv")
    expect_error(capsys, pattern, "export", tmp_path / "nan.ckpt", "--output", tmp_path / "plain")
    assert not (tmp_path / "pred.csv").exists() and not (tmp_path / "plain").exists()


def test_a_resume_from_another_models_checkpoint_is_one_line_and_changes_nothing(capsys, recipe, p1_data, seg_run,
                                                                                  trained_run, tmp_path):
    runs = tmp_path / "runs"
    run = Path(shutil.copytree(trained_run, runs / "tiny"))
    (run / "summary.json").unlink()
    shutil.copy(seg_run / "last.ckpt", run / "last.ckpt")
    before = folder_digest(runs)
    expect_error(capsys, r"last\.ckpt: its weights are not this run's model's \(.*\); start afresh with --overwrite",
                 "classify", "fit", "--config", recipe, "--data", p1_data, "--runs-dir", runs, "--resume")
    assert folder_digest(runs) == before


def test_a_predicted_mask_that_is_a_link_out_of_its_folder_is_refused(capsys, p2_data, tmp_path):
    folder = tmp_path / "pred"
    folder.mkdir()
    for mask in sorted((p2_data / "validation").glob("*_mask.png")):
        (folder / mask.name).symlink_to(mask)
    expect_error(capsys, r"pred/0000_mask\.png is a link to .*, outside the folder", "segment", "evaluate",
                 "--predictions", folder, "--labels", p2_data / "validation")


def test_a_recipe_key_given_twice_and_a_negative_seed_are_refused(capsys, p1_data, tmp_path):
    twice = tmp_path / "twice.yaml"
    twice.write_text("name: a\nname: b\n")
    expect_error(capsys, r"twice\.yaml: not valid YAML \(the key 'name' is given twice",
                 *_fit(twice, p1_data, tmp_path))
    with pytest.raises(SystemExit) as stop:  # argparse's own usage error
        run_cli(capsys, "data", "transfer-split", "--p1", p1_data, "--output", tmp_path / "split", "--seed", "-1")
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "argument --seed: '-1': give a whole number from 0" in err
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "split").exists()


def test_a_holdout_that_leaves_no_training_images_is_refused_before_the_run(capsys, recipe, p1_data, tmp_path):
    expect_error(capsys, r"data\.holdout 0\.999 leaves no training images of the \d+; give a smaller share",
                 *_fit(recipe, p1_data, tmp_path), "--set", "data.holdout=0.999")
    assert not (tmp_path / "runs").exists()
