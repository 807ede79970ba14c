"""Every recipe value and argument that a command cannot use is one line naming where it came from (the file,
--set or the flag) and exit status 2, before any run folder or output exists: infinite numbers, values of the
wrong type, names that are no folder names, another task's recipe, model arguments out of range, a crop padding
past the image, embedding-plot arguments, images too small for the model, and YAML that expands past a recipe's
size."""

from __future__ import annotations

import json
import re

import pytest
from conftest import REPO, expect_error
from PIL import Image

from dlcv.errors import DlcvError


def _fit(recipe, data, tmp_path, *extra):
    return ("classify", "fit", "--config", recipe, "--data", data, "--runs-dir", tmp_path / "runs", *extra)


def _file(tmp_path, text: str, name: str = "bad.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# --- numbers ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("setting,pattern", [
    ("schedule.warmup_epochs=.inf", r"schedule\.warmup_epochs must be a number >= 0, got inf"),
    ("schedule.milestones=[.inf]", r"schedule\.milestones must be a list of any number of \(a number >= 0\), "
                                   r"got \[inf\]"),
    ("optim.lr=.inf", r"optim\.lr must be a number >= 0, got inf"),
    ("schedule.pct_start=-.inf", r"schedule\.pct_start must be a number in \(0, 1\), got -inf"),
    ("train.epochs=.inf", r"train\.epochs must be a whole number >= 1, got inf"),
])
def test_an_infinite_number_is_refused(capsys, tmp_path, recipe, p1_data, setting, pattern):
    expect_error(capsys, rf"--set: {pattern}", *_fit(recipe, p1_data, tmp_path, "--set", setting))
    assert not (tmp_path / "runs").exists()


def test_an_infinite_number_in_the_file_names_the_file(capsys, tmp_path, p1_data):
    bad = _file(tmp_path, "schedule: {name: multistep, milestones: [0.5, .inf]}\n")
    expect_error(capsys, r"bad\.yaml: schedule\.milestones must be .*, got \[0\.5, inf\]",
                 *_fit(bad, p1_data, tmp_path))
    assert not (tmp_path / "runs").exists()


# --- types and shapes through --set -----------------------------------------------------------------------
@pytest.mark.parametrize("settings,pattern", [
    (["name=123"], r"--set: name must be null or a plain folder name \(no /, \\ or control characters\), got 123"),
    (["name=[1]"], r"--set: name must be null or a plain folder name .*, got \[1\]"),
    (["model=5"], r"--set: recipe key 'model' must be a mapping, got 5"),
    (["train.epochs.x=1"], r"--set: recipe key 'train\.epochs' takes a value, not sub-keys \('x'\)"),
    (["data.train.x=1"], r"--set: recipe key 'data\.train' takes a value, not sub-keys \('x'\)"),
    (["model=5", "model.name=cnn3"], r"--set 'model\.name': 'model' is set to a value by an earlier --set"),
    (["train.epochs=3", "train.epochs.x=1"], r"--set 'train\.epochs\.x': 'train\.epochs' is set to a value"),
    (["data.train=[1]"], r"--set: data\.train must be a folder or file name, got \[1\]"),
    (["embed.epochs=[1.5]"], r"--set: embed\.epochs must be first, middle, last and/or epoch numbers, as a text "
                             r"or a list, got \[1\.5\]"),
])
def test_a_value_of_the_wrong_shape_through_set_is_one_line(capsys, tmp_path, recipe, p1_data, settings, pattern):
    extra = [arg for setting in settings for arg in ("--set", setting)]
    expect_error(capsys, pattern, *_fit(recipe, p1_data, tmp_path, *extra))
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", ["a\0b", "a/b", "a\nb", "..", "a\\b"])
def test_a_name_that_is_no_plain_folder_name_is_refused(capsys, tmp_path, p1_data, name):
    shown = re.escape(repr(name))
    bad = _file(tmp_path, f"name: {json.dumps(name)}\n")
    expect_error(capsys, rf"bad\.yaml: name must be null or a plain folder name .*, got {shown}$",
                 *_fit(bad, p1_data, tmp_path))
    expect_error(capsys, rf"--name {shown}: give a plain folder name", *_fit(bad, p1_data, tmp_path, "--name", name))
    assert not (tmp_path / "runs").exists()


def test_a_recipe_cannot_switch_to_another_task(capsys, tmp_path, recipe, p1_data):
    """The checks are the command's task's: ``task`` may name no other, so no value escapes them."""
    for task in ("segment", "foo"):
        expect_error(capsys, rf"--set: task must be one of classify, got '{task}'",
                     *_fit(recipe, p1_data, tmp_path, "--set", f"task={task}"))
    expect_error(capsys, r"bad\.yaml: task must be one of classify, got 'segment'",
                 *_fit(_file(tmp_path, "task: segment\n"), p1_data, tmp_path))
    expect_error(capsys, r"--set: task must be one of segment, got 'classify'", "segment", "fit", "--config",
                 REPO / "configs" / "seg" / "cpu.yaml", "--data", tmp_path, "--runs-dir", tmp_path / "runs",
                 "--set", "task=classify")
    assert not (tmp_path / "runs").exists()


# --- model arguments -------------------------------------------------------------------------------------
@pytest.mark.parametrize("model,pattern", [
    ("{name: cnn3, args: {hidden: -5}}", r"model\.args\.hidden must be a whole number >= 1 and <= 16384, got -5"),
    ("{name: cnn3, args: {dropout: 2}}", r"model\.args\.dropout must be a number in \[0, 1\), got 2"),
    ("{name: dlcv_net, args: {widths: [8, -5]}}", r"model\.args\.widths must be a non-empty list of whole numbers"),
    ("{name: resnet_small, args: {width: 0}}", r"model\.args\.width must be a whole number >= 1 and <= 16384, got 0"),
    ("{name: resnet_transfer, args: {arch: resnet18, head: mlp, head_dropout: 3}}",
     r"model\.args\.head_dropout must be a number in \[0, 1\), got 3"),
    ("{name: resnet_transfer, args: {arch: resnet19}}",
     r"model\.args\.arch must be one of resnet18, resnet34, resnet50, resnet101, resnet152, got 'resnet19'"),
])
def test_a_model_argument_out_of_range_is_one_line(capsys, tmp_path, p1_data, model, pattern):
    bad = _file(tmp_path, f"model: {model}\n")
    expect_error(capsys, rf"bad\.yaml: {pattern}", *_fit(bad, p1_data, tmp_path))
    assert not (tmp_path / "runs").exists()


def test_a_segmentation_model_argument_out_of_range_is_one_line_before_the_data_is_read(capsys, tmp_path):
    expect_error(capsys, r"--set: model\.args\.width must be a whole number >= 1 and <= 16384, got -1", "segment",
                 "fit", "--config", REPO / "configs" / "seg" / "cpu.yaml", "--data", tmp_path, "--runs-dir",
                 tmp_path / "runs", "--set", "model.name=unet_small", "--set", "model.args.width=-1")
    assert not (tmp_path / "runs").exists()


# --- the crop padding against the image --------------------------------------------------------------------
def test_a_crop_padding_past_the_image_size_of_the_recipe_is_refused_as_loaded(capsys, tmp_path, recipe, p1_data):
    expect_error(capsys, r"data\.crop_padding 16 must be below data\.image_size 16: reflect padding",
                 *_fit(recipe, p1_data, tmp_path, "--set", "data.image_size=16", "--set", "data.crop_padding=16"))
    assert not (tmp_path / "runs").exists()


def test_a_crop_padding_past_the_images_is_refused_before_the_run_folder(capsys, tmp_path, recipe, p1_data):
    expect_error(capsys, r"data\.crop_padding 40 must be below the side of the 32x32 images of .*train_50: reflect",
                 *_fit(recipe, p1_data, tmp_path, "--set", "data.crop_padding=40"))
    assert not (tmp_path / "runs").exists()


# --- arguments ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args,pattern", [
    (["--perplexity", "-1"], r"--perplexity -1: give a number > 0"),
    (["--perplexity", "0"], r"--perplexity 0: give a number > 0"),
    (["--perplexity", "inf"], r"--perplexity inf: give a number > 0"),
    (["--perplexity", "nan"], r"--perplexity nan: give a number > 0"),
    (["--k", "0"], r"--k 0: give a whole number >= 1"),
    (["--k", "-3"], r"--k -3: give a whole number >= 1"),
])
def test_embed_plot_refuses_a_meaningless_perplexity_or_k(capsys, trained_run, tmp_path, args, pattern):
    expect_error(capsys, pattern, "embed", "plot", trained_run, "--output", tmp_path / "figures", *args)
    assert not (tmp_path / "figures").exists()


def test_embed_plot_notes_a_k_past_the_points(capsys, trained_run, tmp_path):
    from conftest import run_cli

    code, out, err = run_cli(capsys, "embed", "plot", trained_run, "--method", "pca", "--k", "1000", "--output",
                             tmp_path / "figures")
    assert code == 0, err
    assert "note: epoch 1: --k 1000 is not below its 16 points; its knn_acc uses all 15 others" in out


def test_predict_on_images_too_small_for_the_model_is_one_line(capsys, trained_run, tmp_path):
    images = tmp_path / "tiny_images"
    images.mkdir()
    for i in range(3):
        Image.new("RGB", (1, 1), (60 * i, 0, 0)).save(images / f"{i}_0.png")
    for tta, shown in (("none", ""), ("flip_shift", " with tta flip_shift")):
        expect_error(capsys, rf"tiny_images: model 'dlcv_net' cannot take images of 1x1 pixels: it takes "
                             rf"8x8{shown}", "classify", "predict", "--checkpoint", trained_run / "best.ckpt",
                     "--images", images, "--output", tmp_path / "pred.csv", "--tta", tta)
    assert not (tmp_path / "pred.csv").exists()


# --- YAML past a recipe's size -----------------------------------------------------------------------------
def billion_laughs(levels: int = 9) -> str:
    text = "a0: &a0 [" + ", ".join(["lol"] * 9) + "]\n"
    for i in range(1, levels):
        text += f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n"
    return text


@pytest.mark.timeout(30)  # expanded, it would not end
def test_a_billion_laughs_recipe_is_refused_at_once(capsys, tmp_path, p1_data):
    bomb = _file(tmp_path, "optim:\n" + "".join(f"  {line}\n" for line in billion_laughs().splitlines()))
    expect_error(capsys, r"bad\.yaml: too large for a recipe: it expands to more than 10000 values",
                 *_fit(bomb, p1_data, tmp_path))
    assert not (tmp_path / "runs").exists()


@pytest.mark.timeout(30)
def test_a_billion_laughs_through_set_is_refused(capsys, tmp_path, recipe, p1_data):
    expect_error(capsys, r"--set 'optim\.betas': the value is too large for a recipe: it expands to more than 10000",
                 *_fit(recipe, p1_data, tmp_path, "--set", "optim.betas={" + ", ".join(billion_laughs().splitlines())
                       + "}"))
    assert not (tmp_path / "runs").exists()


def test_a_run_folders_recipe_that_expands_is_refused_on_resume(capsys, tmp_path, recipe, p1_data):
    run = tmp_path / "runs" / "tiny"
    run.mkdir(parents=True)
    (run / "last.ckpt").write_bytes(b"")
    (run / "recipe.yaml").write_text(billion_laughs())
    expect_error(capsys, r"tiny/recipe\.yaml: too large for a recipe: it expands to more than 10000 values",
                 *_fit(recipe, p1_data, tmp_path, "--resume"))
    from dlcv.runs import RunFolder

    with pytest.raises(DlcvError, match=r"recipe\.yaml: not a readable recipe \(expands to more than 10000"):
        RunFolder(run).read_recipe()


@pytest.mark.parametrize("text,pattern", [
    ("optim: " + "[" * 5000 + "]" * 5000 + "\n", r"too large for a recipe: it nests deeper than 64 levels"),
    ("name: x\n" + "#" * (2 << 20) + "\n", r"too large for a recipe \(more than 1048576 bytes\)"),
    ("".join(f"k{i}: {i}\n" for i in range(20_000)), r"too large for a recipe: it expands to more than 10000"),
    ("optim: {lr: " + "9" * 5000 + "}\n", r"not valid YAML \(Exceeds the limit"),
])
def test_a_recipe_too_deep_or_too_long_is_refused(capsys, tmp_path, p1_data, text, pattern):
    expect_error(capsys, rf"bad\.yaml: {pattern}", *_fit(_file(tmp_path, text), p1_data, tmp_path))
    assert not (tmp_path / "runs").exists()


def test_an_error_shows_a_short_snippet_of_a_huge_value(capsys, tmp_path, recipe, p1_data):
    line = expect_error(capsys, r"--set: optim\.lr must be a number >= 0, got 'xxx.*\.\.\..*xxx'$",
                        *_fit(recipe, p1_data, tmp_path, "--set", "optim.lr=" + "x" * 100_000))
    assert len(line) < 200
    line = expect_error(capsys, r"--set: unknown recipe key 'yyy", *_fit(recipe, p1_data, tmp_path,
                                                                        "--set", "y" * 100_000 + "=1"))
    assert len(line) < 400
    assert not (tmp_path / "runs").exists()
