"""Degenerate data and silent substitutions: a batch of one through batch norm, layouts of points with no spread or
too few points, malformed feature files, progress ids, empty --only, labels in other digits, transfer-split names."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import TINY_RECIPE, TINY_SEG_RECIPE, expect_error, run_cli

from dlcv.data.batches import ClassificationData, Split
from dlcv.data.features import save_features, snapshot_path
from dlcv.data.p1 import label_from_filename, parse_label
from dlcv.data.seg_batches import SegmentationData
from dlcv.data.synth import synth_p1
from dlcv.data.unlabelled import UnlabelledImages
from dlcv.errors import DlcvError
from dlcv.recipes import ByolData, ClassifyData, SegmentData
from dlcv.viz.layouts import TSNEOptions, pca_series, tsne_series


# --- a batch of one image never trains batch norm --------------------------------------------------------------
def _split(n: int, masks: bool = False) -> Split:
    """``n`` blank images with labels (or masks)."""
    targets = torch.zeros(n, 64, 64, dtype=torch.uint8) if masks else torch.zeros(n, dtype=torch.long)
    return Split(torch.zeros(n, 64, 64, 3, dtype=torch.uint8), targets, [f"{i:04d}" for i in range(n)],
                 Path("train_50"))


def _trainer(model, world: int = 1):
    return SimpleNamespace(lightning_module=model, global_rank=0, world_size=world, current_epoch=0,
                           strategy=SimpleNamespace(root_device=torch.device("cpu")))


def _loaders(n: int, batch: int, world: int, model):
    """The training loaders of the classification, segmentation and BYOL data modules, ``n`` images each."""
    classify = ClassificationData("p1", ClassifyData(batch_size=batch), seed=0)
    classify.train = _split(n)
    segment = SegmentationData("p2", SegmentData(batch_size=batch, train_size=32), seed=0)
    segment.train = _split(n, masks=True)
    byol = UnlabelledImages("mini/train", ByolData(batch_size=batch), views=None, seed=0)
    byol.images = _split(n).x
    for data in (classify, segment, byol):
        data.trainer = _trainer(model, world)
        yield data


LEARNS = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))


@pytest.mark.parametrize(("n", "batch", "world", "said"), [
    (10, 1, 1, r"data\.batch_size 1: the model's batch norm \(1\) cannot train on batches of one image"),
    (1, 4, 1, r"1 training image\(s\) make batches of one image"),
    (3, 4, 3, r"3 training image\(s\) over 3 processes make batches of one image"),
])
def test_a_batch_of_one_image_through_batch_norm_is_refused_in_every_task(n, batch, world, said):
    for data in _loaders(n, batch, world, LEARNS):
        with pytest.raises(DlcvError, match=said):
            data.train_dataloader()


def test_batches_of_one_train_a_model_without_learned_batch_norm():
    frozen = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    frozen[1].requires_grad_(False)  # a frozen trunk's statistics stay those of pre-training
    for model in (torch.nn.Conv2d(3, 4, 3), frozen):
        for data in _loaders(3, 1, 1, model):
            assert len(data.train_dataloader()) == 3
    for data in _loaders(3, 2, 1, LEARNS):  # the last batch of one is dropped
        assert len(data.train_dataloader()) == 1


def test_classify_fit_with_batches_of_one_is_one_line(capsys, tmp_path, p1_data):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY_RECIPE)
    expect_error(capsys, r"data\.batch_size 1: the model's batch norm \(.*\) cannot train on batches of one image",
                 "classify", "fit", "--config", recipe, "--data", p1_data, "--runs-dir", tmp_path / "runs",
                 "--set", "data.batch_size=1")
    assert not (tmp_path / "runs" / "tiny" / "last.ckpt").exists()


# --- layouts of points with no spread, or too few for the perplexity -------------------------------------------
LABELS = np.repeat(np.arange(3), 10)


def test_identical_points_are_one_point_at_the_origin_and_the_next_layout_starts_afresh():
    spread = np.random.default_rng(0).normal(size=(30, 8)).astype(np.float32)
    zeros = np.zeros((30, 8), np.float32)
    tsne = tsne_series([zeros, spread, np.ones((30, 8), np.float32)], TSNEOptions(threads=1))
    assert all(np.isfinite(layout).all() for layout in tsne)
    assert not tsne[0].any() and not tsne[2].any() and tsne[1].std() > 0
    assert not pca_series([np.ones((30, 8), np.float32)])[0].any()


def test_embed_plot_of_a_run_whose_first_snapshot_is_all_zeros(capsys, tmp_path):
    run = tmp_path / "run"
    (run / "embeddings").mkdir(parents=True)
    save_features(snapshot_path(run, 1), np.zeros((30, 8)), LABELS, epoch=1)
    save_features(snapshot_path(run, 2), np.random.default_rng(0).normal(size=(30, 8)), LABELS, epoch=2)
    code, out, err = run_cli(capsys, "embed", "plot", run, "--method", "tsne", "--output", tmp_path / "figs",
                             "--perplexity", "5")
    assert code == 0, err
    assert "note: epoch 1: all 30 points equal: drawn at the origin" in out
    assert (tmp_path / "figs" / "tsne_panels.png").is_file() and (tmp_path / "figs" / "tsne_epoch_001.png").is_file()


def test_embed_plot_of_points_with_no_variance_says_so(capsys, tmp_path):
    save_features(tmp_path / "same.npz", np.ones((30, 4)), LABELS)
    code, out, err = run_cli(capsys, "embed", "plot", tmp_path / "same.npz", "--method", "tsne", "--output",
                             tmp_path / "figs")
    assert code == 0, err
    assert out.count("note: same: all 30 points equal: drawn at the origin") == 1


def test_embed_plot_of_fewer_points_than_the_perplexity_says_it_lowered_it(capsys, tmp_path):
    save_features(tmp_path / "few.npz", np.random.default_rng(0).normal(size=(7, 4)), np.array([0, 1] * 3 + [0]))
    code, out, err = run_cli(capsys, "embed", "plot", tmp_path / "few.npz", "--method", "tsne", "--output",
                             tmp_path / "figs")
    assert code == 0, err
    assert "note: few: t-SNE perplexity 30 lowered to 2 for 7 points" in out


# --- malformed feature files: one line naming the file ---------------------------------------------------------
def _arrays(name: str) -> dict:
    rng = np.random.default_rng(0)
    good = {"features": rng.normal(size=(30, 8)).astype(np.float32), "labels": LABELS}
    changes = {
        "record": {"features": np.zeros(30, dtype=[("a", "f4"), ("b", "f4")])},
        "record_labels": {"labels": np.zeros(30, dtype=[("a", "i4")])},
        "objects": {"features": np.array([[1.0, 2.0]] * 30, dtype=object)},
        "complex": {"features": good["features"].astype(np.complex64)},
        "three_d": {"features": rng.normal(size=(30, 8, 2))},
        "near_float32_max": {"features": np.full((30, 8), 3e38, np.float32) * rng.uniform(0.5, 1, (30, 1))},
        "float64_huge": {"features": np.full((30, 8), 1e300) * rng.uniform(0.5, 1, (30, 1))},
        "nan": {"features": np.where(good["features"] > 1, np.nan, good["features"])},
        "labels_short": {"labels": LABELS[:20]},
        "epoch_list": {"epoch": np.array([1, 2])},
        "filenames_2d": {"filenames": np.zeros((30, 2))},
        "filenames_scalar": {"filenames": np.array("a.png")},
    }
    return {**good, **changes[name]}


@pytest.mark.parametrize("name", ["record", "record_labels", "objects", "complex", "three_d", "near_float32_max",
                                  "float64_huge", "nan", "labels_short", "epoch_list", "filenames_2d",
                                  "filenames_scalar"])
def test_a_malformed_feature_file_is_one_line_naming_it(capsys, tmp_path, name):
    np.savez(tmp_path / f"{name}.npz", **_arrays(name))
    expect_error(capsys, rf"{name}\.npz: ", "embed", "plot", tmp_path / f"{name}.npz", "--output", tmp_path / "f")
    assert not (tmp_path / "f").exists()


# --- silent substitutions, refused naming the value -----------------------------------------------------------
def test_a_progress_id_the_validation_folder_lacks_is_refused(capsys, tmp_path, p2_data):
    recipe = tmp_path / "seg.yaml"
    recipe.write_text(TINY_SEG_RECIPE.replace('"0003"', '"0777"'))
    expect_error(capsys, r"progress\.images: .*validation has no image of id '0777'", "segment", "fit",
                 "--config", recipe, "--data", p2_data, "--runs-dir", tmp_path / "runs")
    assert not (tmp_path / "runs" / "seg_tiny" / "recipe.yaml").exists()


def test_the_default_progress_ids_give_way_to_the_first_three_where_the_folder_lacks_them(capsys, tmp_path,
                                                                                            p2_data):
    """The defaults are the course's validation ids; synthetic data has others (a saved recipe holds them too)."""
    recipe = tmp_path / "seg.yaml"
    recipe.write_text(TINY_SEG_RECIPE.replace('progress: {images: ["0001", "0003"]}', "")
                      .replace("epochs: 2", "epochs: 1"))
    code, _, err = run_cli(capsys, "segment", "fit", "--config", recipe, "--data", p2_data, "--runs-dir",
                           tmp_path / "runs")
    assert code == 0, err
    shown = sorted(p.name for p in (tmp_path / "runs" / "seg_tiny" / "progress" / "images").iterdir())
    assert shown == ["0000_sat.png", "0001_sat.png", "0002_sat.png"]


def test_an_empty_only_is_refused(capsys, tmp_path):
    for only in ("", ",", "0001,,0002"):
        expect_error(capsys, rf"--only '{only}': an empty image id", "sam", "masks", "--checkpoint",
                     tmp_path / "sam.pth", "--model", "vit_tiny", "--images", tmp_path, "--output", tmp_path / "out",
                     "--only", only)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text", ["٢", "３", "+1", "-1", " 1", "1_0", "1.0", ""])
def test_a_label_is_ascii_digits_only(text):
    with pytest.raises(DlcvError, match=r"labels\.csv:2: label .* is not a whole number of digits 0-9"):
        parse_label(text, "labels.csv:2")


def test_labels_of_ascii_digits_and_class_prefixes():
    assert parse_label("007", "x") == 7 and label_from_filename("12_345.png") == 12
    for name in ("٢_3.png", "３_3.png", "+1_3.png"):
        with pytest.raises(DlcvError, match="has no class prefix"):
            label_from_filename(name)


def test_evaluate_refuses_a_label_in_other_digits(capsys, tmp_path):
    (tmp_path / "labels.csv").write_text("filename,label\n0_0.png,٢\n", encoding="utf-8")
    (tmp_path / "pred.csv").write_text("filename,label\n0_0.png,2\n")
    expect_error(capsys, r"labels\.csv:2: label '٢' is not a whole number of digits 0-9", "classify", "evaluate",
                 "--predictions", tmp_path / "pred.csv", "--labels", tmp_path / "labels.csv")


def test_transfer_split_refuses_two_files_of_one_output_name(capsys, tmp_path):
    p1 = synth_p1(tmp_path, num_classes=50, train_per_class=1, val_per_class=1)
    shutil.copy(p1 / "train_50" / "25_0.png", p1 / "train_50" / "025_0.png")
    expect_error(capsys, r"train_50/025_0\.png and 25_0\.png: both would become office/train/0_0\.jpg; keep one",
                 "data", "transfer-split", "--p1", p1, "--output", tmp_path / "split")
    assert not (tmp_path / "split").exists()


@pytest.mark.parametrize("value", ["٢", "３", "²", "+1", "1_0"])
def test_a_seed_of_other_digits_is_refused(value):
    """str.isdigit() took them: "²" then failed in int() with a traceback, "٢" was read as 2."""
    from dlcv.cli.options import seed

    with pytest.raises(argparse.ArgumentTypeError, match="give a whole number from 0 to 4294967295"):
        seed(value)


@pytest.mark.parametrize("value", ["١.١٢", "1.１２"])
def test_a_torch_version_of_other_digits_is_refused(value):
    from dlcv.torch_versions import version

    with pytest.raises(DlcvError, match="give a version such as 1.12"):
        version(value)


def test_a_sam_figure_id_a_recipe_names_is_never_replaced_by_others(tmp_path):
    """The default ids (the reports') give way to the first three; an id given and missing was silently replaced."""
    from dlcv.recipes import SamRecipe
    from dlcv.sam import figure_images

    ids = ["0000", "0001", "0002", "0003"]
    assert figure_images(SamRecipe().figure, ids, tmp_path) == ["0000", "0001", "0002"]
    assert figure_images(SamRecipe(figure={"images": ["0003"]}).figure, ids, tmp_path) == ["0003"]
    with pytest.raises(DlcvError, match=r"figure\.images: .* has no image of id '0104'"):
        figure_images(SamRecipe(figure={"images": ["0003", "0104"]}).figure, ids, tmp_path)
